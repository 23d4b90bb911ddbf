"""Retention: the spool and result files of studies whose results were delivered more than
`storage.retention_days` ago are removed, a batch per step; the index keeps every row and
records when. A late image for such a study makes a new version scored on what it brings."""

from __future__ import annotations

import datetime as dt
import logging

from dicom_node.config import StorageSettings
from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.index.objects import open_storage

log = logging.getLogger(__name__)
BATCH = 50


class RetentionStep:
    def __init__(self, storage: StorageSettings, index: Index) -> None:
        self.storage = storage
        self.index = index
        self.objects = open_storage(storage, index.db)

    def __call__(self) -> bool:
        """Remove the files of up to one batch of studies; False when none was due."""
        before = utcnow() - dt.timedelta(days=self.storage.retention_days)
        due = self.index.retention.due(before, limit=BATCH)
        for study_id in due:
            spooled, results = self.index.retention.files_of(study_id)
            # An OSError other than "gone": the loop retries.
            self.objects.instances.delete(list(spooled))
            self.objects.results.delete(list(results))
            self.index.retention.mark_purged(study_id)
            log.info(
                "retention: removed %d file(s) of study #%d (finished before %s)",
                len(spooled) + len(results),
                study_id,
                before.isoformat(timespec="minutes"),
            )
        return len(due) == BATCH
