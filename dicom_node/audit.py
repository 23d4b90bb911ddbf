"""The audit trail: one JSON line per security-relevant event, appended to a file (and, if
configured, sent as RFC 5424 syslog). Each event names its IHE ATNA / DICOM PS3.15 A.5
event ID (see docs/audit.md); patient identifiers appear only in events ATNA expects them in
(instances stored or exported), never in association or login events.

`configure` is called once per process at start; until then (and in tools and tests that do
not) events go nowhere.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# event -> (EventID code, its meaning, EventTypeCode or action) of DICOM PS3.15 A.5 (RFC 3881)
EVENTS = {
    "association_accepted": ("110113", "Security Alert", "110126 Node Authentication"),
    "association_rejected": ("110113", "Security Alert", "110126 Node Authentication"),
    "instance_stored": ("110104", "DICOM Instances Transferred", "action C (create)"),
    "instance_refused": ("110104", "DICOM Instances Transferred", "action C (create)"),
    "result_exported": ("110104", "DICOM Instances Transferred", "action R (read)"),
    "login": ("110114", "User Authentication", "110122 Login"),
    "login_failed": ("110114", "User Authentication", "110122 Login"),
    "logout": ("110114", "User Authentication", "110123 Logout"),
    "admin_action": ("110113", "Security Alert", "110132 Use of Restricted Function"),
}
_FACILITY_AUTH = 10  # RFC 5424 facility authpriv (security/authorization messages)


class AuditTrail:
    def __init__(self, path: Path | None, syslog: tuple[str, int] | None = None) -> None:
        self.path = path
        self.syslog = syslog
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if syslog else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, event: str, outcome: str = "success", **fields) -> None:
        """One line; never raises (a full disk must not stop the node answering): a failure to
        write is logged."""
        code, meaning, kind = EVENTS[event]
        now = dt.datetime.now(dt.timezone.utc)
        entry = {
            "time": now.isoformat(timespec="milliseconds"),
            "event": event,
            "atna_event_id": code,
            "atna_event": meaning,
            "atna_type": kind,
            "outcome": outcome,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **{k: v for k, v in fields.items() if v is not None},
        }
        line = json.dumps(entry, ensure_ascii=True, sort_keys=True)  # control chars escaped
        try:
            with self._lock:
                if self.path is not None:
                    # O_APPEND and one write per line: the node's processes never interleave.
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                    try:
                        os.write(fd, (line + "\n").encode())
                    finally:
                        os.close(fd)
                if self._socket is not None:
                    self._socket.sendto(_rfc5424(now, line, outcome), self.syslog)
        except OSError as exc:
            log.error("audit trail not written (%s): %s", exc, line)


def _rfc5424(now: dt.datetime, message: str, outcome: str) -> bytes:
    severity = 4 if outcome != "success" else 6  # warning / informational
    pri = _FACILITY_AUTH * 8 + severity
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (
        f"<{pri}>1 {stamp} {socket.gethostname()} dicom-node {os.getpid()} AUDIT - {message}"
    ).encode()


_trail = AuditTrail(None)


def configure(trail: AuditTrail) -> None:
    global _trail
    _trail = trail


def record(event: str, outcome: str = "success", **fields) -> None:
    _trail.record(event, outcome, **fields)
