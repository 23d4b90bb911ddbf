"""Study completion: a study quiet for `stable_after_s` is complete, and routed to scoring or
skipped with the reason. One sweep is one cycle of the completion loop."""

from __future__ import annotations

import datetime as dt
import logging

from dicom_node.config import StudySettings
from dicom_node.index.catalog import Catalog
from dicom_node.index.database import utcnow
from dicom_node.pipeline.routing import route_study

log = logging.getLogger(__name__)


def complete_stable_studies(catalog: Catalog, studies: StudySettings) -> int:
    """Complete and route every study quiet for `stable_after_s`; returns how many."""
    quiet_since = utcnow() - dt.timedelta(seconds=studies.stable_after_s)
    done = 0
    for study_id in catalog.stable_studies(quiet_since):
        decision = route_study(catalog.study_contents(study_id), studies.accept)
        state = catalog.complete_study(study_id, quiet_since, decision.accepted, decision.reason)
        if state is not None:
            log.info("study #%d complete: %s", study_id, state.value)
            done += 1
    return done


def sweep_interval_s(studies: StudySettings) -> float:
    """A quarter of the quiet period, between 0.5 and 5 s."""
    return max(0.5, min(5.0, studies.stable_after_s / 4))
