"""The running node: index, spool, SCP, scheduler and worker wired from one Settings object.

With `node.processes` > 1 the SCP runs in that many processes sharing the port
(SO_REUSEPORT); the first one also runs the scheduler and the worker.
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


def _make_scp(settings: Settings, index: Index) -> StoreSCP:
    return StoreSCP(settings.node, index, Spool(settings.storage.data_dir / "spool"))


def _scp_process(settings: Settings) -> None:
    from dicom_node.cli import configure_logging

    configure_logging(verbose=False)
    stop = _wait_for_stop_signal()
    index = open_index(settings)
    scp = _make_scp(settings, index)
    scp.start(reuse_port=True)
    stop.wait()
    scp.stop()
    index.close()


class RunningNode:
    """Everything `serve` runs, started in the background; `stop` finishes in-flight work."""

    def __init__(self, settings: Settings, with_worker: bool | None = None) -> None:
        self.settings = settings
        self.index = open_index(settings)
        Spool(settings.storage.data_dir / "spool").clean_leftovers()  # before anyone writes
        spawn = multiprocessing.get_context("spawn")
        self.siblings = [
            spawn.Process(target=_scp_process, args=(settings,), name=f"scp-{i}")
            for i in range(1, settings.node.processes)
        ]
        for p in self.siblings:
            p.start()
        self.scheduler = start_scheduler(self.index, settings.studies)
        self.worker = self.worker_thread = None
        if settings.worker.enabled if with_worker is None else with_worker:
            from dicom_node.worker import Worker

            self.worker = Worker(settings, self.index)
            self.worker_thread = threading.Thread(
                target=self.worker.run_forever, name="worker", daemon=True
            )
            self.worker_thread.start()
        self.scp = _make_scp(settings, self.index)
        self.scp.start(reuse_port=settings.node.processes > 1)

    def stop(self) -> None:
        log.info("stopping: finishing in-flight associations")
        self.scp.stop()
        for p in self.siblings:
            p.terminate()  # SIGTERM: each finishes its own associations
        for p in self.siblings:
            p.join(timeout=90)
        if self.worker is not None:
            self.worker.stop.set()
            self.worker_thread.join(timeout=120)
        self.scheduler.shutdown(wait=True)
        self.index.close()
        log.info("stopped")


def serve(settings: Settings) -> None:
    """Run in the foreground until SIGTERM or SIGINT; in-flight associations finish first."""
    stop = _wait_for_stop_signal()
    node = RunningNode(settings)
    try:
        stop.wait()
    finally:
        node.stop()


def run_worker(settings: Settings) -> None:
    """`dicom-node worker`: only the scoring and export loop, until SIGTERM or SIGINT."""
    from dicom_node.worker import Worker

    stop = _wait_for_stop_signal()
    index = open_index(settings)
    worker = Worker(settings, index)
    thread = threading.Thread(target=worker.run_forever, name="worker", daemon=True)
    thread.start()
    stop.wait()
    worker.stop.set()
    thread.join(timeout=120)
    index.close()
