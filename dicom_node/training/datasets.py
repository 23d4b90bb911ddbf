"""Image sets for training and evaluation: a zhanglab-style .npz or a folder of DICOM files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicom_node.errors import DicomNodeError, ImageDecodeError
from dicom_node.model.inputs import to_model_input
from dicom_node.model.pixels import read_unit_image, unit_from_values

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSet:
    images: list[np.ndarray] | np.ndarray  # (H, W) pictures in [0, 1], or an npz's uint8
    labels: np.ndarray  # 0 normal, 1 abnormal
    groups: np.ndarray  # patient id per image, so splits never cut a patient in two

    def __len__(self) -> int:
        return len(self.labels)

    def model_inputs(self, size: int, indices: np.ndarray | None = None):
        """The model's input, through the node's own path: an npz's stored pixels are
        stretched to their range exactly as a DICOM image's are (`unit_from_values`)."""
        import torch

        idx = np.arange(len(self)) if indices is None else indices
        if isinstance(self.images, np.ndarray):
            units = np.stack([unit_from_values(self.images[i], source=f"image {i}") for i in idx])
            return torch.cat(
                [to_model_input(units[i : i + 256], size) for i in range(0, len(units), 256)]
            )
        return torch.cat([to_model_input(self.images[i], size) for i in idx])


def load_image_set(path: str | Path) -> ImageSet:
    path = Path(path)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as d:
            images = d["images"]
            labels = d["labels"] if "labels" in d else np.zeros(len(images), np.uint8)
            groups = d["patient_ids"] if "patient_ids" in d else np.arange(len(images)).astype(str)
        return ImageSet(images, labels.astype(np.int64), groups)
    if path.is_dir():
        return _load_dicom_folder(path)
    raise DicomNodeError(f"{path}: expected a .npz file or a folder of DICOM files")


def _load_dicom_folder(folder: Path) -> ImageSet:
    """Every readable image below `folder` counts as a normal; unreadable files are logged."""
    import pydicom

    images, groups = [], []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            images.append(read_unit_image(file))
        except ImageDecodeError as exc:
            log.warning("skipping %s", exc)
            continue
        groups.append(str(pydicom.dcmread(file, stop_before_pixels=True).get("PatientID", file)))
    if not images:
        raise DicomNodeError(f"{folder}: no decodable DICOM image found")
    return ImageSet(images, np.zeros(len(images), np.int64), np.asarray(groups))


def split_held_out(
    groups: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out) with whole patients held out; the split seed is fixed."""
    unique = np.unique(groups)
    if unique.size < 3:
        raise DicomNodeError(
            f"{unique.size} patient(s): calibration needs normal images of at least 3 patients"
        )
    rng = np.random.default_rng(seed)
    n_held = min(unique.size - 1, max(2, int(round(fraction * unique.size))))
    held_groups = set(rng.choice(unique, size=n_held, replace=False))
    held = np.array([g in held_groups for g in groups])
    return np.flatnonzero(~held), np.flatnonzero(held)
