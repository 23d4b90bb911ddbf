"""A stand-in PACS for the demo (and the tests): a storage SCP that keeps what it receives."""

from __future__ import annotations

import threading
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    Comprehensive3DSRStorage,
    KeyObjectSelectionDocumentStorage,
    SecondaryCaptureImageStorage,
)

from dicom_node.dicom.terms import ACCEPTED_TRANSFER_SYNTAXES

PACS_AE = "DEMO_PACS"


class ReceivingPacs:
    """Stores SRs and SCs in a folder; `received` lists (study UID, SOP class name, file)."""

    def __init__(
        self,
        folder: Path,
        port: int = 0,
        transfer_syntaxes: tuple[str, ...] = ACCEPTED_TRANSFER_SYNTAXES,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.received: list[tuple[str, str, Path]] = []
        self.lock = threading.Lock()
        self.ae = AE(ae_title=PACS_AE)
        for sop in (
            Comprehensive3DSRStorage,
            SecondaryCaptureImageStorage,
            KeyObjectSelectionDocumentStorage,
        ):
            self.ae.add_supported_context(sop, transfer_syntaxes)
        self.server = self.ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        ds = event.dataset
        with self.lock:
            path = self.folder / f"{len(self.received):05d}.dcm"  # our name, not the peer's
            path.write_bytes(event.encoded_dataset())
            self.received.append((ds.StudyInstanceUID, ds.SOPClassUID.name, path))
        return 0x0000

    def reports_for(self, study_uid: str) -> int:
        with self.lock:
            return sum(1 for s, kind, _ in self.received if s == study_uid and "SR" in kind)

    def stop(self) -> None:
        self.server.shutdown()
