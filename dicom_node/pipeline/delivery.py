"""Delivery: the delivery loop's step sends one due export (a study version's SR and SCs) to
its destination by C-STORE, and records it sent, retried with backoff, or dead with the
destination's answer. Needs no model."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_node import audit
from dicom_node.config import Destination, Settings
from dicom_node.dicom.terms import RESULT_FALLBACK_SYNTAXES
from dicom_node.errors import DicomNodeError, InfrastructureError
from dicom_node.index import Index
from dicom_node.index.database import utcnow
from dicom_node.index.objects import open_storage
from dicom_node.index.records import DueExport
from dicom_node.metrics import EXPORT_SECONDS, TIME_TO_RESULT_SECONDS
from dicom_node.pipeline.retry import delivery_failure

log = logging.getLogger(__name__)

SUCCESS_STATUSES = (0x0000, 0xB000, 0xB006, 0xB007)  # success, and the warnings (PS3.4 B.2.3)


class ExportError(DicomNodeError):
    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def is_permanent_refusal(status: int) -> bool:
    """A C-STORE failure that sending the same object again cannot fix. 0xA7xx (out of
    resources) is the destination's transient trouble; every other failure is its verdict."""
    return status not in SUCCESS_STATUSES and not 0xA700 <= status <= 0xA7FF


def send_objects(
    destination: Destination,
    datasets: Sequence[Dataset],
    calling_ae: str,
    acknowledged: Callable[[int], None],
) -> None:
    """Store every dataset at the destination, calling `acknowledged(i)` as soon as the i-th
    is stored; or raise ExportError saying why and whether a later attempt can help."""
    ae = _calling_ae(calling_ae)
    # A context of its own for each compressed form (the destination accepts or declines
    # it), and one uncompressed context per SOP class to fall back on.
    uncompressed = list(RESULT_FALLBACK_SYNTAXES)
    contexts = {(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets}
    for sop_class, syntax in sorted(contexts):
        if syntax not in uncompressed:
            ae.add_requested_context(sop_class, [syntax])
    for sop_class in sorted({sop_class for sop_class, _ in contexts}):
        ae.add_requested_context(sop_class, uncompressed)
    assoc = _associate(ae, destination)
    if not assoc.is_established:
        raise ExportError(_not_established(destination), permanent=False)
    try:
        for i, ds in enumerate(datasets):
            syntaxes = {
                cx.transfer_syntax[0]
                for cx in assoc.accepted_contexts
                if cx.abstract_syntax == ds.SOPClassUID
            }
            if not syntaxes:
                raise ExportError(
                    f"{destination.name}: does not accept SOP class {ds.SOPClassUID.name}",
                    permanent=True,
                )
            if ds.file_meta.TransferSyntaxUID not in syntaxes:
                ds.decompress()  # the destination declined the compressed form
            status = assoc.send_c_store(ds)
            if not status:
                raise ExportError(f"{destination.name}: no response to C-STORE", permanent=False)
            code = int(status.Status)
            if code not in SUCCESS_STATUSES:
                raise ExportError(
                    f"{destination.name}: C-STORE of {ds.SOPClassUID.name} answered 0x{code:04X}",
                    permanent=is_permanent_refusal(code),
                )
            acknowledged(i)
    finally:
        assoc.release()
    log.info("sent %d object(s) to %s", len(datasets), destination.name)


def echo(destination: Destination, calling_ae: str) -> str | None:
    """C-ECHO the destination; None when it answers Success, else what went wrong."""
    ae = _calling_ae(calling_ae)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, destination)
    if not assoc.is_established:
        return _not_established(destination)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or int(status.Status) != 0:
        return f"{destination.name}: C-ECHO not answered with Success"
    return None


def _calling_ae(title: str) -> AE:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def _associate(ae: AE, destination: Destination):
    tls = destination.tls
    return ae.associate(
        destination.host,
        destination.port,
        ae_title=destination.ae_title,
        tls_args=(tls.client_context(), destination.host) if tls.enabled else None,
    )


def _not_established(destination: Destination) -> str:
    return (
        f"{destination.name} ({destination.ae_title}@{destination.host}:{destination.port}): "
        "association not established (down, or refusing us)"
    )


class DeliveryStep:
    def __init__(self, settings: Settings, index: Index) -> None:
        self.settings = settings
        self.index = index
        self.results = open_storage(settings.storage, index.db).results

    def __call__(self) -> bool:
        """Send the next due export; False when there was none."""
        export = self.index.outbox.claim_due_export(self.settings.worker.lease_s)
        if export is None:
            return False
        destinations = {d.name: d for d in self.settings.destinations}
        destination = destinations.get(export.destination)
        try:
            if destination is None:
                raise ExportError(
                    f"destination {export.destination!r} is no longer configured", permanent=True
                )
            ids = [object_id for object_id, _ in export.objects]
            with EXPORT_SECONDS.time():
                send_objects(
                    destination,
                    self._read_objects(export),
                    self.settings.node.ae_title,
                    lambda i: self.index.outbox.object_delivered(export.id, ids[i]),
                )
        except ExportError as exc:
            self._failed(export, str(exc), permanent=exc.permanent)
            return True
        except InfrastructureError as exc:
            self._failed(export, str(exc), permanent=False, infrastructure=True)
            raise  # the loop backs off and reports itself unhealthy
        self.index.outbox.export_sent(export.id)
        log.info(
            "study %r (accession %r) v%d: results sent to %s",
            export.study_uid,
            export.accession_number,
            export.study_version,
            export.destination,
        )
        if export.last_received_at is not None:
            waited = (utcnow() - export.last_received_at).total_seconds()
            TIME_TO_RESULT_SECONDS.observe(max(0.0, waited))
        audit.record(
            "result_exported",
            destination=export.destination,
            peer_ae=destination.ae_title,
            peer_host=destination.host,
            study_uid=export.study_uid,
            study_version=export.study_version,
            patient_id=export.patient_id or None,
            objects=len(export.objects),
        )
        return True

    def _read_objects(self, export: DueExport) -> list[Dataset]:
        try:
            return [
                pydicom.dcmread(io.BytesIO(self.results.read(key))) for _, key in export.objects
            ]
        except OSError as exc:
            raise InfrastructureError(
                f"result objects of {export.study_uid!r} v{export.study_version} unreadable: {exc}"
            ) from exc

    def _failed(
        self, export: DueExport, reason: str, permanent: bool, infrastructure: bool = False
    ) -> None:
        decision = delivery_failure(
            self.settings.worker.export,
            f"export #{export.id} to {export.destination}",
            export.attempts,
            reason,
            utcnow(),
            permanent,
            infrastructure,
        )
        self.index.outbox.export_failed(export.id, decision.reason, decision.retry_at)
