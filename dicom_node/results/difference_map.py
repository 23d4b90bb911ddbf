"""The Secondary Capture difference map: the source image with |x - G(E(x))| as a colour
overlay, a legend, the score and "NOT FOR DIAGNOSTIC USE" burned in, in a new series of the
same study (PS3.3 A.8 Secondary Capture Image IOD). Arrays in, a highdicom object out; no I/O.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

from dicom_node.dicom.terms import SC_TRANSFER_SYNTAX
from dicom_node.model.scores import ImageScore
from dicom_node.results.report import MANUFACTURER, NOT_FOR_DIAGNOSIS, result_uid

SC_SERIES_NUMBER = 9902
DISPLAY_SIDE = 2048  # pixels: the longest side of a difference map; larger sources are reduced
INFERNO = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)


def fit_for_display(unit_image: np.ndarray, longest: int = DISPLAY_SIDE) -> np.ndarray:
    """The [0, 1] image reduced (area-averaged) so its longest side is at most `longest`."""
    h, w = unit_image.shape
    factor = longest / max(h, w)
    if factor >= 1:
        return unit_image
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    picture = Image.fromarray(unit_image.astype(np.float32, copy=False), mode="F")
    return np.asarray(picture.resize(size, Image.BOX), dtype=np.float32)


def render_difference_overlay(
    unit_image: np.ndarray, score: ImageScore, threshold: float
) -> np.ndarray:
    """RGB uint8: the image in grey, |x - G(E(x))| as a colour overlay, a legend and the score.

    Works in float32 and a 256-entry colour table: a few times the image's size in memory.
    """
    h, w = unit_image.shape
    diff = np.asarray(
        Image.fromarray(score.difference_map.astype(np.float32)).resize((w, h), Image.BILINEAR)
    )
    scale = max(float(np.percentile(diff, 99.5)), 1e-6)
    heat = np.clip(diff / scale, 0, 1, dtype=np.float32)
    colours = INFERNO[(heat * 255).astype(np.uint8)]  # (h, w, 3) in 0..255
    alpha = (0.55 * heat)[..., None]
    rgb = (1 - alpha) * (unit_image[..., None] * np.float32(255)) + alpha * colours
    image = Image.fromarray(np.clip(rgb.round(), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    size = max(12, h // 40)
    font = ImageFont.load_default(size=size)
    flag = "ABOVE" if score.abnormal else "below"
    lines = [
        NOT_FOR_DIAGNOSIS,
        f"anomaly score {score.score:.2f} ({score.percentile:.0f}th percentile of normals)",
        f"{flag} operating point {threshold:.2f}",
    ]
    y = size // 2
    for line in lines:
        draw.rectangle(
            [size // 2 - 2, y - 2, size // 2 + draw.textlength(line, font=font) + 2, y + size + 2],
            fill=(0, 0, 0),
        )
        draw.text((size // 2, y), line, fill=(255, 255, 0), font=font)
        y += int(size * 1.4)
    # Legend: the colour bar from "no difference" to the 99.5th percentile of this image.
    bar_w, bar_h = max(20, w // 40), h // 3
    x0, y0 = w - bar_w - size, h - bar_h - 2 * size
    ramp = colormaps["inferno"](np.linspace(1, 0, bar_h))[:, :3]
    image.paste(
        Image.fromarray((np.repeat(ramp[:, None], bar_w, 1) * 255).astype(np.uint8)), (x0, y0)
    )
    for text, ty in (("high |x - G(E(x))|", y0 - size - 4), ("low", y0 + bar_h + 2)):
        tx = min(x0, w - int(draw.textlength(text, font=font)) - 4)
        draw.rectangle(
            [tx - 2, ty - 2, tx + draw.textlength(text, font=font) + 2, ty + size + 2],
            fill=(0, 0, 0),
        )
        draw.text((tx, ty), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def write_difference_map(
    source: Dataset, rgb: np.ndarray, study_version: int, instance_number: int
) -> hd.sc.SCImage:
    """Secondary Capture of the rendered overlay, in the node's SC series of the same study."""
    study_uid = source.StudyInstanceUID
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        # JPEG baseline: about a tenth of the uncompressed size for a picture people look at
        # (it is not for diagnosis); delivery decompresses it for a PACS that declines JPEG.
        photometric_interpretation=hd.PhotometricInterpretationValues.YBR_FULL_422,
        transfer_syntax_uid=SC_TRANSFER_SYNTAX,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=result_uid(study_uid, study_version, "sc-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=result_uid(study_uid, study_version, "sc", source.SOPInstanceUID),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=source.get("PatientOrientation") or ("L", "F"),
    )
    # General Image module, Type 1C once lossy compression was applied (not set by highdicom).
    sc.LossyImageCompression = "01"
    sc.LossyImageCompressionMethod = "ISO_10918_1"
    compressed = sum(len(f) for f in generate_fragments(sc.PixelData))
    sc.LossyImageCompressionRatio = f"{rgb.nbytes / max(compressed, 1):.1f}"
    sc.Laterality = source.get("Laterality", "")  # Type 2C; empty for an unpaired chest
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = "AI anomaly map - NOT FOR DIAGNOSTIC USE"
    sc.ImageComments = NOT_FOR_DIAGNOSIS
    sc.DerivationDescription = "difference |x - G(E(x))| of an Alpha-GAN over the source image"
    return sc
