"""Nodes under test: in this process (`InProcessNode`, polled through its index) or as a real
`dicom-node serve` process (`NodeProcess`, for signals and kill -9); and small helpers."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import yaml

from dicom_node.app.roles import RunningNode
from dicom_node.config_file import load_settings
from dicom_node.index import Index
from dicom_node.index.records import IndexStatus
from dicom_node.samples import SAMPLES_DIR
from dicom_node.testing.peers import free_port, storescu
from tests.dicom_fixtures import with_new_uids

# A worker that polls, retries and reports fast enough for tests.
FAST_WORKER = {
    "enabled": True,
    "poll_s": 0.1,
    "lease_s": 3,
    "loop_deadline_s": 5,
    "export": {"max_attempts": 50, "backoff_s": 0.3, "max_backoff_s": 1},
    "scoring": {"max_attempts": 3, "backoff_s": 0.3, "max_backoff_s": 1},
}


def destination(port: int) -> list[dict]:
    """`destinations` for a receiving PACS on `port`."""
    return [{"name": "pacs", "ae_title": "DEMO_PACS", "host": "127.0.0.1", "port": port}]


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def write_config(path: Path, database_url: str | None, **sections) -> Path:
    """A node configuration: test defaults (loopback, free port, SQLite unless a URL is
    given, 1 s quiet period, no worker) with `sections` merged in."""
    config = {
        "node": {"ae_title": "DICOM_NODE", "host": "127.0.0.1", "port": free_port()},
        "storage": {"data_dir": "data", "database_url": database_url},
        "studies": {"stable_after_s": 1, "completion": []},
        "worker": {"enabled": False},
        "http": {"enabled": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


class _Node:
    """What both kinds of node under test share: the config, its index, the log."""

    config: Path
    log: Path

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.settings = load_settings(config)
        self.port = self.settings.node.port
        self.data_dir = self.settings.storage.data_dir
        self._index: Index | None = None

    @property
    def index(self) -> Index:
        """The node's index, opened in this process (after the node created it)."""
        if self._index is None:
            self._index = Index(self.settings.storage.effective_database_url, upgrade=False)
        return self._index

    def status(self) -> IndexStatus:
        return self.index.views.status()

    def counts(self, what: str) -> dict[str, int]:
        """Studies, jobs or exports by state, as plain strings."""
        return {k.value: v for k, v in getattr(self.status(), what).items()}

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def close_index(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


class InProcessNode(_Node):
    """`RunningNode` in this process; its log lines go to `log`."""

    def __init__(self, config: Path, log: Path) -> None:
        super().__init__(config, log)
        self.running: RunningNode | None = None
        self._handler = logging.FileHandler(log)
        self._handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._handler.setLevel(logging.INFO)

    def start(self) -> InProcessNode:
        logger = logging.getLogger("dicom_node")
        logger.setLevel(logging.INFO)
        logger.addHandler(self._handler)
        self.running = RunningNode(self.settings)
        return self

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None
        self.close_index()
        logging.getLogger("dicom_node").removeHandler(self._handler)
        self._handler.close()


class NodeProcess(_Node):
    """`dicom-node serve` as a child process."""

    proc: subprocess.Popen | None = None

    def start(self) -> NodeProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicom_node.app.cli", "serve", "--config", str(self.config)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.log_text()}")
            if "listening as" in self.log_text()[offset:]:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"node did not start:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.close_index()
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.close_index()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_worker(node_config: Path, folder: Path, **changes) -> tuple[subprocess.Popen, Path]:
    """A `dicom-node worker` process on the node's configuration with `changes` (sections
    replaced) and the fast worker settings; its log file."""
    config = yaml.safe_load(node_config.read_text())
    config.update(worker=FAST_WORKER, **changes)
    worker_config = folder / "worker.yaml"
    worker_config.write_text(yaml.safe_dump(config))
    log = folder / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "dicom_node.app.cli", "worker", "--config", str(worker_config)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return worker, log


def send_study(port: int, tmp_path: Path, name: str = "zhanglab_03_pneumonia.dcm") -> str:
    """A sample as a new one-image study; returns its Study Instance UID."""
    path = with_new_uids(
        SAMPLES_DIR / name,
        tmp_path / f"{name}.{free_port()}.dcm",
        study_uid=pydicom.uid.generate_uid(),
    )
    option = "-xy" if "04" in name or "02" in name else "-xe"
    result = storescu(port, path, option=option)
    assert result.returncode == 0, result.stderr
    return pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
