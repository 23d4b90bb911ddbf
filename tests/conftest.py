"""Fixtures: indexes on SQLite and PostgreSQL, nodes in this process or as child processes,
and a receiving PACS. Backend-neutral tests run on SQLite; the SQL tests run on both."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from dicom_node.app.pacs import ReceivingPacs
from tests.nodes import InProcessNode, NodeProcess, write_config

POSTGRES_ENV = "DICOM_NODE_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test."""
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


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request, tmp_path):
    """For the SQL tests: a fresh index URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def _factory(kind, tmp_path):
    nodes = []

    def make(start: bool = True, database_url: str | None = None, **sections):
        n = len(nodes)
        config = write_config(tmp_path / f"node{n}.yaml", database_url, **sections)
        node = kind(config, tmp_path / f"node{n}.log")
        nodes.append(node)
        return node.start() if start else node

    return make, nodes


@pytest.fixture
def make_node(tmp_path):
    """Factory of nodes running in this process (SQLite unless `database_url` is given):
    `make_node(worker={...}, destinations=[...])`."""
    make, nodes = _factory(InProcessNode, tmp_path)
    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def make_node_process(tmp_path):
    """Factory of `dicom-node serve` child processes on SQLite."""
    make, nodes = _factory(NodeProcess, tmp_path)
    yield make
    for node in nodes:
        node.kill()


@pytest.fixture
def pacs(tmp_path):
    receiver = ReceivingPacs(tmp_path / "pacs")
    yield receiver
    receiver.stop()
