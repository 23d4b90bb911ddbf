"""The node's roles, each started and stopped as a unit from one Settings object:

- `RunningNode` (`serve`): the SCP, the completion loop and, when `worker.enabled`, the
  worker's loops; with `node.processes` > 1, sibling SCP processes share the port;
- `RunningWorker` (`worker`): the scoring and/or delivery loops only, on a shared index.

Every loop is a `SupervisedLoop`; `health()` says how each is doing.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import uuid

from dicom_node import audit
from dicom_node.app.assembly import start_web, supervised, worker_loops
from dicom_node.app.locks import PortLock
from dicom_node.app.logs import configure_logging, log_to_file
from dicom_node.config import Settings
from dicom_node.index import Index
from dicom_node.index.objects import open_storage
from dicom_node.index.records import LoopHealth
from dicom_node.ingest.dispatch import sibling_channels
from dicom_node.ingest.scp import start_scp
from dicom_node.ingest.store import InstanceStore
from dicom_node.pipeline.completion import SWEEP_INTERVAL_S, complete_studies
from dicom_node.pipeline.loops import LoopRunner

log = logging.getLogger(__name__)


def open_index(settings: Settings, upgrade: bool = True) -> Index:
    """The configured index; `upgrade` creates it or migrates it to this release's schema."""
    if upgrade:
        settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    return Index(settings.storage.effective_database_url, upgrade=upgrade)


def start_audit(settings: Settings) -> None:
    """This process's audit trail, as `audit` in the settings says."""
    syslog = settings.audit.syslog
    audit.configure(
        audit.AuditTrail(
            settings.audit.file(settings.storage.data_dir),
            (syslog.host, syslog.port) if syslog else None,
        )
    )


def instance_store(settings: Settings, index: Index) -> InstanceStore:
    return InstanceStore(
        index.catalog,
        open_storage(settings.storage, index.db).instances,
        settings.storage.data_dir,
        settings.storage.min_free_bytes,
        settings.storage.max_instance_bytes,
    )


