"""The index: the only code that speaks SQL. Its parts, each owning its own queries:

- `catalog`: instances, studies and the study lifecycle (receiving -> queued / skipped);
- `queue`: scoring jobs under leases; `outbox`: exports and the result objects they send;
- `views`: typed read models (worklist, status); `heartbeats`: the loops' health;
- `retention`: finished studies whose files may go; `performed_steps`: MPPS from modalities;
- `admin`: what an administrator may do; `hl7_outbox`: HL7 messages to the RIS, escalations;
- `objects`: the storage backend that keeps bytes in the database;
- `database`: engine, sessions and the Alembic schema revision; `schema`: the tables.
"""

from __future__ import annotations

from dicom_node.index.admin import AdminActions
from dicom_node.index.catalog import Catalog
from dicom_node.index.database import Database
from dicom_node.index.heartbeats import Heartbeats
from dicom_node.index.hl7_outbox import Hl7Outbox
from dicom_node.index.outbox import Outbox
from dicom_node.index.performed_steps import PerformedSteps
from dicom_node.index.queue import JobQueue
from dicom_node.index.retention import Retention
from dicom_node.index.views import Views


class Index:
    """One database and the parts that query it."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.db = Database(url)
        try:
            if upgrade:
                self.db.upgrade_schema()
            else:
                self.db.require_current_schema()
        except BaseException:
            self.db.close()
            raise
        self.catalog = Catalog(self.db)
        self.queue = JobQueue(self.db)
        self.outbox = Outbox(self.db)
        self.views = Views(self.db)
        self.heartbeats = Heartbeats(self.db)
        self.retention = Retention(self.db)
        self.performed_steps = PerformedSteps(self.db)
        self.admin = AdminActions(self.db)
        self.hl7 = Hl7Outbox(self.db)

    def close(self) -> None:
        self.db.close()


__all__ = ["Index"]
