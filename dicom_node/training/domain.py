"""Fitting the domain check (`model.typicality`) and the members' code distribution it and
the `code_distance` statistic use: the training normals' codes per member (Ledoit-Wolf shrunk
covariance), the held-out normals' distances, and the threshold."""

from __future__ import annotations

import logging

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from dicom_node.model.ensemble import AnomalyModel
from dicom_node.model.typicality import Typicality

# Refused beyond this many times the farthest held-out normal. Chosen on val.npz: at 2.6 no
# val image (normal or pneumonia) was refused, while inverted images, synthetic pictures and
# the extremity radiograph were (model card); lower factors began to refuse pneumonia.
log = logging.getLogger(__name__)
THRESHOLD_FACTOR = 2.6
MIN_HELD_OUT = 30  # fewer held-out normals say too little about how far normals lie


@torch.no_grad()
def fit_code_distributions(model: AnomalyModel, train_x: torch.Tensor) -> None:
    """Each member's `code_mean` and `code_whitening` from its codes of the training normals."""
    for member in model.members:
        codes = member.encode(train_x.to(model.device)).double().cpu().numpy()
        fit = LedoitWolf().fit(codes)
        member.set_code_distribution(
            torch.tensor(fit.location_, dtype=torch.float32),
            torch.tensor(fit.precision_, dtype=torch.float32),
        )


def fit_typicality(model: AnomalyModel, held_x: torch.Tensor) -> Typicality | None:
    """None (no domain check, with a warning) with fewer than MIN_HELD_OUT held-out normals.
    Fit the code distributions first."""
    if len(held_x) < MIN_HELD_OUT:
        log.warning(
            "%d held-out normals: no domain check (it needs at least %d)", len(held_x), MIN_HELD_OUT
        )
        return None
    held = sorted(float(d) for d in model.code_distances(held_x))
    return Typicality(held, THRESHOLD_FACTOR * held[-1])


def constructed_unlike(normals: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Images unlike the training data, made from in-domain model inputs (N, 1, S, S) in
    [-1, 1]: flipped, upside down, inverted, cropped, and synthetic pictures."""
    size = normals.shape[-1]
    cut = size // 5
    generator = torch.Generator().manual_seed(seed)
    n = len(normals)
    blobs = torch.rand(n, 1, 4, 4, generator=generator) * 2 - 1
    return {
        "flipped left-right": torch.flip(normals, dims=[-1]),
        "upside down": torch.flip(normals, dims=[-2]),
        "inverted": -normals,
        "central 60% crop": torch.nn.functional.interpolate(
            normals[..., cut : size - cut, cut : size - cut], size=(size, size), mode="bilinear"
        ),
        "uniform noise": torch.rand(normals.shape, generator=generator) * 2 - 1,
        "smooth synthetic picture": torch.nn.functional.interpolate(
            blobs, size=(size, size), mode="bicubic"
        ).clamp(-1, 1),
        "linear gradient": torch.linspace(-1, 1, size).expand(n, 1, size, size).clone(),
    }


def domain_report(model: AnomalyModel, x: torch.Tensor, labels: np.ndarray) -> dict:
    """Refused shares: of the labelled images as they are (false refusals), and of images
    made unlike the training data from the normals among them."""
    t = model.typicality

    def refused(batch: torch.Tensor) -> np.ndarray:
        return model.code_distances(batch) > t.threshold

    as_they_are = refused(x)
    made = constructed_unlike(x[torch.as_tensor(labels == 0)])
    return {
        "threshold": round(t.threshold, 2),
        "refused_normal": round(float(as_they_are[labels == 0].mean()), 4),
        "refused_abnormal": round(float(as_they_are[labels == 1].mean()), 4),
        "refused_unlike": {k: round(float(refused(v).mean()), 4) for k, v in made.items()},
    }
