"""Checks a received dataset must pass before the node keeps it (PS3.4 B.2.3 statuses)."""

from __future__ import annotations

import re

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_node.dicom.terms import (
    UNCOMPRESSED,
    StoreStatus,
    expected_pixel_bytes,
    is_image_sop_class,
)

TRAILING_PADDING = 0xFFFCFFFC  # Data Set Trailing Padding: carries nothing
REQUIRED_UIDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


UID_COMPONENT = re.compile(r"0|[1-9][0-9]*")
MAX_UID_LENGTH = 64


def uid_problem(value: object) -> str | None:
    """Why `value` is not a valid UID (PS3.5 9.1: dot-separated numeric components without
    leading zeros, at most 64 characters, one value), or None."""
    if isinstance(value, MultiValue | list | tuple):
        return f"has {len(value)} values, a UID has one"
    text = str(value)
    if len(text) > MAX_UID_LENGTH:
        return f"is {len(text)} characters long, a UID has at most {MAX_UID_LENGTH}"
    if not all(UID_COMPONENT.fullmatch(part) for part in text.split(".")):
        return f"{text[:MAX_UID_LENGTH]!r} is not digits and dots without leading zeros"
    return None


class RejectedInstance(Exception):
    """A dataset the node refuses; carries the DIMSE status to answer."""

    def __init__(self, status: StoreStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_dataset(
    ds: Dataset, affected_uid: str | None, transfer_syntax: str, pixel_data_length: int | None
) -> None:
    """Raise RejectedInstance when the dataset breaks the image IOD basics the node relies on.

    `ds`: the header (up to Pixel Data); `pixel_data_length`: the length its Pixel Data
    declares (None: it has none); `affected_uid`: the SOP Instance UID the request
    announced (None when the protocol has no such field).
    """
    if not any(e.tag != TRAILING_PADDING and e.tag.element != 0 for e in ds):
        raise RejectedInstance(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, "empty dataset")
    missing = [k for k in REQUIRED_UIDS if not str(ds.get(k, "") or "").strip()]
    if missing:
        raise RejectedInstance(
            StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"missing {', '.join(missing)}"
        )
    for keyword in REQUIRED_UIDS:
        if problem := uid_problem(ds[keyword].value):
            raise RejectedInstance(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"{keyword} {problem}"
            )
    if affected_uid is not None and ds.SOPInstanceUID != affected_uid:
        raise RejectedInstance(
            StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"SOP Instance UID {ds.SOPInstanceUID!r} differs from the request's {affected_uid!r}",
        )
    if not is_image_sop_class(ds.SOPClassUID):
        raise RejectedInstance(
            StoreStatus.SOP_CLASS_NOT_SUPPORTED,
            f"SOP class {ds.SOPClassUID} ({ds.SOPClassUID.name}) is not an image; this node "
            "stores images only",
        )
    if pixel_data_length is None:
        raise RejectedInstance(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, "no Pixel Data")
    if transfer_syntax in UNCOMPRESSED:
        try:
            expected = expected_pixel_bytes(ds)
        except (AttributeError, ValueError, TypeError) as exc:
            raise RejectedInstance(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"image pixel module incomplete: {exc}",
            ) from exc
        actual = pixel_data_length
        if actual not in (expected, expected + 1):  # +1: the even-length pad byte
            raise RejectedInstance(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"Pixel Data is {actual} bytes, Rows x Columns x samples x bits needs {expected}",
            )
