"""HL7 messages to the RIS, exactly once per (study version, destination, kind), like DICOM
exports; the aging cap's escalations; and "read" updates from the RIS."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from dicom_node.index.database import Database, utcnow
from dicom_node.index.outbox import claim_due, mark_failed, mark_sent
from dicom_node.index.schema import (
    Export,
    ExportState,
    Hl7Message,
    Priority,
    Study,
    StudyState,
)


@dataclass(frozen=True)
class DueHl7:
    id: int
    study_id: int
    study_version: int
    destination: str
    kind: str  # result | escalation
    facts: dict
    attempts: int

    @property
    def control_id(self) -> str:
        """MSH-10: the same for every attempt of one message, so the RIS can drop a repeat."""
        return f"DN{self.id}"


def pending_hl7(
    study_id: int, version: int, destination: str, kind: str, facts: str, now: dt.datetime
) -> Hl7Message:
    """An HL7 message due now (`facts`: the study's result facts as JSON)."""
    return Hl7Message(
        study_id=study_id,
        study_version=version,
        destination=destination,
        kind=kind,
        facts=facts,
        state=ExportState.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error="",
    )


class Hl7Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim_due(self, lease_s: float) -> DueHl7 | None:
        with self.db.session() as s:
            row = claim_due(s, Hl7Message, lease_s)
            if row is None:
                return None
            return DueHl7(
                row.id,
                row.study_id,
                row.study_version,
                row.destination,
                row.kind,
                json.loads(row.facts),
                row.attempts,
            )

    def sent(self, message_id: int) -> None:
        with self.db.session() as s:
            mark_sent(s, Hl7Message, message_id)

    def failed(self, message_id: int, reason: str, retry_at: dt.datetime | None) -> None:
        with self.db.session() as s:
            mark_failed(s, Hl7Message, message_id, reason, retry_at)

    def escalate_due(self, before: dt.datetime, destinations: tuple[str, ...]) -> list[int]:
        """Routine studies not read whose results were delivered (or, with nothing to
        deliver, scored) before `before`: escalated, with a priority update to each HL7
        destination. Their ids."""
        now = utcnow()
        delivered = (
            select(Export.study_id, Export.study_version, func.min(Export.sent_at).label("at"))
            .where(Export.state == ExportState.SENT)
            .group_by(Export.study_id, Export.study_version)
            .subquery()
        )
        with self.db.session() as s:
            rows = s.execute(
                select(Study, delivered.c.at)
                .outerjoin(
                    delivered,
                    (delivered.c.study_id == Study.id)
                    & (delivered.c.study_version == Study.version),
                )
                .where(
                    Study.state == StudyState.SCORED,
                    Study.priority == Priority.ROUTINE,
                    Study.read_at.is_(None),
                    Study.escalated_at.is_(None),
                    or_(delivered.c.at < before, Study.scored_at < before),
                )
                .with_for_update(of=Study)
            ).all()
            escalated = []
            for study, delivered_at in rows:
                if (delivered_at or study.scored_at) >= before:
                    continue  # delivered, but not long enough ago
                study.priority, study.escalated_at = Priority.ESCALATED, now
                escalated.append(study.id)
                s.add_all(
                    pending_hl7(
                        study.id, study.version, name, "escalation", study.result_facts, now
                    )
                    for name in destinations
                    if study.result_facts
                )
            return escalated

    def mark_read(self, accession: str) -> int:
        """The RIS says the studies of this accession were read: no escalation any more.
        How many studies that was."""
        if not accession:
            return 0
        with self.db.session() as s:
            studies = s.scalars(
                select(Study).where(Study.accession_number == accession).with_for_update()
            ).all()
            for study in studies:
                study.read_at = study.read_at or utcnow()
            return len(studies)

    def facts_of(self, study_ref: str) -> dict | None:
        """The newest result facts of a study named by accession, Study Instance UID or id."""
        with self.db.session() as s:
            conditions = [Study.accession_number == study_ref, Study.study_uid == study_ref]
            if study_ref.isdigit():
                conditions.append(Study.id == int(study_ref))
            facts = s.scalars(
                select(Study.result_facts).where(or_(*conditions)).order_by(Study.id.desc())
            ).first()
        return json.loads(facts) if facts else None
