"""Encoded datasets as a peer sends them: decoding, truncation checks, and the Part 10 header
that turns them into a file without re-encoding (PS3.10 7.1, PS3.5 7)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
LARGE_VALUE = 4096  # bytes: longer values are skipped, not read, by `check_layout`


def inflate(encoded: bytes, syntax: UID) -> bytes:
    """The dataset bytes as elements: Deflated Explicit VR Little Endian is unpacked."""
    return zlib.decompress(encoded, -zlib.MAX_WBITS) if syntax.is_deflated else encoded


def decode_header(encoded: bytes, syntax: UID) -> Dataset:
    """Parse a dataset encoded in `syntax` (no preamble, no file meta) up to its pixels: the
    pixel data are never copied out of the received bytes."""
    return read_dataset(
        BytesIO(inflate(encoded, syntax)),
        syntax.is_implicit_VR,
        syntax.is_little_endian,
        stop_when=lambda tag, vr, length: tag == PIXEL_DATA,
    )


@dataclass(frozen=True)
class Layout:
    """What a structural pass over an encoded dataset found."""

    truncation: str | None  # why it is cut short, or None when every element is whole
    pixel_data_length: int | None  # as declared (UNDEFINED_LENGTH: encapsulated); None: absent


def check_layout(encoded: bytes, syntax: UID) -> Layout:
    """Walk the top-level elements without reading large values (they are skipped by their
    declared length): pydicom's reader stops quietly at a partial element, so the lengths
    are checked here."""
    data = inflate(encoded, syntax)
    fp = BytesIO(data)
    end, pixels = 0, None
    elements = data_element_generator(
        fp, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=LARGE_VALUE
    )
    for raw in elements:
        declared = getattr(raw, "length", None)  # parsed sequences carry no raw length
        if raw.tag == PIXEL_DATA:
            pixels = declared
        if declared not in (None, UNDEFINED_LENGTH):
            if raw.value is not None and len(raw.value) != declared:
                return Layout(
                    f"element {raw.tag} has {len(raw.value)} of its {declared} bytes", None
                )
        end = fp.tell()
        if end > len(data):  # a skipped value runs past the end
            return Layout(
                f"element {raw.tag} declares {declared} bytes, "
                f"{declared - (end - len(data))} arrived",
                None,
            )
    if end != len(data):
        return Layout(f"{len(data) - end} byte(s) after the last whole element", None)
    return Layout(None, pixels)


def part10_header(sop_class_uid: str, sop_instance_uid: str, syntax: UID) -> bytes:
    """Preamble, 'DICM' and File Meta Information for a dataset received in `syntax`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = syntax
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()
