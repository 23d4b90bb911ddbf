"""The index's tables and the closed vocabularies stored in them.

Only `dicom_node.index` touches these classes; everything outside reads and writes through
the typed records of `dicom_node.index.records`. Changes to the tables are made by a new
Alembic revision in `migrations/versions`, never by `create_all`.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class StudyState(str, Enum):
    RECEIVING = "receiving"  # images arriving; not yet quiet for stable_after_s
    QUEUED = "queued"  # complete and routed to scoring; a job exists for this version
    SKIPPED = "skipped"  # complete but not for this node (reason kept)
    SCORED = "scored"
    NOT_SCORED = "not_scored"  # scoring failed for good (reason kept)


class StepStatus(str, Enum):
    """Performed Procedure Step Status (0040,0252) of an MPPS, as the modality set it."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


class JobKind(str, Enum):
    SCORE = "score"


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"  # gave up after the configured attempts (reason kept)


class ExportState(str, Enum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENT = "sent"  # the destination answered Success for every object
    DEAD = "dead"  # gave up after the configured attempts (reason kept)


class Priority(str, Enum):
    """A scored study's place on the reading worklist."""

    URGENT = "urgent"  # at least one image at or above the urgent threshold
    ESCALATED = "escalated"  # routine, but unread for longer than triage.max_wait_routine_min
    ROUTINE = "routine"


class ResultKind(str, Enum):
    REPORT = "sr"  # the TID 1500 Structured Report of a study version
    ANOMALY_MAP = "sc"  # a Secondary Capture anomaly map of one source image
    KEY_OBJECTS = "ko"  # the Key Object Selection of the flagged images (worker.key_objects)


def _enum(cls: type[Enum]) -> SqlEnum:
    """Stored as its value in a plain VARCHAR(16): readable in SQL, no database enum type."""
    return SqlEnum(
        cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
    )


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patient"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")  # decoded; the latest received


class Study(Base):
    __tablename__ = "study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    accession_number: Mapped[str] = mapped_column(String(16), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[StudyState] = mapped_column(_enum(StudyState), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    first_received_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    priority: Mapped[Priority | None] = mapped_column(_enum(Priority), nullable=True)
    max_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_percentile: Mapped[float | None] = mapped_column(Float, nullable=True)
    scored_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    completed_by: Mapped[str] = mapped_column(Text, default="")  # what decided it was complete
    # As the study's first image gave them (Patient's Sex, Age, Birth Date), for the worklist.
    patient_sex: Mapped[str] = mapped_column(String(16), default="")
    patient_age: Mapped[str] = mapped_column(String(16), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(16), default="")
    # HL7: what the newest version's result says (JSON, for `hl7 preview`); when the RIS said
    # the study was read; when the aging cap escalated it.
    result_facts: Mapped[str] = mapped_column(Text, default="")
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # Retention removed its spool and result files then; the rows keep the record.
    purged_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


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


class PerformedStep(Base):
    """One Modality Performed Procedure Step a modality created (N-CREATE) and updated (N-SET):
    its status and the instances it says it made."""

    __tablename__ = "performed_step"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)  # "" when none was given
    status: Mapped[StepStatus] = mapped_column(_enum(StepStatus))
    calling_ae: Mapped[str] = mapped_column(String(16))
    referenced: Mapped[str] = mapped_column(Text, default="[]")  # JSON: SOP Instance UIDs
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (UniqueConstraint("study_id", "study_version", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind), default=JobKind.SCORE)
    state: Mapped[JobState] = mapped_column(_enum(JobState), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ScoredImage(Base):
    """The score of one instance in one study version."""

    __tablename__ = "scored_image"
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


class ResultObject(Base):
    """One DICOM object the node made for a study version (its SR or an SC), on disk."""

    __tablename__ = "result_object"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[ResultKind] = mapped_column(_enum(ResultKind))
    # NULL only for objects recorded before revision 0002, whose UIDs the index never held.
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    file: Mapped[str] = mapped_column(Text)  # relative to data_dir
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Export(Base):
    """One study version's result objects to one destination: the sent-set."""

    __tablename__ = "export"
    __table_args__ = (UniqueConstraint("study_id", "study_version", "destination"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[ExportState] = mapped_column(_enum(ExportState), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class DeliveredObject(Base):
    """One result object the destination of an export acknowledged."""

    __tablename__ = "delivered_object"
    __table_args__ = (UniqueConstraint("export_id", "result_object_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("export.id"), index=True)
    result_object_id: Mapped[int] = mapped_column(ForeignKey("result_object.id"))
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime)


class LoopHeartbeat(Base):
    """The last word of one supervised loop of one process: what `status` reports."""

    __tablename__ = "loop_heartbeat"
    __table_args__ = (UniqueConstraint("loop", "owner"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    loop: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(128))
    deadline_s: Mapped[float] = mapped_column(Float)
    last_cycle_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed cycles
    last_error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class StoredObject(Base):
    """Bytes kept in the index itself (`storage.objects: database`): a received instance
    (`spool/` + its SHA-256 key) or a result object (`data/` + its path-like key)."""

    __tablename__ = "stored_object"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[dt.datetime] = mapped_column(DateTime)


SCORING_PAUSED = "scoring_paused"  # NodeControl "yes": workers claim no job


class NodeControl(Base):
    """A switch an administrator set for every process of the node (`scoring_paused`)."""

    __tablename__ = "node_control"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    set_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Hl7Message(Base):
    """One HL7 message to one HL7 destination: a study version's result (ORU, or OMG/ORM
    priority), or its escalation by the aging cap; sent once, retried, or dead."""

    __tablename__ = "hl7_message"
    __table_args__ = (UniqueConstraint("study_id", "study_version", "destination", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    destination: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # result | escalation
    facts: Mapped[str] = mapped_column(Text)  # JSON: what the message says, as scored
    state: Mapped[ExportState] = mapped_column(_enum(ExportState), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
