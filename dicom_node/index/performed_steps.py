"""Modality Performed Procedure Steps as the modalities reported them: created IN PROGRESS,
then set COMPLETED or DISCONTINUED (final: never changed again), with the instances made."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select

from dicom_node.index.database import Database, utcnow
from dicom_node.index.schema import PerformedStep, StepStatus


class StepRefused(Exception):
    """A change the index refuses; the message says why."""


class StepExists(StepRefused):
    pass


class NoSuchStep(StepRefused):
    pass


class StepIsFinal(StepRefused):
    """A COMPLETED or DISCONTINUED step may no longer be updated (PS3.4 F.7.2.2)."""


@dataclass(frozen=True)
class StepRecord:
    sop_instance_uid: str
    study_uid: str
    status: StepStatus
    calling_ae: str
    referenced: tuple[str, ...]


class PerformedSteps:
    def __init__(self, db: Database) -> None:
        self.db = db

    def created(
        self,
        uid: str,
        study_uid: str,
        status: StepStatus,
        calling_ae: str,
        referenced: tuple[str, ...],
    ) -> None:
        """N-CREATE: a new step; refused when one with this UID exists."""
        now = utcnow()
        with self.db.session() as s:
            if s.scalar(select(PerformedStep.id).where(PerformedStep.sop_instance_uid == uid)):
                raise StepExists(f"performed procedure step {uid} exists")
            s.add(
                PerformedStep(
                    sop_instance_uid=uid,
                    study_uid=study_uid,
                    status=status,
                    calling_ae=calling_ae,
                    referenced=json.dumps(list(referenced)),
                    created_at=now,
                    updated_at=now,
                )
            )

    def updated(
        self,
        uid: str,
        status: StepStatus | None,
        referenced: tuple[str, ...] | None,
        study_uid: str | None = None,
    ) -> StepRecord:
        """N-SET: a new status and/or list of instances (None: unchanged); refused for an
        unknown step or one already final."""
        with self.db.session() as s:
            step = s.scalars(
                select(PerformedStep).where(PerformedStep.sop_instance_uid == uid).with_for_update()
            ).first()
            if step is None:
                raise NoSuchStep(f"no performed procedure step {uid}")
            if step.status is not StepStatus.IN_PROGRESS:
                raise StepIsFinal(
                    f"performed procedure step {uid} is {step.status.value}: it may no longer "
                    "be updated",
                )
            if status is not None:
                step.status = status
            if referenced is not None:
                step.referenced = json.dumps(list(referenced))
            if study_uid:
                step.study_uid = study_uid
            step.updated_at = utcnow()
            return _record(step)

    def completed_for(self, study_uids: list[str]) -> dict[str, list[StepRecord]]:
        """The COMPLETED steps of these studies, by study UID."""
        found: dict[str, list[StepRecord]] = {}
        with self.db.session() as s:
            for row in s.scalars(
                select(PerformedStep).where(
                    PerformedStep.study_uid.in_(study_uids),
                    PerformedStep.status == StepStatus.COMPLETED,
                )
            ):
                found.setdefault(row.study_uid, []).append(_record(row))
        return found

    def get(self, uid: str) -> StepRecord | None:
        with self.db.session() as s:
            row = s.scalars(
                select(PerformedStep).where(PerformedStep.sop_instance_uid == uid)
            ).first()
            return None if row is None else _record(row)


def _record(row: PerformedStep) -> StepRecord:
    return StepRecord(
        row.sop_instance_uid,
        row.study_uid,
        row.status,
        row.calling_ae,
        tuple(json.loads(row.referenced)),
    )
