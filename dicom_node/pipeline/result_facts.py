"""What a scored study's result says, as plain data kept with the study (JSON): the HL7
messages to the RIS are made from it, when they are sent or previewed."""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

from dicom_node.index.records import ResultObjectRecord
from dicom_node.index.schema import Priority, ResultKind
from dicom_node.model.scores import ImageScore


def result_facts(
    header: Dataset,
    scores: Sequence[ImageScore],
    priority: Priority,
    objects: Sequence[ResultObjectRecord],
    replaces: Sequence[str],
    model: str,
    model_version: str,
    threshold: float,
    version: int,
) -> dict:
    """`header`: the study's first scored image (decoded, as the results were written);
    `replaces`: the SOP Instance UIDs of the earlier versions' reports."""
    best = max(range(len(scores)), key=lambda i: scores[i].score)
    report = next(o for o in objects if o.kind is ResultKind.REPORT)
    return {
        "patient_id": str(header.get("PatientID", "") or ""),
        "patient_name": str(header.get("PatientName", "") or ""),
        "birth_date": str(header.get("PatientBirthDate", "") or ""),
        "sex": str(header.get("PatientSex", "") or ""),
        "accession": str(header.get("AccessionNumber", "") or ""),
        "study_uid": str(header.StudyInstanceUID),
        "study_date": str(header.get("StudyDate", "") or ""),
        "study_time": str(header.get("StudyTime", "") or "").split(".")[0],
        "priority": priority.value,
        "score": round(scores[best].score, 3),
        "percentile": round(scores[best].percentile, 1),
        "abnormal": any(s.abnormal for s in scores),
        "threshold": round(threshold, 3),
        "images": len(scores),
        "model": model,
        "model_version": model_version,
        "sr": {
            "study": str(header.StudyInstanceUID),
            "series": report.series_uid,
            "sop": report.sop_instance_uid,
        },
        "version": version,
        "replaces": list(replaces),
    }
