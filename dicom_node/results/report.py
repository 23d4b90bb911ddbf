"""The anomaly report for the PACS: a TID 1500 Measurement Report in a Comprehensive 3D SR
(PS3.16 TID 1500, IHE AI Results in spirit). Datasets in, a highdicom object out; no I/O.

UIDs are derived from the study version (`result_uid`), so a retry or a restart produces the
same objects again, never a second set; a new study version gets new UIDs and its SR lists the
earlier SRs in the Predecessor Documents Sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from dicom_node import __version__
from dicom_node.model.scores import ImageScore

MANUFACTURER = "dicom-node project"
DEVICE_NAME = "dicom-node"
SCHEME = "99DCMNODE"  # private coding scheme of this project (PS3.16 8.2: 99 prefix)
SR_SERIES_NUMBER = 9901
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"

ANOMALY_SCORE = Code("ANOMALY_SCORE", SCHEME, "Anomaly score")
ANOMALY_PERCENTILE = Code("ANOMALY_PCTL", SCHEME, "Anomaly score percentile among normals")
ANOMALY_FLAG = Code("ANOMALY_FLAG", SCHEME, "Anomaly at operating point")
TRIAGE_PRIORITY = Code("TRIAGE_PRIORITY", SCHEME, "Triage priority")
URGENT = Code("URGENT", SCHEME, "Urgent")
ROUTINE = Code("ROUTINE", SCHEME, "Routine")
PLAIN_CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
Z_SCORE = Code("{z-score}", "UCUM", "z-score")
PERCENT = Code("%", "UCUM", "Percent")
STATISTIC_MEANINGS = {
    "recon": "Reconstruction error",
    "recon_lowpass": "Low-frequency reconstruction error",
    "encoder_features": "Encoder feature-matching error",
    "disc_features": "Discriminator feature-matching error",
    "disc": "Discriminator unrealness",
    "code_distance": "Code distance to training normals",
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


def device_observer(model_name: str) -> hd.sr.ObserverContext:
    """This device as the observer of the documents it writes."""
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(),
            name=DEVICE_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=model_name,
        ),
    )


def write_anomaly_report(
    sources: Sequence[Dataset],
    scores: Sequence[ImageScore],
    algorithm: Algorithm,
    study_version: int,
    previous_reports: Sequence[Dataset] = (),
    urgent: bool = False,
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report: per image the score, its percentile, each statistic and the flag;
    and a group for the study with its triage priority (urgent or routine)."""
    if len(sources) != len(scores) or not sources:
        raise ValueError(f"need one score per source image, got {len(sources)} and {len(scores)}")
    study_uid = sources[0].StudyInstanceUID
    observer = device_observer(algorithm.name)
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
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=result_uid(study_uid, study_version, "tracking", "study"),
                identifier="study triage",
            ),
            algorithm_id=algorithm_id,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(
                    name=TRIAGE_PRIORITY, value=URGENT if urgent else ROUTINE
                )
            ],
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
