"""The optional Key Object Selection document (`worker.key_objects`): the images of a study
version at or above the operating point, "Of Interest", so that PACS viewers that show key
images can highlight them."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from dicom_node.results.report import (
    MANUFACTURER,
    NOT_FOR_DIAGNOSIS,
    device_observer,
    result_uid,
)

KO_SERIES_NUMBER = 9903


def write_key_objects(
    flagged: Sequence[Dataset], study_version: int, model_name: str
) -> hd.ko.KeyObjectSelectionDocument:
    """`flagged`: the headers of the images at or above the operating point (at least one)."""
    if not flagged:
        raise ValueError("a key object selection needs at least one flagged image")
    study_uid = flagged[0].StudyInstanceUID
    observer = device_observer(model_name)
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=list(flagged),
        observer_device_context=observer,
        description=f"AI triage: images at or above the operating point - {NOT_FOR_DIAGNOSIS}",
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=list(flagged),
        content=content,
        series_instance_uid=result_uid(study_uid, study_version, "ko-series"),
        series_number=KO_SERIES_NUMBER,
        sop_instance_uid=result_uid(study_uid, study_version, "ko"),
        instance_number=1,
        manufacturer=MANUFACTURER,
    )
