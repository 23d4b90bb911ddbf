"""MLLP (HL7 minimal lower layer protocol): a message framed by VT ... FS CR, and its ACK.
`send` is the node's client; `ReadListener` takes "study read" updates from the RIS."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
MAX_MESSAGE_BYTES = 1 << 20  # an ACK or a read update is a few hundred bytes


class MllpError(OSError):
    """No connection, or no whole answer within the timeout."""


def send(host: str, port: int, message: str, connect_s: float, ack_s: float) -> str:
    """Send one message on a connection of its own; the answer's text."""
    try:
        with socket.create_connection((host, port), timeout=connect_s) as sock:
            sock.settimeout(ack_s)
            sock.sendall(START + message.encode("utf-8") + END)
            return read_frame(sock, time.monotonic() + ack_s)
    except TimeoutError as exc:
        raise MllpError(f"{host}:{port}: no answer within {ack_s:g} s") from exc
    except OSError as exc:
        if isinstance(exc, MllpError):
            raise
        raise MllpError(f"{host}:{port}: {exc.strerror or exc}") from exc


def read_frame(sock: socket.socket, deadline: float) -> str:
    """One framed message; MllpError when the peer closes, overruns or is too slow."""
    data = b""
    while not data.endswith(END):
        left = deadline - time.monotonic()
        if left <= 0:
            raise MllpError("no whole message within the timeout")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise MllpError("connection closed before a whole message")
        data += chunk
        if len(data) > MAX_MESSAGE_BYTES:
            raise MllpError(f"message over {MAX_MESSAGE_BYTES} bytes")
    start = data.find(START)
    if start < 0:
        raise MllpError("no start block")
    return data[start + 1 : -len(END)].decode("utf-8", errors="replace")


class ReadListener:
    """An MLLP listener: each message goes to `handle(text) -> ack text`."""

    def __init__(self, host: str, port: int, handle: Callable[[str], str]) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(30)
                try:
                    while True:
                        text = read_frame(self.request, time.monotonic() + 60)
                        self.request.sendall(START + handle(text).encode("utf-8") + END)
                except (MllpError, OSError) as exc:
                    log.debug("hl7 listener: connection ended (%s)", exc)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="hl7-listener")
        self.thread.daemon = True
        self.thread.start()
        log.info("hl7: listening for read updates on %s:%d", host, self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
