"""Study completion: when a study that is still receiving is complete, and then routed to
scoring or skipped with the reason. One sweep is one cycle of the completion loop.

A study is complete, first of these to hold:
1. a COMPLETED Modality Performed Procedure Step of the study lists instances, and every one
   of them has arrived (a step that lists none proves nothing: the quiet period applies);
2. the first matching `studies.completion` rule expects N instances and N have arrived;
3. no image arrived for the quiet period: the rule's `stable_after_s`, or the default.
"""

from __future__ import annotations

import datetime as dt
import logging

from dicom_node.config import CompletionRule, StudySettings
from dicom_node.index.catalog import Catalog
from dicom_node.index.database import utcnow
from dicom_node.index.performed_steps import PerformedSteps, StepRecord
from dicom_node.index.records import ReceivingStudy
from dicom_node.pipeline.routing import route_study

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.5  # one indexed query per sweep: cheap, and an MPPS is acted on promptly


def complete_studies(catalog: Catalog, steps: PerformedSteps, studies: StudySettings) -> int:
    """Complete and route every study that is complete now; returns how many."""
    receiving = catalog.receiving_studies()
    if not receiving:
        return 0
    completed_steps = steps.completed_for([r.study_uid for r in receiving])
    now, done = utcnow(), 0
    for study in receiving:
        why = completion_of(study, completed_steps.get(study.study_uid, []), studies, now)
        if why is None:
            continue
        decision = route_study(catalog.study_contents(study.id), studies.accept)
        state = catalog.complete_study(
            study.id, study.last_received_at, decision.accepted, decision.reason, why
        )
        if state is not None:
            log.info(
                "study #%d (accession %r) complete (%s): %s: %s",
                study.id,
                study.accession_number,
                why,
                state.value,
                decision.reason,
            )
            done += 1
    return done


def completion_of(
    study: ReceivingStudy,
    completed_steps: list[StepRecord],
    studies: StudySettings,
    now: dt.datetime,
) -> str | None:
    """Why the study is complete now, or None while it is not."""
    for step in completed_steps:
        if step.referenced and study.sop_instance_uids.issuperset(step.referenced):
            return (
                f"MPPS {step.sop_instance_uid} COMPLETED and all {len(step.referenced)} "
                "instance(s) it lists received"
            )
    rule = studies.rule_for(study.calling_aes, study.modalities)
    expected = rule.expected_instances
    if expected is not None and len(study.sop_instance_uids) >= expected:
        return f"{len(study.sop_instance_uids)} of {expected} expected instance(s) ({_name(rule)})"
    quiet = studies.quiet_period_s(rule)
    if now - study.last_received_at >= dt.timedelta(seconds=quiet):
        return f"quiet for {quiet:g} s ({_name(rule)})"
    return None


def _name(rule: CompletionRule) -> str:
    parts = [f"calling AE {rule.calling_ae}"] if rule.calling_ae else []
    parts += [f"modality {rule.modality}"] if rule.modality else []
    return "rule " + ", ".join(parts) if parts else "default"
