"""Logins for administrators: bcrypt password hashes, a signed session cookie that expires
when unused, a CSRF token per session, and a limit on failed logins per client address."""

from __future__ import annotations

import collections
import secrets
import threading
import time
from pathlib import Path

import bcrypt

from dicom_node.config.operations import AdminSettings


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def session_secret(data_dir: Path) -> str:
    """The key that signs session cookies, kept in data_dir (0600) so logins survive a
    restart; made on first use."""
    path = data_dir / "web-session.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(key)
        return key


class Logins:
    def __init__(self, settings: AdminSettings) -> None:
        self.hashes = {u.name: u.password_hash.encode() for u in settings.users}
        self.max_failed = settings.max_failed_logins
        self._failed: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        """With admin users configured, every page but health and metrics needs a login."""
        return bool(self.hashes)

    def too_many_failures(self, client: str) -> bool:
        with self._lock:
            recent = self._recent(client)
            return len(recent) >= self.max_failed

    def verify(self, client: str, name: str, password: str) -> bool:
        known = self.hashes.get(name)
        # An unknown name costs a bcrypt check too: the answer's timing says nothing.
        ok = bcrypt.checkpw(password.encode(), known or _DUMMY) and known is not None
        if not ok:
            with self._lock:
                self._recent(client).append(time.monotonic())
        return ok

    def _recent(self, client: str) -> collections.deque:
        recent = self._failed.setdefault(client, collections.deque())
        while recent and time.monotonic() - recent[0] > 60:
            recent.popleft()
        return recent


_DUMMY = bcrypt.hashpw(b"not a password", bcrypt.gensalt())


def csrf_token(session: dict) -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict, sent: str | None) -> bool:
    token = session.get("csrf")
    return bool(token and sent) and secrets.compare_digest(token, sent)
