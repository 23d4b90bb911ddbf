"""The index: SQLAlchemy models of patients, studies, series, instances and jobs, and the one
`Index` object that runs every query. SQLite (WAL) by default, PostgreSQL for shared queues."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class StudyState(str, Enum):
    RECEIVING = "receiving"  # images arriving; not yet quiet for stable_after_s
    QUEUED = "queued"  # complete and routed to scoring; a job exists for this version
    SKIPPED = "skipped"  # complete but not for this node (reason kept)
    SCORED = "scored"
    NOT_SCORED = "not_scored"  # scoring failed for good (reason kept)


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"  # gave up after the configured attempts (reason kept)


class ExportState(str, Enum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENT = "sent"  # the destination answered Success for every object
    DEAD = "dead"  # gave up after the configured attempts (reason kept)


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patient"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)


class Study(Base):
    __tablename__ = "study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    accession_number: Mapped[str] = mapped_column(String(16), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING.value, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    first_received_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    priority: Mapped[str] = mapped_column(String(16), default="")  # urgent / routine once scored
    max_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_percentile: Mapped[float | None] = mapped_column(Float, nullable=True)
    scored_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Series(Base):
    __tablename__ = "series"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="")


class Instance(Base):
    __tablename__ = "instance"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)  # > 1: same UID, different bytes
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16))
    peer_host: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime)
    file: Mapped[str] = mapped_column(Text)  # relative to the spool directory


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (UniqueConstraint("study_id", "study_version", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="score")
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value, index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ImageResult(Base):
    """The score of one instance in one study version."""

    __tablename__ = "image_result"
    __table_args__ = (UniqueConstraint("instance_id", "study_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    percentile: Mapped[float] = mapped_column(Float)
    abnormal: Mapped[bool] = mapped_column(Boolean)
    statistics: Mapped[str] = mapped_column(Text)  # JSON: statistic -> z-score
    model: Mapped[str] = mapped_column(String(64))


class Export(Base):
    """One study version's result objects to one destination: the sent-set."""

    __tablename__ = "export"
    __table_args__ = (UniqueConstraint("study_id", "study_version", "destination"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    destination: Mapped[str] = mapped_column(String(64))
    files: Mapped[str] = mapped_column(Text)  # JSON list of result files, relative to data_dir
    state: Mapped[str] = mapped_column(String(16), default=ExportState.PENDING.value, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    study_id: int
    study_version: int
    attempts: int
    study_uid: str


@dataclass(frozen=True)
class ReceivedInstance:
    """What the SCP knows about one stored file, ready to be indexed."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    body_part: str
    accession_number: str
    study_date: str
    size: int
    sha256: str
    calling_ae: str
    peer_host: str


class Outcome(str, Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # identical bytes already indexed: nothing new
    NEW_VERSION = "new_version"  # same SOP Instance UID, different bytes: kept as a new version


def make_engine(url: str):
    if url.startswith("sqlite"):
        # isolation_level None + BEGIN IMMEDIATE: each transaction takes the write lock up
        # front, so concurrent associations wait (busy timeout) instead of failing to upgrade.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None}
        )

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before Success
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True)


class Index:
    """Owns every query the node runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    # -- ingest ---------------------------------------------------------------------------
    def latest_instance(self, sop_instance_uid: str) -> Instance | None:
        with self.session() as s:
            return s.scalars(
                select(Instance)
                .where(Instance.sop_instance_uid == sop_instance_uid)
                .order_by(Instance.version.desc())
                .limit(1)
            ).first()

    def record_instance(self, rec: ReceivedInstance, version: int, file: str) -> None:
        """Commit the instance row (and its patient, study, series); reopens a finished study."""
        now = utcnow()
        with self.session() as s:
            patient = s.scalars(select(Patient).where(Patient.patient_id == rec.patient_id)).first()
            if patient is None:
                patient = Patient(patient_id=rec.patient_id)
                s.add(patient)
                s.flush()
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
                    state=StudyState.RECEIVING.value,
                    reason="",
                    first_received_at=now,
                    last_received_at=now,
                )
                s.add(study)
                s.flush()
            elif study.state != StudyState.RECEIVING.value:
                study.version += 1
                study.reason = (
                    f"reopened: new image after {study.state} of version {study.version - 1}"
                )
                study.state = StudyState.RECEIVING.value
                study.completed_at = None
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

    # -- study completion -------------------------------------------------------------------
    def stable_studies(self, quiet_since: dt.datetime) -> list[int]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(Study.id).where(
                        Study.state == StudyState.RECEIVING.value,
                        Study.last_received_at <= quiet_since,
                    )
                )
            )

    def complete_study(self, study_id: int, quiet_since: dt.datetime, route) -> StudyState | None:
        """Mark a quiet study complete: `route(instances)` returns (accepted, reason).

        Accepted studies get one scoring job for their version; others are skipped with the
        reason. Returns None when the study changed meanwhile (a late image: still receiving).
        """
        now = utcnow()
        with self.session() as s:
            study = s.get(Study, study_id, with_for_update=True)
            if (
                study is None
                or study.state != StudyState.RECEIVING.value
                or study.last_received_at > quiet_since
            ):
                return None
            instances = list(s.scalars(select(Instance).where(Instance.study_id == study.id)))
            accepted, reason = route(instances)
            study.completed_at = now
            study.reason = reason
            if not accepted:
                study.state = StudyState.SKIPPED.value
                return StudyState.SKIPPED
            study.state = StudyState.QUEUED.value
            s.add(
                Job(
                    study_id=study.id,
                    study_version=study.version,
                    kind="score",
                    state=JobState.QUEUED.value,
                    priority=0,
                    attempts=0,
                    not_before=now,
                    last_error="",
                    created_at=now,
                    updated_at=now,
                )
            )
            return StudyState.QUEUED

    # -- scoring queue ----------------------------------------------------------------------
    def claim_next_job(self, owner: str, lease_s: float) -> ClaimedJob | None:
        """Take the most urgent due job, or one whose worker's lease ran out (a dead worker).

        PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers never take the same row;
        SQLite: BEGIN IMMEDIATE already serialises the claim.
        """
        now = utcnow()
        with self.session() as s:
            job = s.scalars(
                select(Job)
                .where(
                    ((Job.state == JobState.QUEUED.value) & (Job.not_before <= now))
                    | ((Job.state == JobState.RUNNING.value) & (Job.lease_expires_at < now))
                )
                .order_by(Job.priority.desc(), Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                return None
            if job.state == JobState.RUNNING.value:
                log.warning("job #%d: lease of %s expired, taking it over", job.id, job.lease_owner)
            job.state = JobState.RUNNING.value
            job.lease_owner = owner
            job.lease_expires_at = now + dt.timedelta(seconds=lease_s)
            job.attempts += 1
            job.updated_at = now
            study = s.get(Study, job.study_id)
            return ClaimedJob(
                job.id, job.study_id, job.study_version, job.attempts, study.study_uid
            )

    def renew_lease(self, job_id: int, owner: str, lease_s: float) -> bool:
        with self.session() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.lease_owner != owner or job.state != JobState.RUNNING.value:
                return False
            job.lease_expires_at = utcnow() + dt.timedelta(seconds=lease_s)
            return True

    def study_images(self, study_id: int, rules_match) -> list[Instance]:
        """The newest version of each instance of the study that `rules_match(instance)`."""
        with self.session() as s:
            rows = list(
                s.scalars(
                    select(Instance)
                    .where(Instance.study_id == study_id)
                    .order_by(Instance.sop_instance_uid, Instance.version.desc())
                )
            )
        newest: dict[str, Instance] = {}
        for row in rows:
            newest.setdefault(row.sop_instance_uid, row)
        return [r for r in newest.values() if rules_match(r)]

    def finish_job_scored(
        self,
        job: ClaimedJob,
        owner: str,
        results: list[ImageResult],
        priority: str,
        exports: list[tuple[str, list[str]]],
    ) -> bool:
        """Record the scores, the study's priority and the exports to make, in one commit."""
        now = utcnow()
        with self.session() as s:
            row = s.get(Job, job.id, with_for_update=True)
            if row is None or row.lease_owner != owner or row.state != JobState.RUNNING.value:
                return False  # another worker took over: its result stands
            study = s.get(Study, job.study_id, with_for_update=True)
            s.add_all(results)
            row.state, row.updated_at, row.last_error = JobState.DONE.value, now, ""
            if study.version == job.study_version:
                study.state = StudyState.SCORED.value
                study.priority = priority
                study.max_score = max(r.score for r in results)
                study.max_percentile = max(r.percentile for r in results)
                study.scored_at = now
                study.reason = f"{len(results)} image(s) scored"
            for destination, files in exports:
                s.add(
                    Export(
                        study_id=job.study_id,
                        study_version=job.study_version,
                        destination=destination,
                        files=json.dumps(files),
                        state=ExportState.PENDING.value,
                        attempts=0,
                        next_attempt_at=now,
                        last_error="",
                    )
                )
            return True

    def fail_job(
        self, job: ClaimedJob, owner: str, reason: str, retry_at: dt.datetime | None
    ) -> None:
        """Retry later, or (retry_at None) dead-letter the job and mark the study not scored."""
        with self.session() as s:
            row = s.get(Job, job.id, with_for_update=True)
            if row is None or row.lease_owner != owner:
                return
            row.last_error = reason
            row.updated_at = utcnow()
            row.lease_owner = None
            if retry_at is not None:
                row.state, row.not_before = JobState.QUEUED.value, retry_at
                return
            row.state = JobState.DEAD.value
            study = s.get(Study, job.study_id, with_for_update=True)
            if study.version == job.study_version:
                study.state = StudyState.NOT_SCORED.value
                study.reason = f"not scored: {reason}"

    # -- exports --------------------------------------------------------------------------
    def claim_due_export(self, lease_s: float) -> Export | None:
        """Take one due export; pushing its next attempt out by the lease keeps others off it."""
        now = utcnow()
        with self.session() as s:
            exp = s.scalars(
                select(Export)
                .where(Export.state == ExportState.PENDING.value, Export.next_attempt_at <= now)
                .order_by(Export.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if exp is not None:
                exp.attempts += 1
                exp.next_attempt_at = now + dt.timedelta(seconds=lease_s)
            return exp

    def export_sent(self, export_id: int) -> None:
        with self.session() as s:
            exp = s.get(Export, export_id, with_for_update=True)
            exp.state, exp.sent_at, exp.last_error = ExportState.SENT.value, utcnow(), ""

    def export_failed(self, export_id: int, reason: str, retry_at: dt.datetime | None) -> None:
        with self.session() as s:
            exp = s.get(Export, export_id, with_for_update=True)
            exp.last_error = reason
            if retry_at is None:
                exp.state = ExportState.DEAD.value
            else:
                exp.next_attempt_at = retry_at

    def worklist(self) -> list[dict]:
        """Scored studies, most suspicious first, with where their results went."""
        with self.session() as s:
            rows = s.execute(
                select(Study, Patient.patient_id)
                .join(Patient, Patient.id == Study.patient_id)
                .where(Study.max_score.is_not(None))
                .order_by((Study.priority == "urgent").desc(), Study.max_score.desc())
            ).all()
            exports = list(s.scalars(select(Export)))
        by_study: dict[tuple[int, int], list[Export]] = {}
        for e in exports:
            by_study.setdefault((e.study_id, e.study_version), []).append(e)
        return [
            {
                "study_uid": st.study_uid,
                "accession_number": st.accession_number,
                "patient_id": pid,
                "study_date": st.study_date,
                "version": st.version,
                "state": st.state,
                "priority": st.priority,
                "score": round(st.max_score, 3),
                "percentile": round(st.max_percentile, 1),
                "results": {
                    e.destination: e.state + (f" ({e.last_error})" if e.last_error else "")
                    for e in by_study.get((st.id, st.version), [])
                },
            }
            for st, pid in rows
        ]

    # -- status ---------------------------------------------------------------------------
    def counts(self) -> dict:
        with self.session() as s:
            instances = s.scalar(select(func.count()).select_from(Instance))
            studies = dict(s.execute(select(Study.state, func.count()).group_by(Study.state)).all())
            jobs = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            exports = dict(
                s.execute(select(Export.state, func.count()).group_by(Export.state)).all()
            )
            dead = [
                f"{e.destination}: {e.last_error}"
                for e in s.scalars(select(Export).where(Export.state == ExportState.DEAD.value))
            ]
            dead += [
                f"job #{j.id}: {j.last_error}"
                for j in s.scalars(select(Job).where(Job.state == JobState.DEAD.value))
            ]
        return {
            "instances": instances,
            "studies": studies,
            "jobs": jobs,
            "exports": exports,
            "dead_letters": dead,
        }

    def studies(self) -> list[Study]:
        with self.session() as s:
            return list(s.scalars(select(Study).order_by(Study.id)))

    def instances(self) -> list[Instance]:
        with self.session() as s:
            return list(s.scalars(select(Instance).order_by(Instance.id)))


__all__ = [
    "ClaimedJob",
    "Export",
    "ExportState",
    "ImageResult",
    "Index",
    "IntegrityError",
    "Instance",
    "Job",
    "JobState",
    "Outcome",
    "ReceivedInstance",
    "Study",
    "StudyState",
    "utcnow",
]
