"""The tables of the DICOM conformance statement (docs/conformance.md), made from the code's
own lists, so that the statement cannot drift from what the node does.

    python -m dicom_node.app.conformance docs/conformance.md   # rewrite the generated parts

Each generated part sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; a test
regenerates them and compares.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from pydicom.uid import UID
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (
    Comprehensive3DSRStorage,
    KeyObjectSelectionDocumentStorage,
    ModalityPerformedProcedureStep,
    SecondaryCaptureImageStorage,
    Verification,
)

from dicom_node.config import NodeSettings
from dicom_node.dicom.terms import (
    ACCEPTED_TRANSFER_SYNTAXES,
    RESULT_FALLBACK_SYNTAXES,
    SC_TRANSFER_SYNTAX,
    StepRequestStatus,
    StoreStatus,
    is_image_sop_class,
)
from dicom_node.ingest.scp import MAX_PDU_BYTES


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def scp_sop_classes() -> str:
    rows = [
        (Verification.name, Verification, "SCP", "C-ECHO"),
        (
            ModalityPerformedProcedureStep.name,
            ModalityPerformedProcedureStep,
            "SCP",
            "N-CREATE, N-SET: completes studies",
        ),
    ]
    rows += [
        (UID(cx.abstract_syntax).name, cx.abstract_syntax, "SCP", "C-STORE: stored")
        for cx in AllStoragePresentationContexts
        if is_image_sop_class(cx.abstract_syntax)
    ]
    return _table(("SOP class", "UID", "role", "what the node does"), rows)


def scp_refused_sop_classes() -> str:
    refused = [
        cx.abstract_syntax
        for cx in AllStoragePresentationContexts
        if not is_image_sop_class(cx.abstract_syntax)
    ]
    return (
        f"{len(refused)} other Storage SOP classes (pynetdicom's list: SR, presentation states, "
        "waveforms, encapsulated documents, ...) are accepted at association negotiation and "
        f"each C-STORE of them is answered 0x{StoreStatus.SOP_CLASS_NOT_SUPPORTED:04X} "
        "(SOP class not supported): the node stores images only."
    )


def scp_transfer_syntaxes() -> str:
    return _table(
        ("transfer syntax", "UID"), ((UID(ts).name, ts) for ts in ACCEPTED_TRANSFER_SYNTAXES)
    )


def scu_sop_classes() -> str:
    fallback = ", ".join(UID(ts).name for ts in RESULT_FALLBACK_SYNTAXES)
    rows = [
        (
            Comprehensive3DSRStorage.name,
            Comprehensive3DSRStorage,
            "SCU",
            f"the study's anomaly report (TID 1500); offered in {fallback}",
        ),
        (
            SecondaryCaptureImageStorage.name,
            SecondaryCaptureImageStorage,
            "SCU",
            f"one anomaly map per image; offered in {UID(SC_TRANSFER_SYNTAX).name} in a "
            f"context of its own, and in {fallback} (decompressed) for a PACS that declines it",
        ),
        (
            KeyObjectSelectionDocumentStorage.name,
            KeyObjectSelectionDocumentStorage,
            "SCU",
            f"with `worker.key_objects`: the images at or above the operating point; offered in "
            f"{fallback}",
        ),
        (Verification.name, Verification, "SCU", "`config check --probe`"),
    ]
    return _table(("SOP class", "UID", "role", "when"), rows)


def store_statuses() -> str:
    return _table(("status", "name"), ((f"0x{s:04X}", s.name) for s in StoreStatus))


def step_statuses() -> str:
    return _table(("status", "name"), ((f"0x{s:04X}", s.name) for s in StepRequestStatus))


def association_policies() -> str:
    defaults = NodeSettings()
    rows = [
        ("AE title", f"`{defaults.ae_title}` (node.ae_title)"),
        ("maximum PDU size received", f"{MAX_PDU_BYTES} bytes"),
        (
            "simultaneous associations",
            f"{defaults.max_associations} per SCP process (node.max_associations), "
            f"{defaults.max_associations_per_host} per host (node.max_associations_per_host)",
        ),
        ("A-ASSOCIATE-RQ deadline", f"{defaults.acse_timeout_s:g} s (node.acse_timeout_s)"),
        (
            "between PDUs, and idle",
            f"{defaults.network_timeout_s:g} s (node.network_timeout_s)",
        ),
        ("port", f"{defaults.port} (node.port)"),
    ]
    return _table(("policy", "default (key)"), rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "scp-sop-classes": scp_sop_classes,
    "scp-refused-sop-classes": scp_refused_sop_classes,
    "scp-transfer-syntaxes": scp_transfer_syntaxes,
    "scu-sop-classes": scu_sop_classes,
    "store-statuses": store_statuses,
    "step-statuses": step_statuses,
    "association-policies": association_policies,
}
_PART = re.compile(r"(<!-- generated: ([a-z-]+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def regenerate(text: str) -> str:
    """`text` with every generated part made anew from the code."""
    return _PART.sub(lambda m: m.group(1) + SECTIONS[m.group(2)]() + "\n" + m.group(4), text)


def generated_names(text: str) -> set[str]:
    return {m.group(2) for m in _PART.finditer(text)}


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(regenerate(path.read_text()))
