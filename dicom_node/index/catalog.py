"""What the node holds: patients, studies, series and instance versions; and the study
lifecycle from receiving to complete (queued for scoring, or skipped with its reason)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dicom_node.index.database import Database, utcnow
from dicom_node.index.records import InstanceRecord, ReceivedInstance, ReceivingStudy
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
    def keep_instance(
        self,
        rec: ReceivedInstance,
        file: str,
        place: Callable[[Session], object] = lambda s: None,
    ) -> int | None:
        """In one transaction: decide the version of these bytes, `place(session)` them at
        the key `file`, and commit the instance row (and its patient, study, series; a
        finished study is reopened). Returns the version, or None when identical bytes are
        already kept.

        This is the hot path of ingest: one short transaction of statements built once, with
        the values as parameters (no ORM unit of work)."""
        now = utcnow()
        with self.db.session() as s:
            kept = s.execute(_KEPT_VERSIONS, {"uid": rec.sop_instance_uid}).all()
            if any(sha256 == rec.sha256 for _, sha256 in kept):
                return None
            version = 1 + max((v for v, _ in kept), default=0)
            place(s)
            patient_id = _patient_id(s, rec)
            study_id, study_version = _receiving_study(s, rec, patient_id, now)
            series_id = s.scalar(_SERIES_ID, {"uid": rec.series_uid})
            if series_id is None:
                _add_if_absent(
                    s,
                    Series,
                    {"series_uid": rec.series_uid, "study_id": study_id, "modality": rec.modality},
                )
                series_id = s.scalar(_SERIES_ID, {"uid": rec.series_uid})
            s.execute(
                insert(Instance),
                {
                    "sop_instance_uid": rec.sop_instance_uid,
                    "version": version,
                    "series_id": series_id,
                    "study_id": study_id,
                    "study_version": study_version,
                    "sop_class_uid": rec.sop_class_uid,
                    "transfer_syntax_uid": rec.transfer_syntax_uid,
                    "modality": rec.modality,
                    "body_part": rec.body_part,
                    "size": rec.size,
                    "sha256": rec.sha256,
                    "calling_ae": rec.calling_ae,
                    "peer_host": rec.peer_host,
                    "received_at": now,
                    "file": file,
                },
            )
            return version

    # -- study completion -----------------------------------------------------------------
    def receiving_studies(self) -> list[ReceivingStudy]:
        """Every study still receiving, with who sent it, its modalities and instances."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    Study.id,
                    Study.study_uid,
                    Study.last_received_at,
                    Study.accession_number,
                    Instance.calling_ae,
                    Instance.modality,
                    Instance.sop_instance_uid,
                )
                .join(Instance, Instance.study_id == Study.id)
                .where(Study.state == StudyState.RECEIVING, Instance.file != "")
            ).all()
        found: dict[int, tuple[str, dt.datetime, str, set[str], set[str], set[str]]] = {}
        for row in rows:
            _, _, _, aes, modalities, uids = found.setdefault(
                row.id,
                (row.study_uid, row.last_received_at, row.accession_number, set(), set(), set()),
            )
            aes.add(row.calling_ae)
            modalities.add(row.modality)
            uids.add(row.sop_instance_uid)
        return [
            ReceivingStudy(sid, uid, last, frozenset(a), frozenset(m), frozenset(u), accession)
            for sid, (uid, last, accession, a, m, u) in found.items()
        ]

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
        self,
        study_id: int,
        quiet_since: dt.datetime,
        accepted: bool,
        reason: str,
        completed_by: str = "",
    ) -> StudyState | None:
        """Mark a study complete (`completed_by` says what decided it): queued with one scoring
        job for its version, or skipped with the reason. None when an image arrived after
        `quiet_since` (the moment the decision looked at): it is still receiving."""
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
            study.completed_by = completed_by
            study.reason = reason
            if not accepted:
                study.state = StudyState.SKIPPED
                return StudyState.SKIPPED
            study.state = StudyState.QUEUED
            s.add(scoring_job(study, now))
            return StudyState.QUEUED


def scoring_job(study: Study, now: dt.datetime) -> Job:
    """The scoring job of the study's current version, due now."""
    return Job(
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


_KEPT_VERSIONS = select(Instance.version, Instance.sha256).where(
    Instance.sop_instance_uid == bindparam("uid")
)
_SERIES_ID = select(Series.id).where(Series.series_uid == bindparam("uid"))
_PATIENT = select(Patient.id, Patient.name).where(Patient.patient_id == bindparam("pid"))
_RENAME_PATIENT = update(Patient).where(Patient.id == bindparam("row_id"))
_STUDY = (
    select(Study.id, Study.version, Study.state)
    .where(Study.study_uid == bindparam("uid"))
    .with_for_update()
)
_UNIQUE_KEY = {Patient: "patient_id", Study: "study_uid", Series: "series_uid"}


def _add_if_absent(s: Session, entity: type, values: dict) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on the row's unique key: two processes receiving the
    first images of one patient, study or series at once both go on (the first row stands),
    where a plain INSERT would refuse one of the images."""
    dialect = s.get_bind().dialect.name
    insert_for = postgresql.insert if dialect == "postgresql" else sqlite.insert
    s.execute(
        insert_for(entity)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_UNIQUE_KEY[entity]])
    )


def _patient_id(s: Session, rec: ReceivedInstance) -> int:
    """The patient's row id; a corrected name replaces the one kept (the latest stands)."""
    row = s.execute(_PATIENT, {"pid": rec.patient_id}).first()
    if row is None:
        _add_if_absent(s, Patient, {"patient_id": rec.patient_id, "name": rec.patient_name})
        row = s.execute(_PATIENT, {"pid": rec.patient_id}).one()
    if rec.patient_name and row.name != rec.patient_name:
        s.execute(_RENAME_PATIENT, {"row_id": row.id, "name": rec.patient_name})
    return row.id


def _receiving_study(
    s: Session, rec: ReceivedInstance, patient_id: int, now: dt.datetime
) -> tuple[int, int]:
    """The study's id and version once it is receiving this image: new, still receiving, or a
    finished study reopened as its next version."""
    row = s.execute(_STUDY, {"uid": rec.study_uid}).first()
    if row is None:
        _add_if_absent(
            s,
            Study,
            {
                "study_uid": rec.study_uid,
                "patient_id": patient_id,
                "accession_number": rec.accession_number,
                "study_date": rec.study_date,
                "version": 1,
                "state": StudyState.RECEIVING,
                "reason": "",
                "first_received_at": now,
                "last_received_at": now,
                "patient_sex": rec.patient_sex,
                "patient_age": rec.patient_age,
                "patient_birth_date": rec.patient_birth_date,
            },
        )
        row = s.execute(_STUDY, {"uid": rec.study_uid}).one()
    change: dict = {"last_received_at": now}
    version = row.version
    if row.state is not StudyState.RECEIVING:
        version += 1
        change.update(
            version=version,
            state=StudyState.RECEIVING,
            reason=f"reopened: new image after {row.state.value} of version {row.version}",
            completed_at=None,
            purged_at=None,  # retention looks at the new version afresh
        )
    s.execute(update(Study).where(Study.id == row.id).values(**change))
    return row.id, version
