"""The node's front door: a pynetdicom SCP answering C-ECHO and C-STORE.

The store handler stays thin: it checks the identifiers, writes the raw encoded dataset to the
spool (temporary name, fsync, rename), commits the instance row and only then answers Success.
It never raises: every failure is logged with its reason and mapped to a DIMSE status.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator
from pynetdicom import AE, evt
from pynetdicom.acse import ACSE
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.config import NodeSettings, PeerRule
from dicom_node.db import Index, IntegrityError, Outcome, ReceivedInstance
from dicom_node.dicom_terms import (
    ACCEPTED_TRANSFER_SYNTAXES,
    UNCOMPRESSED,
    StoreStatus,
    body_part_of,
    expected_pixel_bytes,
    is_image_sop_class,
)
from dicom_node.spool import Spool

log = logging.getLogger(__name__)

UNDEFINED_LENGTH = 0xFFFFFFFF
TRAILING_PADDING = 0xFFFCFFFC  # Data Set Trailing Padding: carries nothing
REQUIRED_UIDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


class RejectedInstance(Exception):
    """A dataset the node refuses; carries the DIMSE status to answer."""

    def __init__(self, status: StoreStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class SharedPortServer(ThreadedAssociationServer):
    """Sets SO_REUSEPORT so several node processes accept on one port (the kernel spreads
    the connections): one Python process is CPU-bound at well under the link's speed."""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class AllowListACSE(ACSE):
    """ACSE that rejects (permanent, calling AE not recognised) peers off the allow list."""

    rules: tuple[PeerRule, ...] = ()

    def _negotiate_as_acceptor(self) -> None:
        calling = self.requestor.primitive.calling_ae_title.strip()
        address = self.assoc.requestor.address
        if self.rules and not any(rule.allows(calling, address) for rule in self.rules):
            log.warning("rejecting association from %s at %s: not on accept_from", calling, address)
            self.send_reject(0x01, 0x01, 0x03)
            evt.trigger(self.assoc, evt.EVT_REJECTED, {})
            self.assoc.kill()
            return
        super()._negotiate_as_acceptor()


def find_truncation(encoded: bytes, implicit_vr: bool, little_endian: bool) -> str | None:
    """Why the encoded dataset is cut short, or None when every element is whole.

    pydicom's reader stops quietly at a partial element, so the lengths are checked here.
    """
    fp = BytesIO(encoded)
    end = 0
    for raw in data_element_generator(fp, implicit_vr, little_endian):
        declared = getattr(raw, "length", None)  # parsed sequences carry no raw length
        if declared not in (None, UNDEFINED_LENGTH) and raw.value is not None:
            if len(raw.value) != declared:
                return f"element {raw.tag} has {len(raw.value)} of its {declared} bytes"
        end = fp.tell()
    if end != len(encoded):
        return f"{len(encoded) - end} byte(s) after the last whole element"
    return None


def check_dataset(ds: Dataset, affected_uid: str, transfer_syntax: str) -> None:
    """Raise RejectedInstance when the dataset breaks the image IOD basics the node relies on."""
    if not any(e.tag != TRAILING_PADDING and e.tag.element != 0 for e in ds):
        raise RejectedInstance(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, "empty dataset")
    missing = [k for k in REQUIRED_UIDS if not str(ds.get(k, "") or "").strip()]
    if missing:
        raise RejectedInstance(
            StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"missing {', '.join(missing)}"
        )
    if ds.SOPInstanceUID != affected_uid:
        raise RejectedInstance(
            StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"SOP Instance UID {ds.SOPInstanceUID} differs from the request's {affected_uid}",
        )
    if not is_image_sop_class(ds.SOPClassUID):
        raise RejectedInstance(
            StoreStatus.SOP_CLASS_NOT_SUPPORTED,
            f"SOP class {ds.SOPClassUID} ({ds.SOPClassUID.name}) is not an image; this node "
            "stores images only",
        )
    if "PixelData" not in ds:
        raise RejectedInstance(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, "no Pixel Data")
    if transfer_syntax in UNCOMPRESSED:
        try:
            expected = expected_pixel_bytes(ds)
        except (AttributeError, ValueError, TypeError) as exc:
            raise RejectedInstance(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"image pixel module incomplete: {exc}",
            ) from exc
        actual = len(ds.PixelData)
        if actual not in (expected, expected + 1):  # +1: the even-length pad byte
            raise RejectedInstance(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"Pixel Data is {actual} bytes, Rows x Columns x samples x bits needs {expected}",
            )


