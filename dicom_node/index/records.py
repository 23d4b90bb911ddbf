"""Typed records that cross the index's boundary: what callers hand in and what readers get back.

Frozen dataclasses built from rows inside a session, never the rows themselves.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from dicom_node.index.schema import (
    ExportState,
    JobState,
    Priority,
    ResultKind,
    StudyState,
)


@dataclass(frozen=True)
class ReceivedInstance:
    """What ingest knows about one stored file, ready to be indexed."""

    patient_id: str
    patient_name: str  # decoded, "=" between its groups
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
    patient_sex: str = ""
    patient_age: str = ""
    patient_birth_date: str = ""


@dataclass(frozen=True)
class ReceivingStudy:
    """A study still receiving images, as completion sees it."""

    id: int
    study_uid: str
    last_received_at: dt.datetime
    calling_aes: frozenset[str]
    modalities: frozenset[str]
    sop_instance_uids: frozenset[str]
    accession_number: str = ""


@dataclass(frozen=True)
class InstanceRecord:
    id: int
    sop_instance_uid: str
    version: int
    study_id: int
    study_version: int
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    body_part: str
    size: int
    sha256: str
    calling_ae: str
    peer_host: str
    file: str  # relative to the spool directory


@dataclass(frozen=True)
class StudyRecord:
    id: int
    study_uid: str
    accession_number: str
    study_date: str
    version: int
    state: StudyState
    reason: str
    priority: Priority | None
    completed_by: str = ""  # what decided the study was complete


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    study_id: int
    study_version: int
    attempts: int
    study_uid: str
    accession_number: str = ""


@dataclass(frozen=True)
class ImageScoreRecord:
    """The score of one source instance, as the worker hands it to the index."""

    instance_id: int
    score: float
    percentile: float
    abnormal: bool
    statistics: dict[str, float]


@dataclass(frozen=True)
class ResultObjectRecord:
    kind: ResultKind
    sop_instance_uid: str
    series_uid: str
    file: str  # relative to data_dir


@dataclass(frozen=True)
class ScoredStudy:
    """Everything one finished scoring job records, in one commit."""

    images: tuple[ImageScoreRecord, ...]
    priority: Priority
    model: str
    objects: tuple[ResultObjectRecord, ...]
    destinations: tuple[str, ...]
    note: str = ""  # kept as the study's reason: age unknown, images left out
    facts: dict = field(default_factory=dict)  # what the result says (pipeline.result_facts)
    hl7_destinations: tuple[str, ...] = ()


@dataclass(frozen=True)
class DueExport:
    id: int
    study_uid: str
    study_version: int
    destination: str
    attempts: int
    objects: tuple[tuple[int, str], ...]  # (result object id, file relative to data_dir) not
    # yet acknowledged by the destination, the SR first
    last_received_at: dt.datetime | None = None  # the study's last image: time to result
    patient_id: str = ""  # for the audit trail
    accession_number: str = ""


@dataclass(frozen=True)
class ExportRecord:
    id: int
    study_uid: str
    study_version: int
    destination: str
    state: ExportState
    attempts: int
    last_error: str


@dataclass(frozen=True)
class WorklistRow:
    study_uid: str
    accession_number: str
    patient_id: str
    patient_name: str
    study_date: str
    version: int
    state: StudyState
    priority: Priority
    score: float
    percentile: float
    deliveries: dict[str, str]  # destination -> export state (and its last error)
    study_id: int = 0
    patient_sex: str = ""
    patient_age: str = ""
    completed_at: dt.datetime | None = None

    def to_json(self) -> dict:
        return {
            "study_id": self.study_id,
            "study_uid": self.study_uid,
            "accession_number": self.accession_number,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "study_date": self.study_date,
            "version": self.version,
            "state": self.state.value,
            "priority": self.priority.value,
            "score": round(self.score, 3),
            "percentile": round(self.percentile, 1),
            "deliveries": self.deliveries,
            "patient_sex": self.patient_sex,
            "patient_age": self.patient_age,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        }


@dataclass(frozen=True)
class LoopHealth:
    """One supervised loop of one process, as its last heartbeat described it."""

    loop: str
    owner: str
    deadline_s: float
    last_cycle_at: dt.datetime | None
    failures: int
    last_error: str

    def problem(self, now: dt.datetime) -> str | None:
        """Why the loop is unhealthy, or None: failing now, or no whole cycle within deadline."""
        if self.failures:
            return f"failing ({self.failures} cycle(s) in a row): {self.last_error}"
        if self.last_cycle_at is None:
            return "has not completed a cycle yet"
        late = (now - self.last_cycle_at).total_seconds()
        if late > self.deadline_s:
            return f"no completed cycle for {late:.0f} s (deadline {self.deadline_s:.0f} s)"
        return None

    def to_json(self, now: dt.datetime) -> dict:
        problem = self.problem(now)
        return {
            "loop": self.loop,
            "owner": self.owner,
            "healthy": problem is None,
            "problem": problem or "",
            "last_cycle_at": self.last_cycle_at.isoformat() if self.last_cycle_at else None,
        }


@dataclass(frozen=True)
class IndexStatus:
    instances: int
    studies: dict[StudyState, int]
    jobs: dict[JobState, int]
    exports: dict[ExportState, int]
    dead_letters: list[str]
    skipped_reasons: dict[str, str]  # study UID -> why it is not for this node
    loops: list[LoopHealth] = field(default_factory=list)
    purged_studies: int = 0  # studies whose files retention removed
    hl7: dict[ExportState, int] = field(default_factory=dict)  # HL7 messages by state

    def is_settled(self) -> bool:
        """Nothing left to do: no study receiving or queued, no export pending."""
        return (
            self.instances > 0
            and not self.studies.get(StudyState.RECEIVING)
            and not self.studies.get(StudyState.QUEUED)
            and not self.exports.get(ExportState.PENDING)
            and not self.hl7.get(ExportState.PENDING)
        )

    def to_json(self, now: dt.datetime) -> dict:
        return {
            "instances": self.instances,
            "studies": {k.value: v for k, v in sorted(self.studies.items())},
            "jobs": {k.value: v for k, v in sorted(self.jobs.items())},
            "exports": {k.value: v for k, v in sorted(self.exports.items())},
            "hl7": {k.value: v for k, v in sorted(self.hl7.items())},
            "dead_letters": self.dead_letters,
            "skipped_reasons": self.skipped_reasons,
            "loops": [h.to_json(now) for h in self.loops],
            "purged_studies": self.purged_studies,
        }


@dataclass(frozen=True)
class ImageRow:
    sop_instance_uid: str
    modality: str
    score: float
    percentile: float
    abnormal: bool
    statistics: dict[str, float]


@dataclass(frozen=True)
class StudyPage:
    """One study as the study page shows it: header, images with their statistics, the
    newest version's result objects, deliveries and the timeline."""

    study: StudyRecord
    patient_id: str
    patient_name: str
    patient_sex: str
    patient_age: str
    patient_birth_date: str
    score: float | None
    percentile: float | None
    images: tuple[ImageRow, ...]
    objects: tuple[tuple[str, str, str], ...]  # (kind, key, SOP Instance UID)
    exports: tuple[ExportRecord, ...]
    jobs: tuple[tuple[int, str, int, str], ...]  # (id, state, attempts, last error)
    timeline: tuple[tuple[str, dt.datetime], ...]  # (what happened, when), in order
