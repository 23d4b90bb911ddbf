"""Files on disk: every accepted instance is written to a temporary name, flushed, fsynced and
renamed into place before its row is committed and before the peer hears Success."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".part"
HASH_IN_PARALLEL_BYTES = 256 << 10


@dataclass(frozen=True)
class SpooledFile:
    temp_path: Path
    size: int
    sha256: str


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def clean_leftovers(self) -> int:
        """Remove temporary files of writes a crash interrupted (never acknowledged)."""
        removed = 0
        for path in self.incoming.glob(f"*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.warning("removed %d unfinished temporary file(s) from %s", removed, self.incoming)
        return removed

    def write_temp(self, chunks: list[bytes]) -> SpooledFile:
        """Write and fsync the encoded file under a temporary name; returns its digest. A large
        file is hashed in a second thread while it is written (both release the GIL)."""
        path = self.incoming / f"{uuid.uuid4().hex}{TEMP_SUFFIX}"
        size = sum(len(chunk) for chunk in chunks)
        digest = hashlib.sha256()

        def hash_all() -> None:
            for chunk in chunks:
                digest.update(chunk)

        hashing = None
        if size >= HASH_IN_PARALLEL_BYTES:
            hashing = threading.Thread(target=hash_all, name="spool-hash")
            hashing.start()
        else:
            hash_all()
        try:
            with open(path, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            if hashing is not None:
                hashing.join()
        return SpooledFile(path, size, digest.hexdigest())

    @staticmethod
    def relative_path(sha256: str) -> str:
        """Named by content only: nothing a peer sends becomes part of a path."""
        return f"{sha256[:2]}/{sha256}.dcm"

    def commit(self, spooled: SpooledFile, relative: str) -> Path:
        """Rename the temporary file into place and fsync the directory entry."""
        final = self.path_of(relative)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(spooled.temp_path, final)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final

    def discard(self, spooled: SpooledFile) -> None:
        spooled.temp_path.unlink(missing_ok=True)

    def path_of(self, relative: str) -> Path:
        return contained_path(self.root, relative)


def contained_path(root: Path, relative: str) -> Path:
    """`root / relative`, refused unless it stays inside `root`: every path the node writes or
    reads under its data folder is made here."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{relative!r} leads outside {root}")
    return path
