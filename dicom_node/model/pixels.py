"""Decode a DICOM image to a grey-level picture in [0, 1] where 1 is white (bone, opacity).

Order of the grayscale pipeline, PS3.3 C.11 and C.8.7: stored values -> Modality LUT or
Rescale Slope/Intercept -> VOI LUT or Window Center/Width -> MONOCHROME1 inversion.
Decoding of compressed transfer syntaxes (JPEG baseline/extended/lossless, JPEG-LS,
JPEG 2000, RLE) is done by pydicom with the pylibjpeg plugins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from dicom_node.errors import ImageDecodeError

MAX_PIXELS = 64_000_000  # a side of 8000: anything larger is a malformed header, not an X-ray
MIN_SIDE = 64  # pixels: smaller is a thumbnail or an icon, not a radiograph the model can judge


def read_unit_image(path: str | Path) -> np.ndarray:
    """Read a DICOM file and return its image as float32 (rows, columns) in [0, 1]."""
    return unit_image_from_dataset(read_dataset(path), source=str(path))


def read_dataset(path: str | Path) -> Dataset:
    """A DICOM file's dataset; ImageDecodeError when it is not one."""
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ImageDecodeError(f"{path}: not a readable DICOM file ({exc})") from exc


def unit_image_from_dataset(ds: Dataset, source: str = "dataset") -> np.ndarray:
    if "PixelData" not in ds:
        raise ImageDecodeError(f"{source}: has no Pixel Data (7FE0,0010); not an image")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageDecodeError(
            f"{source}: Photometric Interpretation {photometric or '(missing)'} is not grayscale;"
            " only MONOCHROME1/2 radiographs can be scored"
        )
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if not 0 < rows * cols <= MAX_PIXELS:
        raise ImageDecodeError(f"{source}: impossible image size {rows} x {cols}")
    if min(rows, cols) < MIN_SIDE:
        raise ImageDecodeError(
            f"{source}: {rows} x {cols} pixels is too small to judge (at least {MIN_SIDE})"
        )
    allocated = int(ds.get("BitsAllocated", 0))
    if allocated not in (8, 16):
        raise ImageDecodeError(
            f"{source}: Bits Allocated {allocated}; the model judges 8- and 16-bit radiographs"
        )
    bits = int(ds.get("BitsStored", 0))
    if not 1 <= bits <= allocated:
        raise ImageDecodeError(f"{source}: Bits Stored {bits} outside 1..{allocated}")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ImageDecodeError(
            f"{source}: {frames} frames; the model judges single-frame radiographs only"
        )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        name = syntax.name if syntax is not None else "unknown transfer syntax"
        raise ImageDecodeError(f"{source}: cannot decode pixel data ({name}): {exc}") from exc
    if pixels.shape != (rows, cols):
        raise ImageDecodeError(f"{source}: decoded shape {pixels.shape} != {rows} x {cols}")
    try:
        values = apply_modality_lut(pixels, ds)
        if has_usable_window(ds):
            values = apply_voi_lut(values, ds, index=0)
    except Exception as exc:  # a LUT the header describes but the data do not fit
        raise ImageDecodeError(f"{source}: cannot apply its LUTs: {exc}") from exc
    return unit_from_values(values, inverted=photometric == "MONOCHROME1", source=source)


def unit_from_values(values, inverted: bool = False, source: str = "image") -> np.ndarray:
    """Stored pixel values (after the modality and VOI LUTs, or an npz's uint8) stretched to
    [0, 1] by the image's own range: the one step from pixels to a picture that training,
    calibration, evaluation and the node share. `inverted`: MONOCHROME1 (low is white)."""
    values = np.asarray(values, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low + high) or high <= low:
        raise ImageDecodeError(f"{source}: image is blank (all pixels {low})")
    unit = (values - low) / (high - low)
    return 1.0 - unit if inverted else unit


def has_usable_window(ds: Dataset) -> bool:
    """A VOI LUT, or a window whose width is at least 1 (PS3.3 C.11.2.1.2). A window of width
    0 or less is ignored: the image is then stretched to its own range, as without one."""
    if "VOILUTSequence" in ds:
        return True
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return False
    width = ds.WindowWidth
    first = width[0] if isinstance(width, MultiValue) else width
    try:
        return float(first) >= 1
    except (TypeError, ValueError):
        return False
