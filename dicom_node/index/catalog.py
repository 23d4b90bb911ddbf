"""What the node holds: patients, studies, series and instance versions; and the study
lifecycle from receiving to complete (queued for scoring, or skipped with its reason)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from dicom_node.index.database import Database, utcnow
from dicom_node.index.records import InstanceRecord, ReceivedInstance
from dicom_node.index.schema import (
    Instance,
    Job,
    JobKind,
    JobState,
    Patient,
    Series,
    Study,
    StudyState,
)


def instance_record(row: Instance) -> InstanceRecord:
    return InstanceRecord(
        id=row.id,
        sop_instance_uid=row.sop_instance_uid,
        version=row.version,
        study_id=row.study_id,
        study_version=row.study_version,
        sop_class_uid=row.sop_class_uid,
        transfer_syntax_uid=row.transfer_syntax_uid,
        modality=row.modality,
        body_part=row.body_part,
        size=row.size,
        sha256=row.sha256,
        calling_ae=row.calling_ae,
        peer_host=row.peer_host,
        file=row.file,
    )


class Catalog:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- ingest ---------------------------------------------------------------------------
    def versions_of(self, sop_instance_uid: str) -> list[InstanceRecord]:
        """Every version kept of one SOP Instance UID, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(Instance)
                .where(Instance.sop_instance_uid == sop_instance_uid)
                .order_by(Instance.version)
            )
            return [instance_record(row) for row in rows]

    def record_instance(self, rec: ReceivedInstance, version: int, file: str) -> None:
        """Commit the instance row (and its patient, study, series); reopens a finished study."""
        now = utcnow()
        with self.db.session() as s:
            patient = s.scalars(select(Patient).where(Patient.patient_id == rec.patient_id)).first()
            if patient is None:
                patient = Patient(patient_id=rec.patient_id, name=rec.patient_name)
                s.add(patient)
                s.flush()
            elif rec.patient_name and patient.name != rec.patient_name:
                patient.name = rec.patient_name  # a corrected name: the latest one stands
            study = s.scalars(
                select(Study).where(Study.study_uid == rec.study_uid).with_for_update()
            ).first()
            if study is None:
                study = Study(
                    study_uid=rec.study_uid,
                    patient_id=patient.id,
                    accession_number=rec.accession_number,
                    study_date=rec.study_date,
                    version=1,
                    state=StudyState.RECEIVING,
                    reason="",
                    first_received_at=now,
                    last_received_at=now,
                )
                s.add(study)
                s.flush()
            elif study.state is not StudyState.RECEIVING:
                study.version += 1
                study.reason = (
                    f"reopened: new image after {study.state.value} of version {study.version - 1}"
                )
                study.state = StudyState.RECEIVING
                study.completed_at = None
                study.purged_at = None  # retention looks at the new version afresh
            study.last_received_at = now
            series = s.scalars(select(Series).where(Series.series_uid == rec.series_uid)).first()
            if series is None:
                series = Series(series_uid=rec.series_uid, study_id=study.id, modality=rec.modality)
                s.add(series)
                s.flush()
            s.add(
                Instance(
                    sop_instance_uid=rec.sop_instance_uid,
                    version=version,
                    series_id=series.id,
                    study_id=study.id,
                    study_version=study.version,
                    sop_class_uid=rec.sop_class_uid,
                    transfer_syntax_uid=rec.transfer_syntax_uid,
                    modality=rec.modality,
                    body_part=rec.body_part,
                    size=rec.size,
                    sha256=rec.sha256,
                    calling_ae=rec.calling_ae,
                    peer_host=rec.peer_host,
                    received_at=now,
                    file=file,
                )
            )

    # -- study completion -----------------------------------------------------------------
    def stable_studies(self, quiet_since: dt.datetime) -> list[int]:
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(Study.id).where(
                        Study.state == StudyState.RECEIVING,
                        Study.last_received_at <= quiet_since,
                    )
                )
            )

    def study_contents(self, study_id: int) -> list[InstanceRecord]:
        """The newest version of each instance of the study still on disk."""
        with self.db.session() as s:
            rows = s.scalars(
                select(Instance)
                .where(Instance.study_id == study_id, Instance.file != "")  # "": removed
                .order_by(Instance.sop_instance_uid, Instance.version.desc())
            )
            newest: dict[str, InstanceRecord] = {}
            for row in rows:
                newest.setdefault(row.sop_instance_uid, instance_record(row))
        return list(newest.values())

    def complete_study(
        self, study_id: int, quiet_since: dt.datetime, accepted: bool, reason: str
    ) -> StudyState | None:
        """Mark a quiet study complete: queued with one scoring job for its version, or
        skipped with the reason. None when a late image arrived meanwhile (still receiving)."""
        now = utcnow()
        with self.db.session() as s:
            study = s.get(Study, study_id, with_for_update=True)
            if (
                study is None
                or study.state is not StudyState.RECEIVING
                or study.last_received_at > quiet_since
            ):
                return None
            study.completed_at = now
            study.reason = reason
            if not accepted:
                study.state = StudyState.SKIPPED
                return StudyState.SKIPPED
            study.state = StudyState.QUEUED
            s.add(
                Job(
                    study_id=study.id,
                    study_version=study.version,
                    kind=JobKind.SCORE,
                    state=JobState.QUEUED,
                    priority=0,
                    attempts=0,
                    not_before=now,
                    last_error="",
                    created_at=now,
                    updated_at=now,
                )
            )
            return StudyState.QUEUED
