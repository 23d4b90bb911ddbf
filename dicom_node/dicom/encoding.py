"""Encoded datasets as a peer sends them: decoding, truncation checks, and the Part 10 header
that turns them into a file without re-encoding (PS3.10 7.1, PS3.5 7)."""

from __future__ import annotations

import zlib
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

UNDEFINED_LENGTH = 0xFFFFFFFF


def inflate(encoded: bytes, syntax: UID) -> bytes:
    """The dataset bytes as elements: Deflated Explicit VR Little Endian is unpacked."""
    return zlib.decompress(encoded, -zlib.MAX_WBITS) if syntax.is_deflated else encoded


def decode_dataset(encoded: bytes, syntax: UID) -> Dataset:
    """Parse a dataset encoded in `syntax` (no preamble, no file meta)."""
    return read_dataset(
        BytesIO(inflate(encoded, syntax)), syntax.is_implicit_VR, syntax.is_little_endian
    )


def find_truncation(encoded: bytes, syntax: UID) -> str | None:
    """Why the encoded dataset is cut short, or None when every element is whole.

    pydicom's reader stops quietly at a partial element, so the lengths are checked here.
    """
    data = inflate(encoded, syntax)
    fp = BytesIO(data)
    end = 0
    for raw in data_element_generator(fp, syntax.is_implicit_VR, syntax.is_little_endian):
        declared = getattr(raw, "length", None)  # parsed sequences carry no raw length
        if declared not in (None, UNDEFINED_LENGTH) and raw.value is not None:
            if len(raw.value) != declared:
                return f"element {raw.tag} has {len(raw.value)} of its {declared} bytes"
        end = fp.tell()
    if end != len(data):
        return f"{len(data) - end} byte(s) after the last whole element"
    return None


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
