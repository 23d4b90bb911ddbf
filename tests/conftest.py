"""Fixtures: a fresh index on SQLite and on PostgreSQL, and a real node process on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

POSTGRES_ENV = "DICOM_NODE_TEST_POSTGRES_URL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database per test."""
    if request.param == "sqlite":
        yield None  # the node's default: SQLite in its data_dir
        return
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_ENV} not set (CI always sets it)")
    name = f"dicom_node_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package (see .ci/run)")
    return path


@dataclass
class NodeProcess:
    config: Path
    data_dir: Path
    port: int
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicom_node.app.cli", "serve", "--config", str(self.config)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.log.read_text()}")
            if "listening as" in self.log.read_text()[offset:]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"node did not start:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dicom_node.app.cli", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def log_text(self) -> str:
        return self.log.read_text()


@pytest.fixture
def make_node(tmp_path, database_url):
    """Factory: write a config (overrides merged into a test default) and start the node."""
    nodes: list[NodeProcess] = []

    def factory(start: bool = True, **sections) -> NodeProcess:
        port = free_port()
        config = {
            "node": {"ae_title": "DICOM_NODE", "host": "127.0.0.1", "port": port},
            "storage": {"data_dir": "data", "database_url": database_url},
            "studies": {"stable_after_s": 1},
            "worker": {"enabled": False},
        }
        for key, value in sections.items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
        path = tmp_path / f"node{len(nodes)}.yaml"
        path.write_text(yaml.safe_dump(config))
        node = NodeProcess(path, tmp_path / "data", port, tmp_path / f"node{len(nodes)}.log")
        nodes.append(node)
        if start:
            node.start()
        return node

    yield factory
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
