"""How much harmless changes move the flag: the fraction of normals flagged at the operating
point on the images as stored, and after each change to the stored pixels (brightness,
contrast, gamma, a horizontal flip, a small rotation, a crop), in percentage points, through
the node's own path from pixels to model input."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dicom_node.model.ensemble import AnomalyModel
from dicom_node.model.inputs import to_model_input
from dicom_node.model.pixels import unit_from_values

# The limits the project set for a shipped model (points of normals flagged).
LIMITS = {"brightness": 3.0, "contrast": 3.0, "flip": 10.0}


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _crop(x: torch.Tensor, keep: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    dy, dx = int(round(h * (1 - keep) / 2)), int(round(w * (1 - keep) / 2))
    inner = x[..., dy : h - dy, dx : w - dx]
    return F.interpolate(inner, size=(h, w), mode="bilinear", align_corners=False)


def _contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * factor + mean


# Each change acts on the stored 8-bit values (N, 1, H, W), as a different exposure or
# processing would have stored them (values clipped to 0-255), before the node's own path.
CHANGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "brightness +5%": lambda x: x + 0.05 * 255,
    "brightness -5%": lambda x: x - 0.05 * 255,
    "contrast +5%": lambda x: _contrast(x, 1.05),
    "contrast -5%": lambda x: _contrast(x, 0.95),
    "gamma 0.9": lambda x: 255 * (x / 255).clamp(0, 1) ** 0.9,
    "gamma 1.1": lambda x: 255 * (x / 255).clamp(0, 1) ** 1.1,
    "flip": lambda x: torch.flip(x, dims=[-1]),
    "rotate 5 degrees": lambda x: _rotate(x, 5.0),
    "crop 95%": lambda x: _crop(x, 0.95),
}


def robustness(model: AnomalyModel, stored: np.ndarray) -> dict:
    """`stored`: the normals' 8-bit pixels (N, H, W). Normals flagged (percent) as they are
    and after each change, through the node's path (`unit_from_values`, `to_model_input`);
    the change in points; whether the project's limits hold."""
    values = torch.as_tensor(stored, dtype=torch.float32)[:, None]

    def flagged(changed: torch.Tensor) -> float:
        pixels = changed.clamp(0, 255).round()[:, 0].numpy()
        x = torch.cat([to_model_input(unit_from_values(p), model.image_size) for p in pixels])
        scores = model.assess(x).combined.numpy()
        return round(float((scores >= model.calibration.threshold).mean() * 100), 1)

    normals = values
    base = flagged(normals)
    changes = {}
    for name, change in CHANGES.items():
        after = flagged(change(normals))
        changes[name] = {"flagged_pct": after, "change_points": round(after - base, 1)}
    worst = {
        kind: max(abs(v["change_points"]) for k, v in changes.items() if k.startswith(kind))
        for kind in LIMITS
    }
    return {
        "normals": int(len(stored)),
        "flagged_pct": base,
        "changes": changes,
        "limits_points": LIMITS,
        "within_limits": {kind: worst[kind] <= LIMITS[kind] for kind in LIMITS},
    }
