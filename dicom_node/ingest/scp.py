"""The node's DIMSE front door: a pynetdicom SCP answering C-ECHO and C-STORE.

The store handler stays thin: it hands the encoded dataset to the protocol-neutral
`InstanceStore` and answers the status it returns. Peers are checked with public hooks only:
the listening socket drops hosts that no `accept_from` rule admits before reading a byte
(`verify_request`), and an A-ASSOCIATE-RQ whose calling AE title and host match no rule is
rejected from the EVT_REQUESTED handler, as pynetdicom documents.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass

from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.config import NodeSettings, PeerRule
from dicom_node.dicom.terms import ACCEPTED_TRANSFER_SYNTAXES, StoreStatus
from dicom_node.ingest.store import InstanceStore, Peer

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)


class NodeServer(ThreadedAssociationServer):
    """Admits a TCP connection only from a host some rule admits and below the per-host cap,
    before a byte is read; disables Nagle on accepted sockets."""

    peer_rules: tuple[PeerRule, ...] = ()
    max_per_host: int = 0  # 0: no per-host cap

    def __init__(self, *args, **kwargs) -> None:
        self._open: dict[int, str] = {}  # id of an admitted socket -> its host
        self._hosts_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request, client_address) -> bool:
        host = client_address[0]
        if self.peer_rules and not any(rule.allows_host(host) for rule in self.peer_rules):
            log.warning("refusing connection from %s: not on accept_from", host)
            return False
        with self._hosts_lock:
            open_here = sum(1 for h in self._open.values() if h == host)
            if self.max_per_host and open_here >= self.max_per_host:
                log.warning(
                    "refusing connection from %s: %d connections already open from that host "
                    "(max_associations_per_host)",
                    host,
                    open_here,
                )
                return False
            self._open[id(request)] = host
        return True

    def shutdown_request(self, request) -> None:
        with self._hosts_lock:
            self._open.pop(id(request), None)
        super().shutdown_request(request)

    def shutdown(self) -> None:
        """Stop serving and close the socket. (The base class also drops itself from the AE's
        list of servers it started, which `make_server` servers are not on.)"""
        socketserver.BaseServer.shutdown(self)
        self.server_close()

    def get_request(self):
        sock, address = super().get_request()
        # dcmtk-based peers (Orthanc included) stall 40 ms per image without it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address


class SharedPortServer(NodeServer):
    """Sets SO_REUSEPORT so several node processes accept on one port (the kernel spreads
    the connections): one Python process is CPU-bound at well under the link's speed."""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def handle_store(event, store: InstanceStore) -> int:
    """EVT_C_STORE: the encoded dataset goes to the store as it came; never raises."""
    peer = Peer(event.assoc.requestor.ae_title.strip(), event.assoc.requestor.address)
    affected = str(event.request.AffectedSOPInstanceUID)
    try:
        result = store.store(
            event.request.DataSet.getvalue(), event.context.transfer_syntax, peer, affected
        )
    except Exception:  # the store never raises; if it ever does, the peer still gets a status
        log.exception("C-STORE %r from %r@%s failed", affected, peer.ae_title, peer.host)
        return StoreStatus.OUT_OF_RESOURCES
    if result.status is StoreStatus.SUCCESS:
        log.debug("C-STORE %r from %r@%s: %s", affected, peer.ae_title, peer.host, result.reason)
    else:
        log.warning(
            "C-STORE %r from %r@%s refused (0x%04X): %s",
            affected,
            peer.ae_title,
            peer.host,
            result.status,
            result.reason,
        )
    return result.status


def check_calling_peer(event, rules: tuple[PeerRule, ...]) -> None:
    """EVT_REQUESTED: reject an association whose calling AE title and host match no rule."""
    calling = event.assoc.requestor.primitive.calling_ae_title.strip()
    host = event.assoc.requestor.address
    if rules and not any(rule.allows(calling, host) for rule in rules):
        log.warning("rejecting association from %r at %s: not on accept_from", calling, host)
        event.assoc.acse.send_reject(*REJECT_CALLING_AE)
        event.assoc.kill()  # as pynetdicom's own rejections do: the A-ASSOCIATE-RJ goes out first


def log_rejection(event) -> None:
    """EVT_REJECTED: say why, whoever decided it (the allow list or the association limit)."""
    rj = event.assoc.acceptor.primitive
    calling = event.assoc.requestor.primitive.calling_ae_title.strip()
    if (rj.result_source, rj.diagnostic) == (0x03, 0x02):
        log.warning(
            "rejecting association from %r at %s: %d associations already open (the maximum)",
            calling,
            event.assoc.requestor.address,
            event.assoc.ae.maximum_associations,
        )


def log_rejected_contexts(event) -> None:
    for cx in event.assoc.rejected_contexts:
        log.warning(
            "association from %r: presentation context %s (%s) rejected: none of the proposed "
            "transfer syntaxes %s is supported",
            event.assoc.requestor.ae_title.strip(),
            cx.abstract_syntax,
            cx.abstract_syntax.name,
            ", ".join(ts.name for ts in cx.transfer_syntax) or "(none listed)",
        )


@dataclass
class StoreScp:
    """A listening SCP; `stop` lets in-flight associations finish."""

    ae: AE
    server: NodeServer

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        """Stop accepting; in-flight associations finish (each writes whole files or none)."""
        self.server.shutdown()
        for assoc in self.ae.active_associations:
            assoc.join(timeout=60)  # an Association is a thread: let its transfers end


def start_scp(settings: NodeSettings, store: InstanceStore, reuse_port: bool = False) -> StoreScp:
    """Listen in a background thread; `reuse_port` lets sibling processes share the port."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations
    ae.maximum_pdu_size = 0  # unlimited: fewer, larger PDUs from peers
    ae.network_timeout = 60
    ae.dimse_timeout = 60
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
    handlers = [
        (evt.EVT_REQUESTED, check_calling_peer, [settings.accept_from]),
        (evt.EVT_REJECTED, log_rejection),
        (evt.EVT_ACCEPTED, log_rejected_contexts),
        (evt.EVT_C_ECHO, lambda event: StoreStatus.SUCCESS),
        (evt.EVT_C_STORE, handle_store, [store]),
    ]
    server = ae.make_server(
        (settings.host, settings.port),
        evt_handlers=handlers,
        ssl_context=_ssl_context(settings),
        server_class=SharedPortServer if reuse_port else NodeServer,
    )
    server.peer_rules = settings.accept_from
    server.max_per_host = settings.max_associations_per_host
    threading.Thread(
        target=server.serve_forever, args=(0.1,), name="scp-acceptor", daemon=True
    ).start()
    log.info(
        "listening as %s on %s:%d%s",
        settings.ae_title,
        settings.host,
        server.server_address[1],
        " (TLS)" if settings.tls.enabled else "",
    )
    return StoreScp(ae, server)


def _ssl_context(settings: NodeSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(str(tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
