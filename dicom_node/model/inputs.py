"""Resize a [0, 1] picture to the model's square input in [-1, 1].

The training set (zhanglab-cxr) was squashed to a square without keeping the aspect ratio, so
DICOM images are squashed the same way: the same anatomy lands on the same model pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_model_input(unit: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) or (N, H, W) in [0, 1] -> (N, 1, size, size) float32 in [-1, 1]."""
    x = torch.as_tensor(unit, dtype=torch.float32)
    if x.ndim == 2:
        x = x[None]
    x = x[:, None]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return (x.clamp(0, 1) * 2 - 1).contiguous()
