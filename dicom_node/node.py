"""The running node: index, spool, SCP and scheduler wired from one Settings object.

With `node.processes` > 1 the SCP runs in that many processes sharing the port
(SO_REUSEPORT); the first one also runs the scheduler.
"""

from __future__ import annotations

import logging
import multiprocessing
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


def _wait_for_stop_signal() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _run_scp_until_stopped(settings: Settings, index: Index, stop: threading.Event) -> None:
    scp = StoreSCP(settings.node, index, Spool(settings.storage.data_dir / "spool"))
    scp.start(reuse_port=settings.node.processes > 1)
    try:
        stop.wait()
    finally:
        scp.stop()


def _scp_process(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    stop = _wait_for_stop_signal()
    index = open_index(settings)
    try:
        _run_scp_until_stopped(settings, index, stop)
    finally:
        index.close()


def serve(settings: Settings) -> None:
    """Run in the foreground until SIGTERM or SIGINT; in-flight associations finish first."""
    stop = _wait_for_stop_signal()
    index = open_index(settings)
    Spool(settings.storage.data_dir / "spool").clean_leftovers()  # before anyone writes
    spawn = multiprocessing.get_context("spawn")
    siblings = [spawn.Process(target=_scp_process, args=(settings,), name=f"scp-{i}")
                for i in range(1, settings.node.processes)]
    for p in siblings:
        p.start()
    scheduler = start_scheduler(index, settings.studies)
    try:
        _run_scp_until_stopped(settings, index, stop)
    finally:
        log.info("stopping: finishing in-flight associations")
        for p in siblings:
            p.terminate()  # SIGTERM: each finishes its own associations
        for p in siblings:
            p.join(timeout=90)
        scheduler.shutdown(wait=True)
        index.close()
        log.info("stopped")
