"""Read models: the worklist, the node's status (with the loops' heartbeats) and lists of
studies, instances and exports, as typed records."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from dicom_node.index.catalog import instance_record
from dicom_node.index.database import Database
from dicom_node.index.records import (
    ExportRecord,
    ImageRow,
    IndexStatus,
    InstanceRecord,
    LoopHealth,
    StudyPage,
    StudyRecord,
    WorklistRow,
)
from dicom_node.index.schema import (
    Export,
    ExportState,
    Hl7Message,
    Instance,
    Job,
    JobState,
    LoopHeartbeat,
    Patient,
    Priority,
    ResultObject,
    ScoredImage,
    Study,
    StudyState,
)


def worklist_order():
    """Urgent first, then escalated (waited past the aging cap), then the most suspicious,
    then the longest waiting."""
    return (
        (Study.priority == Priority.URGENT).desc(),
        (Study.priority == Priority.ESCALATED).desc(),
        Study.max_score.desc(),
        Study.completed_at,
        Study.id,
    )


class Views:
    def __init__(self, db: Database) -> None:
        self.db = db

    def worklist(self) -> list[WorklistRow]:
        """Scored studies, in reading order, with where their results went."""
        with self.db.session() as s:
            rows = s.execute(
                select(Study, Patient.patient_id, Patient.name)
                .join(Patient, Patient.id == Study.patient_id)
                .where(Study.max_score.is_not(None))
                .order_by(*worklist_order())
            ).all()
            sent: dict[tuple[int, int], dict[str, str]] = {}
            for e in s.scalars(select(Export).order_by(Export.id)):
                text = e.state.value + (f" ({e.last_error})" if e.last_error else "")
                sent.setdefault((e.study_id, e.study_version), {})[e.destination] = text
            for m in s.scalars(select(Hl7Message).order_by(Hl7Message.id)):
                text = m.state.value + (f" ({m.last_error})" if m.last_error else "")
                name = f"hl7 {m.destination}" + (" escalation" if m.kind == "escalation" else "")
                sent.setdefault((m.study_id, m.study_version), {})[name] = text
            return [
                WorklistRow(
                    study_uid=st.study_uid,
                    accession_number=st.accession_number,
                    patient_id=pid,
                    patient_name=name,
                    study_date=st.study_date,
                    version=st.version,
                    state=st.state,
                    priority=st.priority or Priority.ROUTINE,
                    score=st.max_score,
                    percentile=st.max_percentile,
                    deliveries=sent.get((st.id, st.version), {}),
                    study_id=st.id,
                    patient_sex=st.patient_sex,
                    patient_age=st.patient_age,
                    completed_at=st.completed_at,
                )
                for st, pid, name in rows
            ]

    def status(self) -> IndexStatus:
        with self.db.session() as s:
            instances = s.scalar(select(func.count()).select_from(Instance))
            studies = dict(s.execute(select(Study.state, func.count()).group_by(Study.state)).all())
            jobs = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            exports = dict(
                s.execute(select(Export.state, func.count()).group_by(Export.state)).all()
            )
            dead = [
                f"{e.destination}: {e.last_error}"
                for e in s.scalars(select(Export).where(Export.state == ExportState.DEAD))
            ]
            dead += [
                f"job #{j.id}: {j.last_error}"
                for j in s.scalars(select(Job).where(Job.state == JobState.DEAD))
            ]
            dead += [
                f"hl7 {m.destination} ({m.kind}): {m.last_error}"
                for m in s.scalars(select(Hl7Message).where(Hl7Message.state == ExportState.DEAD))
            ]
            skipped = dict(
                s.execute(
                    select(Study.study_uid, Study.reason).where(Study.state == StudyState.SKIPPED)
                ).all()
            )
            purged = s.scalar(
                select(func.count()).select_from(Study).where(Study.purged_at.is_not(None))
            )
            loops = [
                LoopHealth(
                    loop=h.loop,
                    owner=h.owner,
                    deadline_s=h.deadline_s,
                    last_cycle_at=h.last_cycle_at,
                    failures=h.failures,
                    last_error=h.last_error,
                )
                for h in s.scalars(select(LoopHeartbeat).order_by(LoopHeartbeat.loop))
            ]
            hl7 = dict(
                s.execute(select(Hl7Message.state, func.count()).group_by(Hl7Message.state)).all()
            )
        return IndexStatus(instances, studies, jobs, exports, dead, skipped, loops, purged, hl7)

    def oldest_queued_at(self):
        """When the oldest job still queued was made; None when none is."""
        with self.db.session() as s:
            return s.scalar(select(func.min(Job.created_at)).where(Job.state == JobState.QUEUED))

    def dead_jobs(self) -> list[tuple[int, int, str, str]]:
        """(job id, study id, study UID, reason) of every dead-lettered scoring job."""
        with self.db.session() as s:
            rows = s.execute(
                select(Job.id, Study.id, Study.study_uid, Job.last_error)
                .join(Study, Study.id == Job.study_id)
                .where(Job.state == JobState.DEAD)
                .order_by(Job.id)
            ).all()
        return [tuple(r) for r in rows]

    def dead_hl7(self) -> list[tuple[int, int, str, str, str]]:
        """(message id, study id, destination, kind, reason) of every dead HL7 message."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    Hl7Message.id,
                    Hl7Message.study_id,
                    Hl7Message.destination,
                    Hl7Message.kind,
                    Hl7Message.last_error,
                )
                .where(Hl7Message.state == ExportState.DEAD)
                .order_by(Hl7Message.id)
            ).all()
        return [tuple(r) for r in rows]

    def studies(self) -> list[StudyRecord]:
        with self.db.session() as s:
            return [_study_record(st) for st in s.scalars(select(Study).order_by(Study.id))]

    def study_page(self, study_id: int) -> StudyPage | None:
        """Everything the study page shows; None for an unknown id."""
        with self.db.session() as s:
            st = s.get(Study, study_id)
            if st is None:
                return None
            patient = s.get(Patient, st.patient_id)
            images = s.execute(
                select(ScoredImage, Instance.sop_instance_uid, Instance.modality)
                .join(Instance, Instance.id == ScoredImage.instance_id)
                .where(ScoredImage.study_id == st.id, ScoredImage.study_version == st.version)
                .order_by(ScoredImage.id)
            ).all()
            objects = s.scalars(
                select(ResultObject)
                .where(ResultObject.study_id == st.id, ResultObject.study_version == st.version)
                .order_by(ResultObject.kind.desc(), ResultObject.id)
            ).all()
            exports = s.scalars(
                select(Export).where(Export.study_id == st.id).order_by(Export.id)
            ).all()
            jobs = s.scalars(select(Job).where(Job.study_id == st.id).order_by(Job.id)).all()
            job = next((j for j in jobs if j.study_version == st.version), None)
            events = [
                ("first image received", st.first_received_at),
                ("last image received", st.last_received_at),
                ("complete", st.completed_at),
                ("queued for scoring", job.created_at if job else None),
                ("scored", st.scored_at if st.state is StudyState.SCORED else None),
            ]
            events += [
                (f"delivered to {e.destination}", e.sent_at)
                for e in exports
                if e.study_version == st.version
            ]
            return StudyPage(
                study=_study_record(st),
                patient_id=patient.patient_id,
                patient_name=patient.name,
                patient_sex=st.patient_sex,
                patient_age=st.patient_age,
                patient_birth_date=st.patient_birth_date,
                score=st.max_score,
                percentile=st.max_percentile,
                images=tuple(
                    ImageRow(
                        uid, modality, i.score, i.percentile, i.abnormal, json.loads(i.statistics)
                    )
                    for i, uid, modality in images
                ),
                objects=tuple((o.kind.value, o.file, o.sop_instance_uid or "") for o in objects),
                exports=tuple(
                    ExportRecord(
                        e.id,
                        st.study_uid,
                        e.study_version,
                        e.destination,
                        e.state,
                        e.attempts,
                        e.last_error,
                    )
                    for e in exports
                ),
                jobs=tuple((j.id, j.state.value, j.attempts, j.last_error) for j in jobs),
                timeline=tuple(sorted(((w, t) for w, t in events if t), key=lambda e: e[1])),
            )

    def instances(self) -> list[InstanceRecord]:
        with self.db.session() as s:
            return [instance_record(r) for r in s.scalars(select(Instance).order_by(Instance.id))]

    def exports(self) -> list[ExportRecord]:
        with self.db.session() as s:
            rows = s.execute(
                select(Export, Study.study_uid)
                .join(Study, Study.id == Export.study_id)
                .order_by(Export.id)
            ).all()
            return [
                ExportRecord(
                    id=e.id,
                    study_uid=uid,
                    study_version=e.study_version,
                    destination=e.destination,
                    state=e.state,
                    attempts=e.attempts,
                    last_error=e.last_error,
                )
                for e, uid in rows
            ]


def _study_record(st: Study) -> StudyRecord:
    return StudyRecord(
        id=st.id,
        study_uid=st.study_uid,
        accession_number=st.accession_number,
        study_date=st.study_date,
        version=st.version,
        state=st.state,
        reason=st.reason,
        priority=st.priority,
        completed_by=st.completed_by,
    )
