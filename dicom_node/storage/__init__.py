"""Where the bytes live: received instances and the results made from them.

Two backends behind one interface, chosen by `storage.objects`:
- `files` (`FileObjects`): the data folder, local or a shared mount;
- `database` (`dicom_node.index.objects.DatabaseObjects`): the index's own database, as
  Orthanc's PostgreSQL storage does, so that SCP nodes and workers on different machines
  share nothing but the database.

`dicom_node.index.objects.open_storage` opens the configured one. Keys are made by the node
(an instance's SHA-256, a result's study number and version); nothing a peer sends becomes
part of one.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

HASH_IN_PARALLEL_BYTES = 256 << 10


@dataclass(frozen=True)
class Staged:
    """Bytes written (files: to a temporary name, fsynced) but not yet in place."""

    size: int
    sha256: str
    temp_path: Path | None = None  # files
    data: bytes | None = None  # database


class Objects(Protocol):
    def stage(self, chunks: list[bytes]) -> Staged:
        """Make the bytes durable under a temporary name; their digest."""

    def place(self, staged: Staged, key: str, session: Session) -> None:
        """Put staged bytes at `key`, within the index transaction `session` that records them."""

    def discard(self, staged: Staged) -> None:
        """Forget staged bytes that were not placed (or were placed: then nothing to do)."""

    def write(self, key: str, data: bytes) -> None:
        """Store `data` at `key` whole or not at all, replacing what was there."""

    def read(self, key: str) -> bytes:
        """The bytes at `key`; FileNotFoundError when there are none."""

    def delete(self, keys: list[str]) -> None:
        """Remove the keys; those already gone are no error."""

    def clean_leftovers(self) -> int:
        """Remove what writes a crash interrupted (never acknowledged)."""


def instance_key(sha256: str) -> str:
    """Named by content only: nothing a peer sends becomes part of a key."""
    return f"{sha256[:2]}/{sha256}.dcm"


def digest_of(chunks: list[bytes], while_writing=None) -> str:
    """SHA-256 of the chunks; a large file is hashed in a second thread while
    `while_writing()` runs (both release the GIL)."""
    digest = hashlib.sha256()

    def hash_all() -> None:
        for chunk in chunks:
            digest.update(chunk)

    if while_writing is None or sum(len(c) for c in chunks) < HASH_IN_PARALLEL_BYTES:
        hash_all()
        if while_writing is not None:
            while_writing()
        return digest.hexdigest()
    hashing = threading.Thread(target=hash_all, name="spool-hash")
    hashing.start()
    try:
        while_writing()
    finally:
        hashing.join()
    return digest.hexdigest()


@dataclass(frozen=True)
class Storage:
    """A node's two stores: received instances (keys from `instance_key`) and results."""

    instances: Objects
    results: Objects