def process_owner() -> str:
    """This process's name in leases and heartbeats: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def forget_dead_processes(index: Index) -> None:
    """Heartbeats of this host's processes that are gone (kill -9, a crash) leave the report."""
    host = socket.gethostname()
    for owner in index.heartbeats.owners():
        name, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if name == host and pid.isdigit() and not _pid_alive(int(pid)):
            log.info("forgetting the loops of %s: the process is gone", owner)
            index.heartbeats.forget_owner(owner)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunningNode:
    """Everything `serve` runs, started in the background; `stop` finishes in-flight work."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.owner = process_owner()
        with contextlib.ExitStack() as undo:  # a failed start leaves nothing running
            self._start(settings, undo)
            undo.pop_all()

    def _start(self, settings: Settings, undo: contextlib.ExitStack) -> None:
        self.index = open_index(settings)
        start_audit(settings)
        undo.callback(self.index.close)
        self.lock = PortLock(settings.storage.data_dir, settings.node.port)
        undo.callback(self.lock.release)
        forget_dead_processes(self.index)
        store = instance_store(settings, self.index)
        store.objects.clean_leftovers()  # before anyone writes
        # The port first: a node that cannot have it starts nothing else.
        self.scp = start_scp(
            settings.node,
            store,
            self.index.performed_steps,
            max_instance_bytes=settings.storage.max_instance_bytes,
        )
        undo.callback(self.scp.stop)
        spawn = multiprocessing.get_context("spawn")
        self.siblings = []
        undo.callback(self._stop_siblings)
        for i, (ours, theirs) in enumerate(sibling_channels(settings.node.processes - 1), 1):
            sibling = spawn.Process(target=_scp_process, args=(settings, theirs), name=f"scp-{i}")
            sibling.start()
            theirs.close()  # the sibling has its own descriptor: its death shows here
            self.siblings.append(sibling)
            self.scp.server.add_sibling_when_ready(ours)
        if self.siblings:
            log.info(
                "connections go round-robin to this and %d more SCP process(es)", len(self.siblings)
            )
        completion = supervised(
            "completion",
            lambda: bool(
                complete_studies(self.index.catalog, self.index.performed_steps, settings.studies)
            ),
            SWEEP_INTERVAL_S,
            settings,
            self.index,
            self.owner,
        )
        loops = [completion]
        if settings.storage.retention_days is not None:
            from dicom_node.pipeline.retention import RetentionStep

            retention = RetentionStep(settings.storage, self.index)
            loops.append(
                supervised(
                    "retention",
                    retention,
                    settings.storage.retention_check_s,
                    settings,
                    self.index,
                    self.owner,
                )
            )
        if settings.triage.max_wait_routine_min is not None:
            from dicom_node.pipeline.hl7_delivery import EscalationStep

            step = EscalationStep(settings, self.index)
            loops.append(
                supervised(
                    "escalation", step, settings.triage.check_s, settings, self.index, self.owner
                )
            )
        self.hl7_listener = None
        if settings.hl7.listen_port is not None:
            from dicom_node.hl7.mllp import ReadListener
            from dicom_node.pipeline.hl7_delivery import read_update_handler

            self.hl7_listener = ReadListener(
                settings.hl7.listen_host,
                settings.hl7.listen_port,
                read_update_handler(self.index, settings),
            )
            undo.callback(self.hl7_listener.stop)
        model = None
        if settings.worker.enabled:
            more, model = worker_loops(settings, self.index, self.owner)
            loops += more
        self.loops = LoopRunner(loops)
        undo.callback(self.loops.stop)
        self.web = start_web(settings, self.index, self, model, settings.http.port)

    def health(self) -> list[LoopHealth]:
        return self.loops.health()

    def _stop_siblings(self) -> None:
        for p in self.siblings:
            p.terminate()  # SIGTERM: each finishes its own associations
        for p in self.siblings:
            p.join(timeout=90)

    def stop(self) -> None:
        log.info("stopping: finishing in-flight associations")
        if self.web is not None:
            self.web.stop()
        if self.hl7_listener is not None:
            self.hl7_listener.stop()
        self.scp.stop()
        self._stop_siblings()
        self.loops.stop()
        self.index.close()
        self.lock.release()
        log.info("stopped")


class RunningWorker:
    """`dicom-node worker`: the worker's loops on a (shared) index, no SCP."""

    def __init__(self, settings: Settings, http_port: int | None = None) -> None:
        self.owner = process_owner()
        self.index = open_index(settings)
        start_audit(settings)
        forget_dead_processes(self.index)
        loops, model = worker_loops(settings, self.index, self.owner)
        self.loops = LoopRunner(loops)
        self.web = start_web(settings, self.index, self, model, http_port)

    def health(self) -> list[LoopHealth]:
        return self.loops.health()

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        self.loops.stop()
        self.index.close()
        log.info("stopped")


def _scp_process(settings: Settings, channel: socket.socket) -> None:
    configure_logging(verbose=False)
    log_to_file(settings)
    start_audit(settings)
    stop = wait_for_stop_signal()
    index = open_index(settings)
    store = instance_store(settings, index)
    scp = start_scp(
        settings.node,
        store,
        index.performed_steps,
        max_instance_bytes=settings.storage.max_instance_bytes,
        channel=channel,
    )
    while not stop.wait(1.0):
        if scp.server.ended.is_set():  # the listening process died (kill -9): no orphan
            log.warning("the listening process has gone: this SCP process stops")
            break
    scp.stop()
    index.close()


def wait_for_stop_signal() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_until_stopped(start) -> None:
    """Start a role (`RunningNode` or `RunningWorker`) in the foreground until SIGTERM or
    SIGINT; in-flight work finishes first."""
    stop = wait_for_stop_signal()
    role = start()
    try:
        stop.wait()
    finally:
        role.stop()
