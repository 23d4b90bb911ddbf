"""The scoring queue: jobs claimed under a lease, renewed by a heartbeat, taken over when a
worker dies, and finished exactly once (scored, retried later, or dead with the reason).

PostgreSQL claims use FOR UPDATE SKIP LOCKED, so concurrent workers never take the same row;
on SQLite, BEGIN IMMEDIATE already serialises the claim.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import select

from dicom_node.index.database import Database, utcnow
from dicom_node.index.hl7_outbox import pending_hl7
from dicom_node.index.outbox import pending_export
from dicom_node.index.records import ClaimedJob, ScoredStudy
from dicom_node.index.schema import (
    SCORING_PAUSED,
    Job,
    JobState,
    NodeControl,
    ResultObject,
    ScoredImage,
    Study,
    StudyState,
)

log = logging.getLogger(__name__)
_PAUSED = select(NodeControl.value).where(NodeControl.name == SCORING_PAUSED)


class JobQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim_next_job(self, owner: str, lease_s: float) -> ClaimedJob | None:
        """Take the most urgent due job, or one whose worker's lease ran out (a dead worker);
        none while an administrator has paused scoring."""
        now = utcnow()
        with self.db.session() as s:
            if s.scalar(_PAUSED) == "yes":
                return None
            job = s.scalars(
                select(Job)
                .where(
                    ((Job.state == JobState.QUEUED) & (Job.not_before <= now))
                    | ((Job.state == JobState.RUNNING) & (Job.lease_expires_at < now))
                )
                .order_by(Job.priority.desc(), Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                return None
            if job.state is JobState.RUNNING:
                log.warning("job #%d: lease of %s expired, taking it over", job.id, job.lease_owner)
            job.state = JobState.RUNNING
            job.lease_owner = owner
            job.lease_expires_at = now + dt.timedelta(seconds=lease_s)
            job.attempts += 1
            job.updated_at = now
            study_uid, accession = s.execute(
                select(Study.study_uid, Study.accession_number).where(Study.id == job.study_id)
            ).one()
            return ClaimedJob(
                job.id, job.study_id, job.study_version, job.attempts, study_uid, accession
            )

    def renew_lease(self, job_id: int, owner: str, lease_s: float) -> bool:
        with self.db.session() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.lease_owner != owner or job.state is not JobState.RUNNING:
                return False
            job.lease_expires_at = utcnow() + dt.timedelta(seconds=lease_s)
            return True

    def finish_scored(self, job: ClaimedJob, owner: str, scored: ScoredStudy) -> bool:
        """Record the scores, the result objects, the study's priority and one export per
        destination, in one commit. False when another worker took the job over."""
        now = utcnow()
        with self.db.session() as s:
            row = s.get(Job, job.id, with_for_update=True)
            if row is None or row.lease_owner != owner or row.state is not JobState.RUNNING:
                return False  # another worker took over: its result stands
            study = s.get(Study, job.study_id, with_for_update=True)
            s.add_all(
                ScoredImage(
                    instance_id=image.instance_id,
                    study_id=job.study_id,
                    study_version=job.study_version,
                    score=image.score,
                    percentile=image.percentile,
                    abnormal=image.abnormal,
                    statistics=json.dumps(image.statistics),
                    model=scored.model,
                )
                for image in scored.images
            )
            s.add_all(
                ResultObject(
                    study_id=job.study_id,
                    study_version=job.study_version,
                    kind=obj.kind,
                    sop_instance_uid=obj.sop_instance_uid,
                    series_uid=obj.series_uid,
                    file=obj.file,
                    created_at=now,
                )
                for obj in scored.objects
            )
            s.add_all(
                pending_export(job.study_id, job.study_version, destination, now)
                for destination in scored.destinations
            )
            facts = json.dumps(scored.facts)
            s.add_all(
                pending_hl7(job.study_id, job.study_version, name, "result", facts, now)
                for name in scored.hl7_destinations
            )
            row.state, row.updated_at, row.last_error = JobState.DONE, now, ""
            if study.version == job.study_version:  # a newer version supersedes this one
                study.state = StudyState.SCORED
                study.priority = scored.priority
                study.max_score = max(i.score for i in scored.images)
                study.max_percentile = max(i.percentile for i in scored.images)
                study.scored_at = now
                study.result_facts = facts
                study.reason = "; ".join(
                    filter(None, [f"{len(scored.images)} image(s) scored", scored.note])
                )
            return True

    def finish_failed(
        self, job: ClaimedJob, owner: str, reason: str, retry_at: dt.datetime | None
    ) -> bool:
        """Retry at `retry_at`, or (None) dead-letter the job and mark the study not scored.
        False when another worker took the job over."""
        with self.db.session() as s:
            row = s.get(Job, job.id, with_for_update=True)
            if row is None or row.lease_owner != owner or row.state is not JobState.RUNNING:
                return False
            row.last_error = reason
            row.updated_at = utcnow()
            row.lease_owner = None
            if retry_at is not None:
                row.state, row.not_before = JobState.QUEUED, retry_at
                return True
            row.state = JobState.DEAD
            study = s.get(Study, job.study_id, with_for_update=True)
            if study.version == job.study_version:
                study.state = StudyState.NOT_SCORED
                study.reason = f"not scored: {reason}"
            return True
