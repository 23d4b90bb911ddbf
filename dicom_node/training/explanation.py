"""Does the anomaly map point at the lungs? The share of each image's map that lies inside the
lung fields, for abnormal and for normal images, and the difference with a patient-grouped
95% interval; beside it the same figure for the reconstruction error |x - G(E(x))|, the map
the node drew before.

The lung fields are one mask for the whole set, from image statistics and no labels: the two
largest regions darker than LUNG_PERCENTILE of the mean image inside the central box (the
images of a set are framed alike; zhanglab-cxr is squashed to one geometry). A mask of each
image's own dark regions would shrink where pneumonia whitens the lung, which is where the map
should point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from dicom_node.model.ensemble import AnomalyModel, Assessment
from dicom_node.training.bootstrap import patient_resamples

LUNG_PERCENTILE = 40
CENTRAL_BOX = (0.15, 0.85, 0.16, 0.84)  # top, bottom, left, right, as fractions of the side


def lung_fields(mean_image: np.ndarray) -> np.ndarray:
    """Boolean mask (H, W) of the two lung fields of a set's mean [0, 1] image."""
    h, w = mean_image.shape
    smooth = ndimage.gaussian_filter(mean_image.astype(np.float64), max(1.0, h / 112))
    top, bottom, left, right = CENTRAL_BOX
    box = np.zeros((h, w), bool)
    box[int(top * h) : int(bottom * h), int(left * w) : int(right * w)] = True
    dark = (smooth < np.percentile(smooth[box], LUNG_PERCENTILE)) & box
    labelled, n = ndimage.label(dark)
    if n == 0:
        return dark
    sizes = ndimage.sum(dark, labelled, range(1, n + 1))
    return ndimage.binary_fill_holes(np.isin(labelled, np.argsort(sizes)[-2:] + 1))


def share_inside(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image (N,): the map's mass inside `mask` over its total mass (maps (N, S, S) >= 0;
    the mask is averaged down to S x S)."""
    size = maps.shape[-1]
    small = F.adaptive_avg_pool2d(torch.as_tensor(mask, dtype=torch.float32)[None], size)[0]
    total = maps.reshape(len(maps), -1).sum(1)
    inside = (maps * small.numpy()).reshape(len(maps), -1).sum(1)
    return np.where(total > 0, inside / np.maximum(total, 1e-12), np.nan)


def _difference(share: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    ok = ~np.isnan(share)
    point = share[ok & (labels == 1)].mean() - share[ok & (labels == 0)].mean()
    found = []
    for pick in patient_resamples(groups):
        s, y = share[pick], labels[pick]
        keep = ~np.isnan(s)
        if (y[keep] == 0).any() and (y[keep] == 1).any():
            found.append(s[keep & (y == 1)].mean() - s[keep & (y == 0)].mean())
    return {
        "abnormal": round(float(share[ok & (labels == 1)].mean()), 4),
        "normal": round(float(share[ok & (labels == 0)].mean()), 4),
        "difference": round(float(point), 4),
        "difference_ci95": [round(float(np.percentile(found, q)), 4) for q in (2.5, 97.5)],
        "empty_maps": int((~ok).sum()),
    }


def map_report(
    model: AnomalyModel,
    x: torch.Tensor,
    assessed: Assessment,
    units_mean: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    plots: Path | None = None,
) -> dict:
    """The anomaly map's share inside the lung fields (abnormal vs normal), and the
    reconstruction error's as the reference. `assessed`: the model's assessment of `x`;
    `units_mean`: the set's mean [0, 1] image."""
    maps = model.anomaly_maps(x, assessed)
    reconstruction = assessed.raw.difference[:, 0].numpy()
    mask = lung_fields(units_mean)
    report = {
        "lung_fields": f"mean image's two largest regions below its {LUNG_PERCENTILE}th "
        "percentile in the central box; one mask for the set",
        "lung_field_area": round(float(mask.mean()), 3),
        "anomaly_map": _difference(share_inside(maps, mask), labels, groups),
        "reference_reconstruction_error": _difference(
            share_inside(reconstruction, mask), labels, groups
        ),
    }
    if plots is not None:
        from dicom_node.training.plots import save_anomaly_maps

        save_anomaly_maps(
            x, maps, mask, labels, plots / f"anomaly_maps_{model.name}.png", model.name
        )
    return report
