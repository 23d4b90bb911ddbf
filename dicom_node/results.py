"""Result objects for the PACS: a TID 1500 Measurement Report in a Comprehensive 3D SR and a
Secondary Capture difference map per image (IHE AI Results in spirit). Datasets in, highdicom
objects out; no I/O.

UIDs are derived from the study version (`result_uid`), so a retry or a restart produces the
same objects again, never a second set; a new study version gets new UIDs and its SR lists the
earlier SRs in the Predecessor Documents Sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from dicom_node import __version__
from dicom_node.anomaly_model import ImageScore

MANUFACTURER = "dicom-node project"
DEVICE_NAME = "dicom-node"
SCHEME = "99DCMNODE"  # private coding scheme of this project (PS3.16 8.2: 99 prefix)
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"

ANOMALY_SCORE = Code("ANOMALY_SCORE", SCHEME, "Anomaly score")
ANOMALY_PERCENTILE = Code("ANOMALY_PCTL", SCHEME, "Anomaly score percentile among normals")
ANOMALY_FLAG = Code("ANOMALY_FLAG", SCHEME, "Anomaly at operating point")
PLAIN_CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
Z_SCORE = Code("{z-score}", "UCUM", "z-score")
PERCENT = Code("%", "UCUM", "Percent")
STATISTIC_MEANINGS = {
    "recon": "Reconstruction error",
    "recon_lowpass": "Low-frequency reconstruction error",
    "encoder_features": "Encoder feature-matching error",
    "disc_features": "Discriminator feature-matching error",
    "disc": "Discriminator unrealness",
    "code": "Code discriminator prior-likeness",
}


@dataclass(frozen=True)
class Algorithm:
    name: str
    version: str
    parameters: dict[str, str]

    def identification(self) -> hd.sr.AlgorithmIdentification:
        return hd.sr.AlgorithmIdentification(
            name=self.name,
            version=self.version,
            parameters=[f"{k}={v}" for k, v in self.parameters.items()],
        )

    def equipment(self) -> hd.ContributingEquipment:
        return hd.ContributingEquipment(
            manufacturer=MANUFACTURER,
            purpose_of_reference=codes.DCM.ProcessingEquipment,
            manufacturer_model_name=f"{DEVICE_NAME} {self.name}",
            software_versions=[__version__, self.version],
        )


def result_uid(study_uid: str, study_version: int, *parts: str) -> str:
    """Deterministic UID of one result object of one study version."""
    return generate_uid(entropy_srcs=["dicom-node", study_uid, str(study_version), *parts])


def device_uid() -> str:
    return generate_uid(entropy_srcs=["dicom-node", "device"])


def _statistic_code(name: str) -> Code:
    return Code(f"STAT_{name.upper()}"[:16], SCHEME, STATISTIC_MEANINGS.get(name, name))


def write_anomaly_report(
    sources: Sequence[Dataset],
    scores: Sequence[ImageScore],
    algorithm: Algorithm,
    study_version: int,
    previous_reports: Sequence[Dataset] = (),
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report: per image the score, its percentile, each statistic and the flag."""
    if len(sources) != len(scores) or not sources:
        raise ValueError(f"need one score per source image, got {len(sources)} and {len(scores)}")
    study_uid = sources[0].StudyInstanceUID
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(),
            name=DEVICE_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=algorithm.name,
        ),
    )
    algorithm_id = algorithm.identification()
    groups = []
    for i, (ds, score) in enumerate(zip(sources, scores), start=1):
        measurements = [
            hd.sr.Measurement(
                name=ANOMALY_SCORE,
                value=round(score.score, 4),
                unit=Z_SCORE,
                algorithm_id=algorithm_id,
            ),
            hd.sr.Measurement(
                name=ANOMALY_PERCENTILE,
                value=round(score.percentile, 1),
                unit=PERCENT,
                algorithm_id=algorithm_id,
            ),
        ] + [
            hd.sr.Measurement(
                name=_statistic_code(k), value=round(v, 4), unit=Z_SCORE, algorithm_id=algorithm_id
            )
            for k, v in score.statistics.items()
        ]
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=result_uid(study_uid, study_version, "tracking", ds.SOPInstanceUID),
                    identifier=f"image {i}",
                ),
                algorithm_id=algorithm_id,
                measurements=measurements,
                qualitative_evaluations=[
                    hd.sr.QualitativeEvaluation(
                        name=ANOMALY_FLAG,
                        value=codes.SCT.Abnormal if score.abnormal else codes.SCT.Normal,
                    )
                ],
                source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds)],
            )
        )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PLAIN_CHEST_XRAY,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=list(sources),
        content=report,
        series_instance_uid=result_uid(study_uid, study_version, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=result_uid(study_uid, study_version, "sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        previous_versions=list(previous_reports) or None,
        contributing_equipment=[algorithm.equipment()],
        series_description="AI anomaly triage (dicom-node)",
    )


def render_difference_overlay(
    unit_image: np.ndarray, score: ImageScore, threshold: float
) -> np.ndarray:
    """RGB uint8: the image in grey, |x - G(E(x))| as a colour overlay, a legend and the score."""
    h, w = unit_image.shape
    diff = np.asarray(
        Image.fromarray(score.difference_map.astype(np.float32)).resize((w, h), Image.BILINEAR)
    )
    scale = max(float(np.percentile(diff, 99.5)), 1e-6)
    heat = np.clip(diff / scale, 0, 1)
    colours = colormaps["inferno"](heat)[..., :3]
    alpha = 0.55 * heat[..., None]
    grey = np.repeat(unit_image[..., None], 3, axis=2)
    rgb = ((1 - alpha) * grey + alpha * colours) * 255
    image = Image.fromarray(rgb.round().astype(np.uint8))
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
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=result_uid(study_uid, study_version, "sc-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=result_uid(study_uid, study_version, "sc", source.SOPInstanceUID),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=source.get("PatientOrientation") or ("L", "F"),
    )
    sc.Laterality = source.get("Laterality", "")  # Type 2C; empty for an unpaired chest
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = "AI anomaly map - NOT FOR DIAGNOSTIC USE"
    sc.ImageComments = NOT_FOR_DIAGNOSIS
    sc.DerivationDescription = "difference |x - G(E(x))| of an Alpha-GAN over the source image"
    return sc
