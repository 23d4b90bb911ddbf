"""Real DICOM peers for tests and benchmarks: dcmtk's storescu/echoscu, dicom3tools' dciodvfy,
and free loopback ports. Each tool is looked up on PATH; a missing one names its package."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = {
    "storescu": "dcmtk",
    "echoscu": "dcmtk",
    "dciodvfy": "dicom3tools",
    "Orthanc": "orthanc",
}


class ToolMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} not found: apt-get install {PACKAGES.get(name, name)}")
    return path


def storescu(
    port: int,
    *files: Path | str,
    calling: str = "STORESCU",
    called: str = "DICOM_NODE",
    option: str = "-xe",
) -> subprocess.CompletedProcess:
    """dcmtk storescu proposing `option`'s transfer syntax; TCP_NODELAY set, as for every peer."""
    return subprocess.run(
        [
            require_tool("storescu"),
            "-v",
            option,
            "-aet",
            calling,
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
    )


def echoscu(
    port: int, calling: str = "ECHOSCU", called: str = "DICOM_NODE"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for_echo(port: int, called: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until a peer process started on `port` answers C-ECHO."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{called} exited with {proc.returncode}")
        if echoscu(port, called=called).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{called} did not answer C-ECHO on {port}")


def acknowledged_files(storescu_log: str) -> list[str]:
    """Files storescu saw answered Success, from its -v log."""
    acked, current = [], None
    for line in storescu_log.splitlines():
        if m := re.match(r"I: Sending file: (.+)$", line):
            current = m.group(1)
        elif "Received Store Response (Success)" in line and current:
            acked.append(current)
            current = None
    return acked


def dciodvfy_errors(path: Path | str) -> list[str]:
    """The lines dciodvfy reports as errors (warnings are not errors)."""
    out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
