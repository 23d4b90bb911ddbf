"""What operators see and keep: the web face (health, metrics, worklist, admin), the audit
trail and the log file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class AdminUser:
    name: str
    password_hash: str  # bcrypt, from `dicom-node hash-password`

    def check(self) -> str | None:
        if not self.name or not self.password_hash.startswith("$2"):
            return (
                "an admin user needs a name and a bcrypt password_hash (dicom-node hash-password)"
            )
        return None


@dataclass(frozen=True)
class AdminSettings:
    users: tuple[AdminUser, ...] = ()  # none: pages are open, admin actions unavailable
    session_minutes: float = 60.0  # a login lasts this long without use
    max_failed_logins: int = 5  # per client address and minute; more get 429

    def check(self) -> str | None:
        if self.session_minutes <= 0 or self.max_failed_logins < 1:
            return "session_minutes must be positive and max_failed_logins at least 1"
        return None


@dataclass(frozen=True)
class HttpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"  # behind a reverse proxy for TLS (README); 0.0.0.0 exposes it
    port: int = 8080  # of `serve`; a `dicom-node worker` serves on its --http-port, if given
    admin: AdminSettings = field(default_factory=AdminSettings)

    def check(self) -> str | None:
        if not 0 <= self.port < 65536:
            return f"port {self.port} outside 0..65535 (0: any free port)"
        return None


@dataclass(frozen=True)
class SyslogTarget:
    host: str
    port: int = 514  # RFC 5424 over UDP


@dataclass(frozen=True)
class AuditSettings:
    path: str | None = "audit.log"  # relative to data_dir; null: no file
    syslog: SyslogTarget | None = None

    def file(self, data_dir: Path) -> Path | None:
        return None if self.path is None else data_dir / Path(self.path).expanduser()


@dataclass(frozen=True)
class LoggingSettings:
    file: str | None = None  # relative to data_dir; null: stderr only (the journal)
    max_bytes: int = 10_000_000  # rotated at this size
    backups: int = 5  # rotated files kept

    def path(self, data_dir: Path) -> Path | None:
        return None if self.file is None else data_dir / Path(self.file).expanduser()

    def check(self) -> str | None:
        if self.max_bytes < 1024 or self.backups < 0:
            return "max_bytes must be at least 1024 and backups 0 or more"
        return None
