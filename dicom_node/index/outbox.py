"""The outbox: one export row per (study version, destination), claimed when due, marked sent
once, retried with backoff or dead-lettered; and the result objects each export sends."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from dicom_node.index.database import Database, utcnow
from dicom_node.index.records import DueExport
from dicom_node.index.schema import (
    DeliveredObject,
    Export,
    ExportState,
    Patient,
    ResultKind,
    ResultObject,
    Study,
)


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim_due_export(self, lease_s: float) -> DueExport | None:
        """Take one due export; pushing its next attempt out by the lease keeps others off it."""
        now = utcnow()
        with self.db.session() as s:
            exp = s.scalars(
                select(Export)
                .where(Export.state == ExportState.PENDING, Export.next_attempt_at <= now)
                .order_by(Export.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if exp is None:
                return None
            exp.attempts += 1
            exp.next_attempt_at = now + dt.timedelta(seconds=lease_s)
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
            exp = s.get(Export, export_id, with_for_update=True)
            exp.state, exp.sent_at, exp.last_error = ExportState.SENT, utcnow(), ""

    def export_failed(self, export_id: int, reason: str, retry_at: dt.datetime | None) -> None:
        with self.db.session() as s:
            exp = s.get(Export, export_id, with_for_update=True)
            exp.last_error = reason
            if retry_at is None:
                exp.state = ExportState.DEAD
            else:
                exp.next_attempt_at = retry_at

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
