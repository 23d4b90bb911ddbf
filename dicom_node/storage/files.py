"""The file system backend: every instance is written to a temporary name, flushed, fsynced
and renamed into place before its row is committed and before the peer hears Success."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from dicom_node.storage import Staged, digest_of

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".part"


class FileObjects:
    """Objects as files under `root`; keys are relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def clean_leftovers(self) -> int:
        removed = 0
        for path in self.incoming.glob(f"*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.warning("removed %d unfinished temporary file(s) from %s", removed, self.incoming)
        return removed

    def stage(self, chunks: list[bytes]) -> Staged:
        path = self.incoming / f"{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            sha256 = digest_of(chunks, while_writing=lambda: _write_synced(path, chunks))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Staged(sum(len(c) for c in chunks), sha256, temp_path=path)

    def place(self, staged: Staged, key: str, session: Session | None = None) -> None:
        """Rename the temporary file into place and fsync the directory entry."""
        final = self.path_of(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.temp_path, final)
        _fsync_directory(final.parent)

    def discard(self, staged: Staged) -> None:
        staged.temp_path.unlink(missing_ok=True)

    def write(self, key: str, data: bytes) -> None:
        """Beside its final name (so on the same file system, whatever is mounted where)."""
        final = self.path_of(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(final.name + TEMP_SUFFIX)
        try:
            _write_synced(temp, [data])
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)  # a full disk leaves no half-written object behind
        _fsync_directory(final.parent)

    def read(self, key: str) -> bytes:
        return self.path_of(key).read_bytes()

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.path_of(key).unlink(missing_ok=True)

    def path_of(self, key: str) -> Path:
        return contained_path(self.root, key)


def _write_synced(path: Path, chunks: list[bytes]) -> None:
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def contained_path(root: Path, relative: str) -> Path:
    """`root / relative`, refused unless it stays inside `root`: every path the node writes or
    reads under its data folder is made here."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{relative!r} leads outside {root}")
    return path
