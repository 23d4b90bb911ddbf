"""The patients and images a model was trained on, as its model.json declares them, and the
check of one image's DICOM header against them: an image outside is never ranked."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

AGE_STRING = re.compile(r"^(\d{3})([DWMY])$")  # PS3.5 AS: nnnD, nnnW, nnnM or nnnY
DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


@dataclass(frozen=True)
class Population:
    min_age_years: float
    max_age_years: float  # inclusive: up to the day before the next birthday
    modalities: tuple[str, ...]
    views: tuple[str, ...]  # View Position values; an image without one is not refused
    source: str  # where the population is stated (the training data's publication)

    @classmethod
    def from_dict(cls, d: dict) -> Population:
        return cls(
            float(d["min_age_years"]),
            float(d["max_age_years"]),
            tuple(d["modalities"]),
            tuple(d["views"]),
            str(d.get("source", "")),
        )

    def to_dict(self) -> dict:
        return {
            "min_age_years": self.min_age_years,
            "max_age_years": self.max_age_years,
            "modalities": list(self.modalities),
            "views": list(self.views),
            "source": self.source,
        }

    @property
    def ages(self) -> str:
        return f"{self.min_age_years:g}-{self.max_age_years:g} y"

    def problem(self, ds: Dataset) -> str | None:
        """Why the image is outside the population, or None. An unknown age is not a
        problem here (`age_of` says whether it is known; the node's policy decides)."""
        modality = str(ds.get("Modality", "") or "").upper()
        if modality not in self.modalities:
            return f"modality {modality or 'unknown'} (model: {', '.join(self.modalities)})"
        age = age_of(ds)
        if age is not None and not self.min_age_years <= age < self.max_age_years + 1:
            return f"age {_years(age)} (model: {self.ages})"
        view = str(ds.get("ViewPosition", "") or "").upper()
        if view and view not in self.views:
            return f"view {view[:16]} (model: {', '.join(self.views)})"
        return None


def age_of(ds: Dataset) -> float | None:
    """The patient's age in years at the study: Patient Age, else Patient's Birth Date and the
    Study (or Acquisition, or Content) Date; None when the header does not say."""
    match = AGE_STRING.match(str(ds.get("PatientAge", "") or ""))
    if match:
        return int(match.group(1)) * DAYS_PER[match.group(2)] / 365.25
    born = _date(ds.get("PatientBirthDate"))
    on = next(
        (
            d
            for d in (_date(ds.get(k)) for k in ("StudyDate", "AcquisitionDate", "ContentDate"))
            if d
        ),
        None,
    )
    if born is None or on is None or on < born:
        return None
    return (on - born).days / 365.25


def _date(value) -> dt.date | None:
    text = str(value or "").strip()
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
    except ValueError:
        return None


def _years(age: float) -> str:
    return f"{int(age)} y" if age >= 1 else f"{int(age * 12)} mo"
