"""What an administrator may do to the node's work: retry a dead-lettered job or export,
send a study's results again, score a study again with the current model, pause and resume
scoring. Each returns a sentence saying what it did, or raises AdminRefused saying why not."""

from __future__ import annotations

from sqlalchemy import delete, select

from dicom_node.errors import DicomNodeError
from dicom_node.index.catalog import scoring_job
from dicom_node.index.database import Database, utcnow
from dicom_node.index.outbox import pending_export
from dicom_node.index.schema import (
    SCORING_PAUSED,
    DeliveredObject,
    Export,
    ExportState,
    Hl7Message,
    Job,
    JobState,
    NodeControl,
    ResultObject,
    Study,
    StudyState,
)


class AdminRefused(DicomNodeError):
    """The action does not apply to that row now (the message says why)."""


class AdminActions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def retry_job(self, job_id: int, by: str) -> str:
        now = utcnow()
        with self.db.session() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.state is not JobState.DEAD:
                raise AdminRefused(f"job #{job_id} is not a dead letter")
            job.state, job.attempts, job.not_before, job.updated_at = JobState.QUEUED, 0, now, now
            job.last_error = ""
            study = s.get(Study, job.study_id, with_for_update=True)
            if study.version == job.study_version:
                study.state, study.reason = StudyState.QUEUED, f"retried by {by}"
            return f"job #{job_id} queued again"

    def retry_export(self, export_id: int, by: str) -> str:
        return self._retry_dead(Export, export_id, "export")

    def retry_hl7(self, message_id: int, by: str) -> str:
        return self._retry_dead(Hl7Message, message_id, "HL7 message")

    def _retry_dead(self, table: type[Export] | type[Hl7Message], row_id: int, what: str) -> str:
        """A dead-lettered export or HL7 message, due again with its attempts reset."""
        with self.db.session() as s:
            row = s.get(table, row_id, with_for_update=True)
            if row is None or row.state is not ExportState.DEAD:
                raise AdminRefused(f"{what} #{row_id} is not a dead letter")
            _due_again(row)
            return f"{what} #{row_id} to {row.destination} pending again"

    def resend(self, study_id: int, destination: str, by: str) -> str:
        """Every result object of the study's newest scored version, to `destination`, again
        (the objects it acknowledged before included)."""
        now = utcnow()
        with self.db.session() as s:
            version = s.scalar(
                select(ResultObject.study_version)
                .where(ResultObject.study_id == study_id)
                .order_by(ResultObject.study_version.desc())
                .limit(1)
            )
            if version is None:
                raise AdminRefused(f"study #{study_id} has no results to send")
            export = s.scalars(
                select(Export)
                .where(
                    Export.study_id == study_id,
                    Export.study_version == version,
                    Export.destination == destination,
                )
                .with_for_update()
            ).first()
            if export is None:
                s.add(pending_export(study_id, version, destination, now))
            else:
                s.execute(delete(DeliveredObject).where(DeliveredObject.export_id == export.id))
                _due_again(export)
            return f"results of study #{study_id} v{version} to {destination} again"

    def rescore(self, study_id: int, by: str) -> str:
        """The study as a new version, scored by whichever model the workers run now; its SR
        lists the earlier ones as predecessors."""
        now = utcnow()
        with self.db.session() as s:
            study = s.get(Study, study_id, with_for_update=True)
            if study is None or study.state not in (StudyState.SCORED, StudyState.NOT_SCORED):
                raise AdminRefused(f"study #{study_id} is not scored or not_scored")
            if study.purged_at is not None:
                raise AdminRefused(f"study #{study_id}: retention removed its images")
            study.version += 1
            study.state, study.completed_at = StudyState.QUEUED, now
            study.reason = study.completed_by = f"re-score requested by {by}"
            s.add(scoring_job(study, now))
            return f"study #{study_id} queued as version {study.version}"

    def pause_scoring(self, paused: bool, by: str) -> str:
        with self.db.session() as s:
            row = s.get(NodeControl, SCORING_PAUSED, with_for_update=True)
            if row is None:
                row = NodeControl(name=SCORING_PAUSED)
                s.add(row)
            row.value, row.set_by, row.updated_at = ("yes" if paused else "no"), by, utcnow()
        return "scoring paused" if paused else "scoring resumed"

    def scoring_paused(self) -> bool:
        with self.db.session() as s:
            return (
                s.scalar(select(NodeControl.value).where(NodeControl.name == SCORING_PAUSED))
                == "yes"
            )


def _due_again(export: Export | Hl7Message) -> None:
    export.state, export.attempts, export.next_attempt_at = ExportState.PENDING, 0, utcnow()
    export.last_error = ""
