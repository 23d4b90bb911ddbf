"""What a configuration needs of the world, checked before anything starts: the model loads,
the data folder is writable with room to spare, the index is reachable at a schema this
release can use, TLS files exist and belong together, destinations resolve (and, probed,
answer C-ECHO).

`config check` prints every problem; `serve` and `worker` refuse to start on any problem that
`blocks_start` and log the others. Each problem is one line: file, key, reason.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from dicom_node.config import Destination, Settings
from dicom_node.errors import ConfigError, DicomNodeError
from dicom_node.ingest.store import free_bytes

log = logging.getLogger(__name__)
DATABASE_BACKENDS = ("sqlite", "postgresql+psycopg")


@dataclass(frozen=True)
class Problem:
    key: str
    reason: str
    blocks_start: bool = True  # False: the node can start, and says so in its log

    def line(self, settings: Settings) -> str:
        return f"{settings.source or '(defaults)'}: {self.key}: {self.reason}"


@dataclass(frozen=True)
class Finding:
    """What the checks found: problems, and facts worth a line (free space, schema revision)."""

    problems: tuple[Problem, ...]
    notes: tuple[str, ...]


def check_world(settings: Settings, *, load_model: bool = True, probe: bool = False) -> Finding:
    problems: list[Problem] = []
    notes: list[str] = []
    for check in (_data_dir, _database, _tls):
        for item in check(settings):
            (problems if isinstance(item, Problem) else notes).append(item)
    if load_model and "scoring" in settings.worker.loops:
        problems += _model(settings)
    for i, destination in enumerate(settings.destinations):
        problems += _destination(destination, f"destinations[{i}]", settings.node.ae_title, probe)
    for i, ris in enumerate(settings.hl7.destinations):
        problems += _unresolved(ris.host, ris.port, f"hl7.destinations[{i}]")
    return Finding(tuple(problems), tuple(notes))


def require_world(settings: Settings, scores: bool) -> None:
    """Start-up's check (the model too when this process `scores`): ConfigError with every
    blocking problem; the others are logged."""
    finding = check_world(settings, load_model=scores)
    for problem in finding.problems:
        if not problem.blocks_start:
            log.warning("%s", problem.line(settings))
    blocking = [p.line(settings) for p in finding.problems if p.blocks_start]
    if blocking:
        raise ConfigError("cannot start:\n" + "\n".join(blocking))


def _data_dir(settings: Settings) -> Iterator[Problem | str]:
    data_dir = settings.storage.data_dir
    existing = next(p for p in (data_dir, *data_dir.parents) if p.exists())
    try:  # what the node will do there: make a folder, and remove it
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=existing))
    except OSError as exc:
        yield Problem("storage.data_dir", f"{data_dir} cannot be used: {existing}: {exc.strerror}")
        return
    free, needed = free_bytes(existing), settings.storage.min_free_bytes
    if free < needed:
        yield Problem(
            "storage.data_dir",
            f"{data_dir} has {free / 1e9:.2f} GB free, below storage.min_free_bytes "
            f"({needed / 1e9:.2f} GB): C-STORE would answer 0xA700 (out of resources)",
        )
        return
    created = "" if existing == data_dir else f" (to be created in {existing})"
    yield f"data in {data_dir}{created}: {free / 1e9:.1f} GB free"


def _database(settings: Settings) -> Iterator[Problem | str]:
    from dicom_node.index.database import HEAD_REVISION, Database

    key = "storage.database_url"
    url = settings.storage.effective_database_url
    try:
        parsed = make_url(url)
    except ArgumentError:
        yield Problem(key, f"{url!r} is not a database URL ({_url_forms()})")
        return
    safe = parsed.render_as_string(hide_password=True)
    if parsed.drivername not in DATABASE_BACKENDS:
        yield Problem(
            key, f"{safe}: unsupported database driver {parsed.drivername!r} ({_url_forms()})"
        )
        return
    if parsed.drivername == "sqlite" and not Path(parsed.database or "").is_file():
        yield f"index {safe}: not created yet (serve creates it)"
        return
    try:
        database = Database(url)
    except (NoSuchModuleError, SQLAlchemyError, OSError) as exc:
        yield Problem(key, f"{safe}: cannot open ({_first_line(exc)})")
        return
    try:
        revision = database.schema_revision()
    except SQLAlchemyError as exc:
        yield Problem(key, f"{safe}: cannot connect ({_first_line(exc)})")
        return
    finally:
        database.close()
    if revision is None:
        yield f"index {safe}: empty (serve creates the schema)"
    elif revision == HEAD_REVISION:
        yield f"index {safe}: schema revision {revision}, current"
    elif revision.isdigit() and revision < HEAD_REVISION:
        yield (
            f"index {safe}: schema revision {revision}, this release needs {HEAD_REVISION}: "
            "`dicom-node db upgrade` (or serve) upgrades it"
        )
    else:
        yield Problem(
            key,
            f"{safe}: schema revision {revision} is not one this release knows "
            f"(it reads {HEAD_REVISION}): written by a newer dicom-node?",
        )


def _url_forms() -> str:
    return "use null for SQLite in data_dir, or postgresql+psycopg://user:password@host/db"


def _tls(settings: Settings) -> Iterator[Problem]:
    tls = settings.node.tls
    if not tls.enabled:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (ssl.SSLError, OSError) as exc:
        yield Problem(
            "node.tls", f"certificate {tls.cert} and key {tls.key} do not load together ({exc})"
        )
    if tls.ca is not None:
        try:
            context.load_verify_locations(tls.ca)
        except (ssl.SSLError, OSError) as exc:
            yield Problem("node.tls.ca", f"{tls.ca}: not a PEM CA bundle ({exc})")


def _model(settings: Settings) -> list[Problem]:
    from dicom_node.model.ensemble import load_model

    try:
        load_model(settings.model.path)
    except DicomNodeError as exc:
        return [Problem("model.path", str(exc))]
    return []


def _unresolved(host: str, port: int, key: str) -> list[Problem]:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        # DNS can be down while the node starts: deliveries are retried, so it starts anyway.
        return [Problem(f"{key}.host", f"{host!r} does not resolve ({reason})", False)]
    return []


def _destination(destination: Destination, key: str, our_ae: str, probe: bool) -> list[Problem]:
    if problems := _unresolved(destination.host, destination.port, key):
        return problems
    if destination.tls.enabled:
        try:
            destination.tls.client_context()
        except (ssl.SSLError, OSError) as exc:
            return [Problem(f"{key}.tls", f"certificate, key or CA do not load ({exc})")]
    if probe:
        from dicom_node.pipeline.delivery import echo

        if problem := echo(destination, our_ae):
            return [Problem(key, problem, blocks_start=False)]
    return []


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
