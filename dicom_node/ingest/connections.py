"""Which TCP connections the SCP takes, and for how long a peer may take to send a PDU.

A connection is admitted only from a host some `accept_from` rule admits and while that host
holds fewer than `max_associations_per_host` connections, before a byte is read. Once
admitted, the A-ASSOCIATE-RQ must arrive whole within `acse_timeout_s` and every later PDU
within `network_timeout_s` of the one before: a deadline per PDU, not per recv(), so a peer
that trickles one byte at a time cannot hold a slot. An overdue connection is shut down, as is
one whose dataset grows past `max_instance_bytes` while it is received (so no dataset, however
large it says it is, costs more memory than that).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from dataclasses import dataclass

from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from dicom_node import audit
from dicom_node.config import PeerRule
from dicom_node.metrics import ASSOCIATIONS

log = logging.getLogger(__name__)


@dataclass
class _Connection:
    sock: socket.socket
    host: str
    admitted_at: float
    last_pdu_at: float | None = None
    dataset_bytes: int = 0  # P-DATA received since the last complete request


class ConnectionWatch:
    """The connections a server admitted: whose, since when, when their last whole PDU came."""

    def __init__(
        self,
        rules: tuple[PeerRule, ...],
        max_per_host: int,
        first_pdu_s: float,
        next_pdu_s: float,
        max_dataset_bytes: int = 0,
    ) -> None:
        self.rules = rules
        self.max_per_host = max_per_host
        self.first_pdu_s = first_pdu_s
        self.next_pdu_s = next_pdu_s
        self.max_dataset_bytes = max_dataset_bytes
        self._open: dict[int, _Connection] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pdu-deadlines", daemon=True)

    def admit(self, sock: socket.socket, host: str) -> bool:
        if self.rules and not any(rule.allows_host(host) for rule in self.rules):
            log.warning("refusing connection from %s: not on accept_from", host)
            _refused(host, "host not on accept_from")
            return False
        with self._lock:
            self._forget_closed()
            open_here = sum(1 for c in self._open.values() if c.host == host)
            if self.max_per_host and open_here >= self.max_per_host:
                log.warning(
                    "refusing connection from %s: %d connections already open from that host "
                    "(max_associations_per_host)",
                    host,
                    open_here,
                )
                _refused(host, "max_associations_per_host")
                return False
            self._open[id(sock)] = _Connection(sock, host, time.monotonic())
        return True

    def pdu_received(self, sock: socket.socket, pdata_bytes: int) -> None:
        """A whole PDU came in (`pdata_bytes`: its size if it was P-DATA)."""
        with self._lock:
            if (conn := self._open.get(id(sock))) is None:
                return
            conn.last_pdu_at = time.monotonic()
            conn.dataset_bytes += pdata_bytes
            too_large = self.max_dataset_bytes and conn.dataset_bytes > self.max_dataset_bytes
        if too_large:
            log.warning(
                "closing connection from %s: its dataset is over max_instance_bytes (%d)",
                conn.host,
                self.max_dataset_bytes,
            )
            self.release(sock)
            _shut(sock)

    def request_complete(self, sock: socket.socket) -> None:
        """A whole request was received and handled: its bytes no longer count."""
        with self._lock:
            if (conn := self._open.get(id(sock))) is not None:
                conn.dataset_bytes = 0

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(id(sock), None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        every = max(0.1, min(self.first_pdu_s, self.next_pdu_s) / 4)
        while not self._stop.wait(every):
            for conn, late in self._overdue(time.monotonic()):
                log.warning(
                    "closing connection from %s: %s (a slow or stalled peer)", conn.host, late
                )
                _shut(conn.sock)

    def _forget_closed(self) -> None:
        """Drop connections whose socket is closed (pynetdicom closes it on release/abort)."""
        for key in [k for k, c in self._open.items() if c.sock.fileno() == -1]:
            del self._open[key]

    def _overdue(self, now: float) -> list[tuple[_Connection, str]]:
        overdue = []
        with self._lock:
            self._forget_closed()
            for conn in self._open.values():
                if conn.last_pdu_at is None and now - conn.admitted_at > self.first_pdu_s:
                    late = f"no whole A-ASSOCIATE-RQ within {self.first_pdu_s:g} s"
                elif conn.last_pdu_at is not None and now - conn.last_pdu_at > self.next_pdu_s:
                    late = f"no whole PDU within {self.next_pdu_s:g} s of the last"
                else:
                    continue
                overdue.append((conn, late))
        for conn, _ in overdue:
            self.release(conn.sock)
        return overdue


def _refused(host: str, reason: str) -> None:
    ASSOCIATIONS.labels(f"rejected: {reason}").inc()
    audit.record("association_rejected", "failure", peer_host=host, reason=reason)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # a recv() blocked on it returns at once
    except OSError:
        pass  # already closed


class PromptDul(DULServiceProvider):
    """pynetdicom's DUL reactor polls its socket and queues and sleeps a fixed 1 ms after
    every pass that found nothing to do, so each request and each response waits up to 1 ms
    to be noticed (a third of the time of a small C-STORE). This one polls every 200 us for
    50 ms after its last activity and every 1 ms after that: a busy association answers
    promptly, an idle one costs no more CPU than before."""

    HOT_S = 0.05
    HOT_DELAY_S = 0.0002
    IDLE_DELAY_S = 0.001
    _active_at = 0.0

    @property
    def _run_loop_delay(self) -> float:
        hot = time.monotonic() - self._active_at < self.HOT_S
        return self.HOT_DELAY_S if hot else self.IDLE_DELAY_S

    @_run_loop_delay.setter
    def _run_loop_delay(self, _value: float) -> None:
        pass  # the DUL's constructor sets its fixed delay; ours is computed

    def _process_recv_primitive(self) -> bool:
        if super()._process_recv_primitive():  # a primitive from the association went out
            self._active_at = time.monotonic()
            return True
        return False

    def _is_transport_event(self) -> bool:
        if super()._is_transport_event():  # a PDU came in
            self._active_at = time.monotonic()
            return True
        return False


class BulkReadSocket(AssociationSocket):
    """pynetdicom reads a PDU 4 KiB per recv() call: 450 Python-level calls for a 1.8 MB
    image. This reads up to 1 MiB per call. And pynetdicom reads as many bytes as a PDU's
    header declares; this reads none of a PDU that declares more than the node offered
    (`maximum_length`, at least 1 MiB): the connection is closed at once, and nothing a peer
    declares is allocated before it arrives."""

    READ_BYTES = 1 << 20

    def recv(self, nr_bytes: int) -> bytearray:
        limit = max(self.assoc.acceptor.maximum_length or 0, self.READ_BYTES) + 64
        if nr_bytes > limit:
            log.warning(
                "closing connection: a PDU declares %d bytes, more than the %d offered",
                nr_bytes,
                limit,
            )
            return bytearray()  # pynetdicom: "PDU shorter than expected", connection closed
        buffer = bytearray()
        while len(buffer) < nr_bytes:
            chunk = self.socket.recv(min(nr_bytes - len(buffer), self.READ_BYTES))
            if not chunk:  # the peer closed: what came so far, as pynetdicom's own recv does
                break
            buffer += chunk
        return buffer


class NodeRequestHandler(RequestHandler):
    """Each accepted association gets the prompt DUL and the bulk-reading socket. Both only
    override behaviour of pynetdicom's classes (no new state), so the objects pynetdicom
    made and configured are kept and given the subclass."""

    def _create_association(self):
        assoc = super()._create_association()
        assoc.dul.__class__ = PromptDul
        assoc.dul.socket.__class__ = BulkReadSocket
        return assoc


class NodeServer(ThreadedAssociationServer):
    """The association server, with its `ConnectionWatch`; disables Nagle on accepted sockets;
    serves each association with `NodeRequestHandler`."""

    watch: ConnectionWatch | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, request_handler=NodeRequestHandler, **kwargs)

    def verify_request(self, request, client_address) -> bool:
        return self.watch is None or self.watch.admit(request, client_address[0])

    def shutdown_request(self, request) -> None:
        if self.watch is not None:
            self.watch.release(request)
        super().shutdown_request(request)

    def shutdown(self) -> None:
        """Stop serving and close the socket. (The base class also drops itself from the AE's
        list of servers it started, which `make_server` servers are not on.)"""
        if self.watch is not None:
            self.watch.stop()
        socketserver.BaseServer.shutdown(self)
        self.server_close()

    def get_request(self):
        return self.prepared(*self.socket.accept())

    def prepared(self, sock: socket.socket, address):
        """An accepted connection made ready: Nagle off (dcmtk-based peers, Orthanc included,
        stall 40 ms per image without it) and, with TLS, wrapped for the server side."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context:
            sock = self.ssl_context.wrap_socket(sock, server_side=True)
        return sock, address
