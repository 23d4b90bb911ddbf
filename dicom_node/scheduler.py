"""APScheduler jobs: the study-completion sweep that turns quiet studies into jobs or skips."""

from __future__ import annotations

import datetime as dt
import logging

from apscheduler.schedulers.background import BackgroundScheduler

from dicom_node.config import StudySettings
from dicom_node.db import Index, utcnow
from dicom_node.routing import route_study

log = logging.getLogger(__name__)


def complete_stable_studies(index: Index, studies: StudySettings) -> int:
    """Mark every study quiet for `stable_after_s` complete and route it; returns how many."""
    quiet_since = utcnow() - dt.timedelta(seconds=studies.stable_after_s)
    done = 0
    for study_id in index.stable_studies(quiet_since):
        state = index.complete_study(
            study_id, quiet_since, lambda instances: route_study(instances, studies.accept)
        )
        if state is not None:
            log.info("study #%d complete: %s", study_id, state.value)
            done += 1
    return done


def start_scheduler(index: Index, studies: StudySettings) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    every = max(0.5, min(5.0, studies.stable_after_s / 4))
    scheduler.add_job(
        complete_stable_studies,
        "interval",
        seconds=every,
        args=(index, studies),
        id="study-completion",
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    return scheduler
