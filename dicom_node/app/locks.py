"""Who holds a node's port (`serve`): a lock file in its data folder."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from dicom_node.errors import DicomNodeError


class PortLock:
    """Who holds a node's port: `serve` holds an exclusive lock on a file in data_dir named by
    host and port while it runs (the kernel lets go when the process ends, however it ends),
    so a second node of the same data_dir on that port is told which process has it. Nodes
    on other ports or hosts (a shared data_dir) and workers are not affected."""

    def __init__(self, data_dir: Path, port: int) -> None:
        path = data_dir / f"serve-{socket.gethostname()}-{port}.lock"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise DicomNodeError(
                f"port {port} is held by another node of {data_dir} (pid {holder})"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        os.close(self._fd)
