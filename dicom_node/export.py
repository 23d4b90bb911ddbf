"""C-STORE SCU: result objects to a destination PACS."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from dicom_node.config import Destination
from dicom_node.errors import DicomNodeError

log = logging.getLogger(__name__)

# Statuses after which sending the same objects again cannot succeed (PS3.4 B.2.3).
TRANSIENT_STATUSES = range(0xA700, 0xA800)  # out of resources


class ExportError(DicomNodeError):
    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def send_objects(destination: Destination, datasets: Sequence[Dataset], calling_ae: str) -> None:
    """Store every dataset at the destination, or raise ExportError saying why and whether a
    later attempt can help."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise ExportError(
            f"{destination.name} ({destination.ae_title}@{destination.host}:{destination.port}): "
            "association not established (down, or refusing us)",
            permanent=False,
        )
    try:
        for ds in datasets:
            if not any(cx.abstract_syntax == ds.SOPClassUID for cx in assoc.accepted_contexts):
                raise ExportError(
                    f"{destination.name}: does not accept SOP class {ds.SOPClassUID.name}",
                    permanent=True,
                )
            status = assoc.send_c_store(ds)
            if not status:
                raise ExportError(f"{destination.name}: no response to C-STORE", permanent=False)
            code = int(status.Status)
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise ExportError(
                    f"{destination.name}: C-STORE of {ds.SOPClassUID.name} answered 0x{code:04X}",
                    permanent=code not in TRANSIENT_STATUSES,
                )
    finally:
        assoc.release()
    log.info("sent %d object(s) to %s", len(datasets), destination.name)
