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
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from dicom_node.errors import ImageDecodeError

MAX_PIXELS = 64_000_000  # a side of 8000: anything larger is a malformed header, not an X-ray


def read_unit_image(path: str | Path) -> np.ndarray:
    """Read a DICOM file and return its first frame as float32 (rows, columns) in [0, 1]."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ImageDecodeError(f"{path}: not a readable DICOM file ({exc})") from exc
    return unit_image_from_dataset(ds, source=str(path))


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
    bits = int(ds.get("BitsStored", 0))
    if not 1 <= bits <= 16:
        raise ImageDecodeError(f"{source}: Bits Stored {bits} outside 1..16")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        name = syntax.name if syntax is not None else "unknown transfer syntax"
        raise ImageDecodeError(f"{source}: cannot decode pixel data ({name}): {exc}") from exc
    if pixels.ndim == 3:  # multi-frame: the first frame stands for the image
        pixels = pixels[0]
    if pixels.shape != (rows, cols):
        raise ImageDecodeError(f"{source}: decoded shape {pixels.shape} != {rows} x {cols}")
    values = apply_modality_lut(pixels, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = apply_voi_lut(values, ds, index=0)
    values = np.asarray(values, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low + high) or high <= low:
        raise ImageDecodeError(f"{source}: image is blank (all pixels {low})")
    unit = (values - low) / (high - low)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return unit
