"""Where each supervised loop writes how it is doing, for `status` in another process; read
back by `views.Views.status`."""

from __future__ import annotations

from sqlalchemy import delete, select

from dicom_node.index.database import Database, utcnow
from dicom_node.index.records import LoopHealth
from dicom_node.index.schema import LoopHeartbeat


class Heartbeats:
    """Where each supervised loop writes how it is doing, for `status` in another process."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def beat(self, health: LoopHealth) -> None:
        with self.db.session() as s:
            row = s.scalars(
                select(LoopHeartbeat).where(
                    LoopHeartbeat.loop == health.loop, LoopHeartbeat.owner == health.owner
                )
            ).first()
            if row is None:
                row = LoopHeartbeat(loop=health.loop, owner=health.owner)
                s.add(row)
            row.deadline_s = health.deadline_s
            row.last_cycle_at = health.last_cycle_at
            row.failures = health.failures
            row.last_error = health.last_error
            row.updated_at = utcnow()

    def owners(self) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(LoopHeartbeat.owner).distinct()))

    def forget_owner(self, owner: str) -> None:
        """Take every loop of a process that is gone (killed, crashed) off the report."""
        with self.db.session() as s:
            s.execute(delete(LoopHeartbeat).where(LoopHeartbeat.owner == owner))

    def forget(self, loop: str, owner: str) -> None:
        """A loop that stops cleanly takes itself off the report."""
        with self.db.session() as s:
            s.execute(
                delete(LoopHeartbeat).where(
                    LoopHeartbeat.loop == loop, LoopHeartbeat.owner == owner
                )
            )
