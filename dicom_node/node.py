"""The running node: index, spool, SCP and scheduler wired from one Settings object."""

from __future__ import annotations

import logging
import signal
import threading

from dicom_node.config import Settings
from dicom_node.db import Index
from dicom_node.scheduler import start_scheduler
from dicom_node.scp import StoreSCP
from dicom_node.spool import Spool

log = logging.getLogger(__name__)


def open_index(settings: Settings) -> Index:
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    return Index(settings.storage.effective_database_url)


def serve(settings: Settings) -> None:
    """Run in the foreground until SIGTERM or SIGINT; in-flight associations finish first."""
    index = open_index(settings)
    spool = Spool(settings.storage.data_dir / "spool")
    spool.clean_leftovers()
    scp = StoreSCP(settings.node, index, spool)
    scheduler = start_scheduler(index, settings.studies)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scp.start()
    try:
        stop.wait()
    finally:
        log.info("stopping: finishing in-flight associations")
        scp.stop()
        scheduler.shutdown(wait=True)
        index.close()
        log.info("stopped")
