"""Retention's queries: which finished studies are old enough to lose their files, which files
those are, and the record that they were removed (the rows themselves stay)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from dicom_node.index.database import Database, utcnow
from dicom_node.index.schema import Export, ExportState, Instance, ResultObject, Study, StudyState

FINISHED = (StudyState.SCORED, StudyState.SKIPPED, StudyState.NOT_SCORED)


class Retention:
    def __init__(self, db: Database) -> None:
        self.db = db

    def due(self, before: dt.datetime, limit: int = 100) -> list[int]:
        """Studies finished, with nothing left to deliver, whose last delivery (or, without
        one, completion) was before `before`, and whose files are still on disk."""
        last_sent = (
            select(Export.study_id, func.max(Export.sent_at).label("at"))
            .group_by(Export.study_id)
            .subquery()
        )
        pending = select(Export.study_id).where(Export.state == ExportState.PENDING)
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(Study.id)
                    .outerjoin(last_sent, last_sent.c.study_id == Study.id)
                    .where(
                        Study.purged_at.is_(None),
                        Study.state.in_(FINISHED),
                        Study.id.not_in(pending),
                        func.coalesce(last_sent.c.at, Study.completed_at) < before,
                    )
                    .order_by(Study.id)
                    .limit(limit)
                )
            )

    def files_of(self, study_id: int) -> tuple[list[str], list[str]]:
        """(spool files relative to the spool, result files relative to data_dir)."""
        with self.db.session() as s:
            spooled = s.scalars(
                select(Instance.file).where(Instance.study_id == study_id, Instance.file != "")
            )
            results = s.scalars(select(ResultObject.file).where(ResultObject.study_id == study_id))
            return list(spooled), list(results)

    def mark_purged(self, study_id: int) -> None:
        """The files are gone: instances no longer name one (a late image's new version is
        scored on what is still on disk), and the study records when."""
        with self.db.session() as s:
            s.execute(update(Instance).where(Instance.study_id == study_id).values(file=""))
            s.execute(update(Study).where(Study.id == study_id).values(purged_at=utcnow()))
