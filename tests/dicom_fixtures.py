"""Small DICOM files made on the fly for tests, from the shipped samples."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_node.results.sources import TYPE_2_COPIED
from dicom_node.samples import SAMPLES_DIR

SMALL_SAMPLE = SAMPLES_DIR / "zhanglab_03_pneumonia.dcm"  # uncompressed DX chest


def with_new_uids(source: Path, out: Path, *, study_uid: str | None = None) -> Path:
    """A copy of `source` with a fresh SOP Instance UID (and study/series UIDs when asked)."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = generate_uid()
    ds.save_as(out, enforce_file_format=True)
    return out


def without(source: Path, out: Path, keyword: str) -> Path:
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    delattr(ds, keyword)
    ds.save_as(out, enforce_file_format=True)
    return out


def wrong_pixel_length(source: Path, out: Path) -> Path:
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows = int(ds.Rows) + 10  # header promises more pixels than the data holds
    ds.save_as(out, enforce_file_format=True)
    return out


def truncated(source: Path, out: Path, keep_fraction: float = 0.5) -> Path:
    data = with_new_uids(source, out).read_bytes()
    out.write_bytes(data[: int(len(data) * keep_fraction)])
    return out


def text_report(out: Path) -> Path:
    """A Basic Text SR: a valid storage SOP class, but not an image."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "TEXT1"
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    return out


def _uncompressed_copy(study_uid: str | None = None) -> Dataset:
    ds = pydicom.dcmread(SMALL_SAMPLE)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    return ds


def one_bit(out: Path) -> Path:
    """The sample thresholded to a bit-packed 1-bit image (a valid layout, not a radiograph)."""
    from pydicom.pixels import pack_bits

    ds = _uncompressed_copy()
    bits = (ds.pixel_array > 128).astype("uint8")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = pack_bits(bits)
    ds.save_as(out, enforce_file_format=True)
    return out


def two_frames(out: Path) -> Path:
    """The sample twice, as a two-frame image."""
    import numpy as np

    ds = _uncompressed_copy()
    ds.PixelData = np.stack([ds.pixel_array, ds.pixel_array]).tobytes()
    ds.NumberOfFrames = 2
    ds.save_as(out, enforce_file_format=True)
    return out


def zero_window(out: Path) -> Path:
    """The sample with a Window Width of 0 (invalid: at least 1 is required)."""
    ds = _uncompressed_copy()
    ds.WindowCenter, ds.WindowWidth = 128, 0
    ds.save_as(out, enforce_file_format=True)
    return out


def named(out: Path, charset: str | list[str], name: str) -> Path:
    """A new one-image study whose patient name is `name` in the character set `charset`."""
    ds = _uncompressed_copy()
    ds.PatientID = f"NAMED{ds.StudyInstanceUID[-8:]}"  # a patient of its own
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.save_as(out, enforce_file_format=True)
    return out


def without_type_2(out: Path) -> Path:
    """A new one-image study with every Type 2 patient and study attribute absent."""
    ds = _uncompressed_copy()
    for keyword in TYPE_2_COPIED:
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(out, enforce_file_format=True)
    return out


def large_16bit(out: Path, side: int = 4000) -> Path:
    """The sample enlarged to a side x side 16-bit DX (12 bits stored), uncompressed."""
    import numpy as np
    from PIL import Image

    ds = _uncompressed_copy()
    picture = Image.fromarray(ds.pixel_array.astype(np.float32) * 16).resize((side, side))
    ds.PixelData = np.asarray(picture).clip(0, 4095).astype(np.uint16).tobytes()
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 128 * 16, 256 * 16  # the 8-bit window, on 12 bits
    ds.save_as(out, enforce_file_format=True)
    return out