class StoreSCP:
    def __init__(self, settings: NodeSettings, index: Index, spool: Spool) -> None:
        self.settings = settings
        self.index = index
        self.spool = spool
        self._server = None
        self._versions = threading.Lock()  # one writer decides the version of a SOP Instance UID
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_associations = settings.max_associations
        self.ae.maximum_pdu_size = 0  # unlimited: fewer, larger PDUs from peers
        self.ae.network_timeout = 60
        self.ae.dimse_timeout = 60
        self.ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            self.ae.add_supported_context(cx.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, reuse_port: bool = False) -> None:
        """Listen in a background thread; `reuse_port` lets sibling processes share the port."""
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_ACCEPTED, self._log_rejected_contexts),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_C_STORE, self.handle_store),
        ]
        self._server = self.ae.make_server(
            (self.settings.host, self.settings.port),
            evt_handlers=handlers,
            ssl_context=self._ssl_context(),
            server_class=SharedPortServer if reuse_port else ThreadedAssociationServer,
        )
        self.ae._servers.append(self._server)  # as AE.start_server does: shutdown() expects it
        threading.Thread(
            target=self._server.serve_forever, name="scp-acceptor", daemon=True
        ).start()
        log.info(
            "listening as %s on %s:%d%s",
            self.settings.ae_title,
            self.settings.host,
            self.settings.port,
            " (TLS)" if self.settings.tls.enabled else "",
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        """Stop accepting; in-flight associations finish (each writes whole files or none)."""
        if self._server is None:
            return
        self._server.shutdown()  # no new connections from here on
        for assoc in self.ae.active_associations:
            assoc.join(timeout=60)  # an Association is a thread: let its transfers end
        self._server = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if not tls.enabled:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls.cert), str(tls.key))
        if tls.ca is not None:
            context.load_verify_locations(str(tls.ca))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _on_connection(self, event) -> None:
        sock = event.assoc.dul.socket.socket
        if sock is not None:
            # dcmtk-based peers (Orthanc included) stall 40 ms per image without it.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        acse = AllowListACSE(event.assoc)
        acse.rules = self.settings.accept_from
        event.assoc.acse = acse

    @staticmethod
    def _log_rejected_contexts(event) -> None:
        for cx in event.assoc.rejected_contexts:
            log.warning(
                "association from %s: presentation context %s (%s) rejected: none of the proposed "
                "transfer syntaxes %s is supported",
                event.assoc.requestor.ae_title.strip(),
                cx.abstract_syntax,
                cx.abstract_syntax.name,
                ", ".join(ts.name for ts in cx.transfer_syntax) or "(none listed)",
            )

    # -- C-STORE ----------------------------------------------------------------------------
    def handle_store(self, event) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        host = event.assoc.requestor.address
        affected = str(event.request.AffectedSOPInstanceUID)
        try:
            syntax = event.context.transfer_syntax
            if not syntax.is_deflated:
                try:
                    cut = find_truncation(
                        event.request.DataSet.getvalue(),
                        syntax.is_implicit_VR,
                        syntax.is_little_endian,
                    )
                except Exception as exc:  # the reader's own EOF and value errors
                    cut = str(exc)
                if cut:
                    raise RejectedInstance(
                        StoreStatus.CANNOT_UNDERSTAND, f"dataset cannot be parsed: {cut}"
                    )
            ds = event.dataset
            check_dataset(ds, affected, str(syntax))
            outcome = self._store(event, ds, str(syntax), calling, host)
        except RejectedInstance as exc:
            log.warning(
                "C-STORE %s from %s@%s refused (0x%04X): %s",
                affected,
                calling,
                host,
                exc.status,
                exc,
            )
            return exc.status
        except OSError as exc:
            log.error(
                "C-STORE %s from %s@%s: cannot write the spool: %s", affected, calling, host, exc
            )
            return StoreStatus.OUT_OF_RESOURCES
        except Exception as exc:  # the handler never raises: the peer gets a status
            log.exception("C-STORE %s from %s@%s failed: %s", affected, calling, host, exc)
            return StoreStatus.OUT_OF_RESOURCES
        log.debug("C-STORE %s from %s@%s: %s", affected, calling, host, outcome.value)
        return StoreStatus.SUCCESS

    def _store(self, event, ds: Dataset, syntax: str, calling: str, host: str) -> Outcome:
        spooled = self.spool.write_temp([event.encoded_dataset(include_meta=True)])
        rec = ReceivedInstance(
            patient_id=str(ds.get("PatientID", "") or ""),
            study_uid=ds.StudyInstanceUID,
            series_uid=ds.SeriesInstanceUID,
            sop_instance_uid=ds.SOPInstanceUID,
            sop_class_uid=ds.SOPClassUID,
            transfer_syntax_uid=syntax,
            modality=str(ds.get("Modality", "") or "").upper(),
            body_part=body_part_of(ds),
            accession_number=str(ds.get("AccessionNumber", "") or ""),
            study_date=str(ds.get("StudyDate", "") or ""),
            size=spooled.size,
            sha256=spooled.sha256,
            calling_ae=calling,
            peer_host=host,
        )
        try:
            with self._versions:
                latest = self.index.latest_instance(rec.sop_instance_uid)
                if latest is not None and latest.sha256 == rec.sha256:
                    self.spool.discard(spooled)
                    return Outcome.DUPLICATE
                version = 1 if latest is None else latest.version + 1
                relative = self.spool.relative_path(rec.study_uid, rec.sop_instance_uid, rec.sha256)
                self.spool.commit(spooled, relative)
                self.index.record_instance(rec, version, relative)
        except IntegrityError as exc:  # another node process indexed this version first
            raise RejectedInstance(
                StoreStatus.OUT_OF_RESOURCES, f"concurrent write: {exc}"
            ) from exc
        finally:
            self.spool.discard(spooled)
        if version > 1:
            log.info(
                "SOP Instance %s received again with different bytes: kept as version %d",
                rec.sop_instance_uid,
                version,
            )
            return Outcome.NEW_VERSION
        return Outcome.STORED
