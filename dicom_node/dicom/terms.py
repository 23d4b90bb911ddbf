"""DICOM vocabulary the node relies on: transfer syntaxes it accepts, image SOP classes, chest
codes, and the DIMSE status codes its C-STORE handler answers (PS3.4 Annex B.2.3, PS3.7 C)."""

from __future__ import annotations

from enum import IntEnum

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

ACCEPTED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

# Results: the anomaly map is made in JPEG baseline (a picture to look at, not to diagnose
# from); delivery offers it so in a context of its own and falls back, like the SR, to these.
SC_TRANSFER_SYNTAX = JPEGBaseline8Bit
RESULT_FALLBACK_SYNTAXES: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

UNCOMPRESSED = {
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
}

# Anatomic Region Sequence codes (SNOMED CT, and the retired SRT codes) that mean chest.
CHEST_CODES = {"43799004": "CHEST", "51185008": "THORAX", "T-D3000": "CHEST", "T-D3050": "THORAX"}


class StoreStatus(IntEnum):
    SUCCESS = 0x0000
    SOP_CLASS_NOT_SUPPORTED = 0x0122  # PS3.7 C.5.x: refused, the node stores images only
    OUT_OF_RESOURCES = 0xA700  # disk or index failure: the peer should retry later
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # required attribute missing, pixel length wrong
    CANNOT_UNDERSTAND = 0xC210  # the dataset cannot be parsed


class StepRequestStatus(IntEnum):
    """N-CREATE / N-SET statuses of the MPPS SCP (PS3.4 F.7.2, PS3.7 10.1.5 and 10.1.1)."""

    SUCCESS = 0x0000
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110  # also: a COMPLETED or DISCONTINUED step may not be updated
    DUPLICATE_INSTANCE = 0x0111
    NO_SUCH_INSTANCE = 0x0112
    RESOURCE_LIMITATION = 0x0213  # the index is unavailable: the modality retries later


def is_image_sop_class(uid: str) -> bool:
    """Storage SOP classes whose name says Image (CR, DX, SC, CT, ...)."""
    return "Image" in UID(uid).name and "Storage" in UID(uid).name


def body_part_of(ds: Dataset) -> str:
    """Body Part Examined, or the chest meaning of a coded Anatomic Region Sequence."""
    part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if part:
        return part
    for item in ds.get("AnatomicRegionSequence", []):
        code = str(item.get("CodeValue", ""))
        if code in CHEST_CODES:
            return CHEST_CODES[code]
        meaning = str(item.get("CodeMeaning", "")).upper()
        if meaning:
            return meaning
    return ""


def expected_pixel_bytes(ds: Dataset) -> int:
    """Length the native (uncompressed) Pixel Data must have, PS3.5 8.1.1."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.BitsAllocated)
    if bits == 1:
        return (rows * cols * samples * frames + 7) // 8
    return rows * cols * samples * frames * (bits // 8)
