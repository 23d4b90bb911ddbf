"""The Secondary Capture anomaly map: the source image with the model's anomaly map (where the
score comes from, `model.saliency`) as a colour overlay inside the body, and above the image a
band with "NOT FOR DIAGNOSTIC USE", the score and a legend, so nothing burned in covers the
image or its laterality markers; in a new series of the same study (PS3.3 A.8 Secondary
Capture Image IOD). Arrays in, a highdicom object out; no I/O.
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
DISPLAY_SIDE = 2048  # pixels: the longest side of a anomaly map; larger sources are reduced
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


BODY_LEVEL = 0.2  # of the way from the image's dark to its bright end: inside the body
FRAME_INSET = 0.03  # of each side: collimator and detector edges move the score, not disease


def body_box(unit_image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the body: the rows and columns whose mean is brighter than
    BODY_LEVEL between the image's 5th and 95th percentiles, less FRAME_INSET at each side."""
    h, w = unit_image.shape
    small = fit_for_display(unit_image, 256)
    lo, hi = np.percentile(small, [5, 95])
    level = lo + BODY_LEVEL * (hi - lo)
    box = []
    sides = ((small.mean(1), h, small.shape[0]), (small.mean(0), w, small.shape[1]))
    for profile, n, size in sides:
        inside = np.flatnonzero(profile > level)
        first, last = (inside[0], inside[-1] + 1) if inside.size else (0, size)
        inset = FRAME_INSET * size
        box += [round((first + inset) * n / size), round((last - inset) * n / size)]
    return box[0], max(box[1], box[0] + 1), box[2], max(box[3], box[2] + 1)


def render_anomaly_overlay(
    unit_image: np.ndarray, score: ImageScore, threshold: float
) -> np.ndarray:
    """RGB uint8: a band with the warning, the score and the legend, above the image in grey
    with the anomaly map in colour inside the body. The map is on the model's own scale
    (`model.saliency`), so a typical normal shows little colour.

    Works in float32 and a 256-entry colour table: a few times the image's size in memory.
    """
    h, w = unit_image.shape
    heat = np.zeros((h, w), np.float32)
    top, bottom, left, right = body_box(unit_image)
    heat[top:bottom, left:right] = np.asarray(
        Image.fromarray(score.anomaly_map.astype(np.float32)).resize((w, h), Image.BILINEAR)
    )[top:bottom, left:right]
    heat = np.clip(heat, 0, 1)
    colours = INFERNO[(heat * 255).astype(np.uint8)]  # (h, w, 3) in 0..255
    alpha = (0.55 * heat)[..., None]
    rgb = (1 - alpha) * (unit_image[..., None] * np.float32(255)) + alpha * colours
    size = max(12, max(h, w) // 60)
    line = int(size * 1.4)
    band = 4 * line + size  # three lines of text and the legend, half a size above and below
    canvas = Image.new("RGB", (w, h + band))
    canvas.paste(Image.fromarray(np.clip(rgb.round(), 0, 255).astype(np.uint8)), (0, band))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=size)
    flag = "ABOVE" if score.abnormal else "below"
    lines = [
        NOT_FOR_DIAGNOSIS,
        f"anomaly score {score.score:.2f} ({score.percentile:.0f}th percentile of normals), "
        f"{flag} operating point {threshold:.2f}",
        "colour: where the score comes from, beyond what it is for normal chests",
    ]
    y = size // 2
    for text, colour in zip(lines, ((255, 255, 0), (255, 255, 0), (255, 255, 255))):
        draw.text((size // 2, y), text, fill=colour, font=font)
        y += line
    # Legend: the colour bar from "as in normals" to "far beyond normals" (the scale's top).
    low, high = "as in normals", "far beyond"
    x0 = size // 2 + int(draw.textlength(low, font=font)) + size // 2
    bar_w = max(40, min(w // 3, w - x0 - int(draw.textlength(high, font=font)) - size))
    ramp = colormaps["inferno"](np.linspace(0, 1, bar_w))[:, :3]
    canvas.paste(Image.fromarray((np.repeat(ramp[None], size, 0) * 255).astype(np.uint8)), (x0, y))
    draw.text((size // 2, y), low, fill=(255, 255, 255), font=font)
    draw.text((x0 + bar_w + size // 2, y), high, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def write_anomaly_map(
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
    sc.DerivationDescription = "anomaly map (score saliency) of an Alpha-GAN over the source image"
    return sc
