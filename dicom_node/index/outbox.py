"""The outbox: one export row per (study version, destination), claimed when due, marked sent
once, retried with backoff or dead-lettered; and the result objects each export sends."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_node.index.database import Database, utcnow
from dicom_node.index.records import DueExport
from dicom_node.index.schema import (
    DeliveredObject,
    Export,
    ExportState,
    Hl7Message,
    Patient,
    ResultKind,
    ResultObject,
    Study,
)


def pending_export(study_id: int, version: int, destination: str, now: dt.datetime) -> Export:
    """An export of a study version's results to `destination`, due now."""
    return Export(
        study_id=study_id,
        study_version=version,
        destination=destination,
        state=ExportState.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error="",
    )


def claim_due(s: Session, table: type[Export] | type[Hl7Message], lease_s: float):
    """The oldest due pending row of an outbox table (exports, HL7 messages), its attempt
    counted and its next attempt pushed out by the lease, so that no other worker takes it;
    None when nothing is due. Rows another session holds are skipped, not waited for."""
    now = utcnow()
    row = s.scalars(
        select(table)
        .where(table.state == ExportState.PENDING, table.next_attempt_at <= now)
        .order_by(table.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is not None:
        row.attempts += 1
        row.next_attempt_at = now + dt.timedelta(seconds=lease_s)
    return row


def mark_sent(s: Session, table: type[Export] | type[Hl7Message], row_id: int) -> None:
    row = s.get(table, row_id, with_for_update=True)
    row.state, row.sent_at, row.last_error = ExportState.SENT, utcnow(), ""


def mark_failed(
    s: Session,
    table: type[Export] | type[Hl7Message],
    row_id: int,
    reason: str,
    retry_at: dt.datetime | None,
) -> None:
    """An attempt failed: due again at `retry_at`, or dead-lettered (None)."""
    row = s.get(table, row_id, with_for_update=True)
    row.last_error = reason
    if retry_at is None:
        row.state = ExportState.DEAD
    else:
        row.next_attempt_at = retry_at


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim_due_export(self, lease_s: float) -> DueExport | None:
        """Take one due export; pushing its next attempt out by the lease keeps others off it."""
        with self.db.session() as s:
            exp = claim_due(s, Export, lease_s)
            if exp is None:
                return None
            delivered = select(DeliveredObject.result_object_id).where(
                DeliveredObject.export_id == exp.id
            )
            objects = s.execute(
                select(ResultObject.id, ResultObject.file)
                .where(
                    ResultObject.study_id == exp.study_id,
                    ResultObject.study_version == exp.study_version,
                    ResultObject.id.not_in(delivered),
                )
                .order_by(ResultObject.kind.desc(), ResultObject.id)  # "sr" before "sc"
            )
            study_uid, last_received_at, patient_id, accession = s.execute(
                select(
                    Study.study_uid,
                    Study.last_received_at,
                    Patient.patient_id,
                    Study.accession_number,
                )
                .join(Patient, Patient.id == Study.patient_id)
                .where(Study.id == exp.study_id)
            ).one()
            return DueExport(
                id=exp.id,
                study_uid=study_uid,
                study_version=exp.study_version,
                destination=exp.destination,
                attempts=exp.attempts,
                objects=tuple((object_id, file) for object_id, file in objects),
                last_received_at=last_received_at,
                patient_id=patient_id,
                accession_number=accession,
            )

    def object_delivered(self, export_id: int, result_object_id: int) -> None:
        """The destination acknowledged one object: a retry will not send it again."""
        with self.db.session() as s:
            s.add(
                DeliveredObject(
                    export_id=export_id, result_object_id=result_object_id, sent_at=utcnow()
                )
            )

    def export_sent(self, export_id: int) -> None:
        with self.db.session() as s:
            mark_sent(s, Export, export_id)

    def export_failed(self, export_id: int, reason: str, retry_at: dt.datetime | None) -> None:
        with self.db.session() as s:
            mark_failed(s, Export, export_id, reason, retry_at)

    def earlier_reports(self, study_id: int, before_version: int) -> list[tuple[str, str]]:
        """(key, SOP Instance UID) of the SRs of the study's earlier versions, oldest first:
        the predecessors a new version's SR lists and its HL7 correction names."""
        with self.db.session() as s:
            rows = s.execute(
                select(ResultObject.file, ResultObject.sop_instance_uid)
                .where(
                    ResultObject.study_id == study_id,
                    ResultObject.study_version < before_version,
                    ResultObject.kind == ResultKind.REPORT,
                )
                .order_by(ResultObject.study_version)
            )
            return [(key, uid or "") for key, uid in rows]
