"""The node's DIMSE front door: a pynetdicom SCP answering C-ECHO, C-STORE and the MPPS
N-CREATE / N-SET (`mpps`).

The store handler stays thin: it hands the encoded dataset to the protocol-neutral
`InstanceStore` and answers the status it returns. Connections are admitted and bounded by
`connections.NodeServer` (hosts, per-host cap, PDU deadlines); an A-ASSOCIATE-RQ whose calling
AE title and host match no rule is rejected from the EVT_REQUESTED handler, as pynetdicom
documents.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from dataclasses import dataclass

from pynetdicom import AE, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import ModalityPerformedProcedureStep, Verification

from dicom_node import audit
from dicom_node.config import NodeSettings, PeerRule
from dicom_node.dicom.terms import ACCEPTED_TRANSFER_SYNTAXES, StoreStatus
from dicom_node.errors import DicomNodeError
from dicom_node.index.performed_steps import PerformedSteps
from dicom_node.ingest import mpps
from dicom_node.ingest.connections import ConnectionWatch
from dicom_node.ingest.dispatch import DispatchingServer, HandedServer
from dicom_node.ingest.store import InstanceStore, Peer
from dicom_node.metrics import ASSOCIATIONS, RECEIVED_BYTES, STORES

log = logging.getLogger(__name__)

MAX_PDU_BYTES = 4 << 20  # large PDUs for speed, small enough for a per-PDU deadline to be fair
# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)


def handle_store(event, store: InstanceStore, watch: ConnectionWatch) -> int:
    """EVT_C_STORE: the encoded dataset goes to the store as it came; never raises."""
    watch.request_complete(event.assoc.dul.socket.socket)
    peer = Peer(event.assoc.requestor.ae_title.strip(), event.assoc.requestor.address)
    affected = str(event.request.AffectedSOPInstanceUID)
    encoded = event.request.DataSet.getvalue()
    # never raises: every failure comes back as a status and a reason
    result = store.store(encoded, event.context.transfer_syntax, peer, affected)
    STORES.labels(f"0x{result.status:04X}").inc()
    RECEIVED_BYTES.inc(len(encoded))
    audit.record(
        "instance_stored" if result.status is StoreStatus.SUCCESS else "instance_refused",
        "success" if result.status is StoreStatus.SUCCESS else "failure",
        peer_ae=peer.ae_title,
        peer_host=peer.host,
        sop_instance_uid=affected,
        status=f"0x{result.status:04X}",
        reason=None if result.status is StoreStatus.SUCCESS else result.reason,
        **result.audit_fields,
    )
    if result.status is StoreStatus.SUCCESS:
        log.info(
            "C-STORE from %r@%s: accession %r, %s, %s (0x0000)",
            peer.ae_title,
            peer.host,
            result.accession,
            result.modality or "no modality",
            result.reason,
        )
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


def note_pdu_received(event, watch: ConnectionWatch) -> None:
    """EVT_PDU_RECV: a whole PDU came in; the connection's PDU deadline starts again, and a
    P-DATA PDU counts towards the size of the dataset being received."""
    pdata = len(event.pdu) if isinstance(event.pdu, P_DATA_TF) else 0
    watch.pdu_received(event.assoc.dul.socket.socket, pdata)


def check_calling_peer(event, rules: tuple[PeerRule, ...]) -> None:
    """EVT_REQUESTED: reject an association whose calling AE title and host match no rule."""
    calling = event.assoc.requestor.primitive.calling_ae_title.strip()
    host = event.assoc.requestor.address
    if rules and not any(rule.allows(calling, host) for rule in rules):
        log.warning("rejecting association from %r at %s: not on accept_from", calling, host)
        ASSOCIATIONS.labels("rejected: calling AE not on accept_from").inc()
        audit.record(
            "association_rejected",
            "failure",
            peer_ae=calling,
            peer_host=host,
            reason="calling AE title and host not on accept_from",
        )
        event.assoc.acse.send_reject(*REJECT_CALLING_AE)
        event.assoc.kill()  # as pynetdicom's own rejections do: the A-ASSOCIATE-RJ goes out first


def log_rejection(event) -> None:
    """EVT_REJECTED: say why, whoever decided it (the allow list or the association limit)."""
    rj = event.assoc.acceptor.primitive
    calling = event.assoc.requestor.primitive.calling_ae_title.strip()
    if (rj.result_source, rj.diagnostic) == (0x03, 0x02):
        ASSOCIATIONS.labels("rejected: max_associations").inc()
        audit.record(
            "association_rejected",
            "failure",
            peer_ae=calling,
            peer_host=event.assoc.requestor.address,
            reason="max_associations",
        )
        log.warning(
            "rejecting association from %r at %s: %d associations already open (the maximum)",
            calling,
            event.assoc.requestor.address,
            event.assoc.ae.maximum_associations,
        )


def note_accepted(event) -> None:
    """EVT_ACCEPTED: counted and audited; presentation contexts refused are logged."""
    calling = event.assoc.requestor.ae_title.strip()
    ASSOCIATIONS.labels("accepted").inc()
    audit.record("association_accepted", peer_ae=calling, peer_host=event.assoc.requestor.address)
    for cx in event.assoc.rejected_contexts:
        log.warning(
            "association from %r: presentation context %s (%s) rejected: none of the proposed "
            "transfer syntaxes %s is supported",
            calling,
            cx.abstract_syntax,
            cx.abstract_syntax.name,
            ", ".join(ts.name for ts in cx.transfer_syntax) or "(none listed)",
        )


@dataclass
class StoreScp:
    """A listening SCP; `stop` lets in-flight associations finish."""

    ae: AE
    server: DispatchingServer | HandedServer

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        """Stop accepting; in-flight associations finish (each writes whole files or none)."""
        self.server.shutdown()
        for assoc in self.ae.active_associations:
            assoc.join(timeout=60)  # an Association is a thread: let its transfers end


def start_scp(
    settings: NodeSettings,
    store: InstanceStore,
    steps: PerformedSteps,
    max_instance_bytes: int = 0,
    channel: socket.socket | None = None,
) -> StoreScp:
    """Serve in a background thread: listening on the port (its server hands every n-th
    connection to the sibling processes on its `siblings` channels); or, in such a sibling,
    serving the connections handed over `channel`. DicomNodeError: the port is taken."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.acse_timeout = settings.acse_timeout_s
    ae.network_timeout = settings.network_timeout_s
    ae.dimse_timeout = settings.network_timeout_s
    ae.add_supported_context(Verification)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
    watch = ConnectionWatch(
        settings.accept_from,
        settings.max_associations_per_host,
        settings.acse_timeout_s,
        settings.network_timeout_s,
        max_instance_bytes,
    )
    handlers = [
        (evt.EVT_REQUESTED, check_calling_peer, [settings.accept_from]),
        (evt.EVT_REJECTED, log_rejection),
        (evt.EVT_ACCEPTED, note_accepted),
        (evt.EVT_C_ECHO, lambda event: StoreStatus.SUCCESS),
        (evt.EVT_C_STORE, handle_store, [store, watch]),
        (evt.EVT_N_CREATE, mpps.handle_create, [steps, watch]),
        (evt.EVT_N_SET, mpps.handle_set, [steps, watch]),
        (evt.EVT_PDU_RECV, note_pdu_received, [watch]),
    ]
    address = (settings.host, settings.port)
    tls = _ssl_context(settings)
    if channel is not None:
        server = ae.make_server(
            address,
            evt_handlers=handlers,
            ssl_context=tls,
            server_class=HandedServer,
            channel=channel,
            listening=address,
        )
    else:
        try:
            server = ae.make_server(
                address, evt_handlers=handlers, ssl_context=tls, server_class=DispatchingServer
            )
        except OSError as exc:
            raise DicomNodeError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc} "
                "(is another node or program using that port?)"
            ) from exc
    server.watch = watch
    watch.start()
    threading.Thread(
        target=server.serve_forever, args=(0.1,), name="scp-acceptor", daemon=True
    ).start()
    log.info(
        "%s as %s on %s:%d%s",
        "serving connections handed over by the listening process" if channel else "listening",
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
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195, as PS3.15 B.9 asks
    context.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(str(tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
