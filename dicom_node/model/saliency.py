"""The anomaly map: where the score comes from.

The gradient of the combined score with respect to each input pixel, through every member
(encoder, generator, discriminator and its snapshots, code discriminator), in magnitude and
smoothed by a Gaussian of SIGMA pixels: how strongly each part of the image moves the score.
Every chest has its own pattern of this (the mediastinum, the diaphragm, the borders), so the
map is the excess over the mean of the held-out normals, from 0 at the 95th percentile of the
normals' own excess to 1 at its 99.5th (MAP_RANGE): 95% of a held-out normal's map is empty.

The earlier map, |x - G(E(x))| of a 32 px reconstruction, did not carry the score (AUROC 0.65
on val) and lay hardly more in the lung fields for pneumonia than for normals (+0.008 of its
mass); this one lies there more (+0.092; model card: "The anomaly map").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dicom_node.model.calibration import Calibration
from dicom_node.model.members import GanMember

SIGMA = 1.0  # model pixels
MAP_RANGE = (0.95, 0.995)  # quantiles of the held-out normals' excess: map 0 and map 1
BATCH = 64


def _gaussian(sigma: float) -> torch.Tensor:
    radius = int(np.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    return (k[:, None] * k[None, :])[None, None]


def saliency(
    members: Sequence[GanMember], calibration: Calibration, x: torch.Tensor
) -> torch.Tensor:
    """Smoothed |d score / d pixel| of model inputs (N, 1, S, S): (N, S, S) on the CPU."""
    kernel = _gaussian(SIGMA)
    out = []
    with torch.enable_grad():
        for start in range(0, len(x), BATCH):
            batch = x[start : start + BATCH].detach().clone().requires_grad_(True)
            stats = [m.statistics(batch).statistics for m in members]
            score = calibration.combine(calibration.standardise(stats))
            (grad,) = torch.autograd.grad(score.sum(), batch)
            pad = kernel.shape[-1] // 2
            smooth = F.conv2d(F.pad(grad.abs(), (pad,) * 4, mode="replicate"), kernel.to(grad))
            out.append(smooth[:, 0].detach().cpu())
    return torch.cat(out)


def fit_saliency(
    members: Sequence[GanMember], calibration: Calibration, held_x: torch.Tensor
) -> tuple[tuple[float, ...], tuple[float, float]]:
    """The held-out normals' mean saliency (flattened) and the MAP_RANGE quantiles of their
    excess over it: the `saliency_baseline` and `saliency_range` of a calibration."""
    maps = saliency(members, calibration, held_x)
    baseline = maps.mean(0)
    excess = (maps - baseline).flatten()
    low, high = (float(v) for v in torch.quantile(excess, torch.tensor(MAP_RANGE)))
    return tuple(baseline.flatten().tolist()), (low, max(high, low + 1e-12))


def anomaly_maps(
    members: Sequence[GanMember], calibration: Calibration, x: torch.Tensor
) -> np.ndarray:
    """(N, S, S) float32 in [0, 1] for model inputs (N, 1, S, S), as the image is oriented."""
    maps = saliency(members, calibration, x)
    if calibration.saliency_baseline is None:  # an older calibration: the image's own scale
        peak = maps.flatten(1).quantile(0.995, dim=1).clamp(min=1e-12)
        return (maps / peak[:, None, None]).clamp(0, 1).numpy()
    baseline = torch.tensor(calibration.saliency_baseline).reshape(maps.shape[-2:])
    low, high = calibration.saliency_range
    return ((maps - baseline - low) / (high - low)).clamp(0, 1).numpy()
