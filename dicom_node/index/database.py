"""The connection to the index: SQLite (WAL, synchronous=FULL) by default, PostgreSQL for
several processes or machines sharing one queue; and the schema revision it holds."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.errors import IndexSchemaError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD_REVISION = "0007"  # the newest file in migrations/versions
FIRST_RELEASE_REVISION = "0001"  # the schema of 0.1.0, which had no alembic_version table
SCHEMA_LOCK = 0x44434D4E  # PostgreSQL advisory lock key held while upgrading ("DCMN")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # isolation_level None + BEGIN IMMEDIATE: each transaction takes the write lock up
        # front, so concurrent associations wait (busy timeout) instead of failing to upgrade.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None}
        )

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before Success
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_size=20,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},  # an unreachable server fails fast, then retried
    )


class WriterTurn:
    """One SQLite transaction at a time across the threads and processes of a node.

    SQLite lets one writer in; the others are refused and retry from its busy handler, which
    sleeps 1, 2, 5, 10 ms and more between tries: with several SCP processes, a store would
    wait milliseconds for a lock held for one. Waiting here on a lock file (flock) instead
    hands the turn over as soon as it is free."""

    def __init__(self, path: Path) -> None:
        self._threads = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        os.close(self._fd)


class Database:
    """An engine and its sessions; each `session()` is one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        database = self.engine.url.database
        self._turn = (
            WriterTurn(Path(f"{database}.lock"))
            if self.engine.url.get_backend_name() == "sqlite"
            and database not in (None, "", ":memory:")
            and Path(database).parent.is_dir()
            else contextlib.nullcontext()
        )

    def close(self) -> None:
        self.engine.dispose()
        if isinstance(self._turn, WriterTurn):
            self._turn.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._turn, self._sessions() as s, s.begin():
            yield s

    def schema_revision(self) -> str | None:
        """The Alembic revision the index is at; the first release's for a pre-Alembic index;
        None for an empty database."""
        with self.engine.connect() as conn:
            return _revision(conn)

    def upgrade_schema(self) -> None:
        """Create the index or bring it to this release's revision (Alembic migrations).

        On PostgreSQL an advisory lock makes processes that start together upgrade one at a
        time; the later ones find the index current.
        """
        if self.schema_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # SQLite alters a table by copying it; its foreign keys must wait
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    self._upgrade_locked(conn, config, command)
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")

    @staticmethod
    def _upgrade_locked(conn, config, command) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        revision = _revision(conn)
        if revision == HEAD_REVISION:
            return
        config.attributes["connection"] = conn
        if revision == FIRST_RELEASE_REVISION and not _has_version_table(conn):
            command.stamp(config, FIRST_RELEASE_REVISION)
        log.info("index schema: upgrading from %s to %s", revision or "empty", HEAD_REVISION)
        command.upgrade(config, "head")

    def require_current_schema(self) -> None:
        """Raise IndexSchemaError unless the index is at this release's revision."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            raise IndexSchemaError(f"no index at {url.database} yet: `dicom-node serve` creates it")
        try:
            revision = self.schema_revision()
        except SQLAlchemyError as exc:
            raise IndexSchemaError(f"index at {self._safe_url()} unreachable: {exc}") from exc
        if revision is None:
            raise IndexSchemaError(
                f"no index at {self._safe_url()} yet: `dicom-node serve` creates it"
            )
        if revision != HEAD_REVISION:
            raise IndexSchemaError(
                f"the index at {self._safe_url()} is at schema revision {revision}, this "
                f"release reads {HEAD_REVISION}: restart `dicom-node serve` to upgrade it"
            )

    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)


def _revision(conn) -> str | None:
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return FIRST_RELEASE_REVISION if "study" in tables else None


def _has_version_table(conn) -> bool:
    return "alembic_version" in inspect(conn).get_table_names()
