"""Losses of the Alpha-GAN and BiGAN objectives (non-saturating GAN losses on logits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def real_loss(logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(logit): small when the critic calls the input real."""
    return F.softplus(-logits).mean()


def fake_loss(logits: torch.Tensor) -> torch.Tensor:
    """-log (1 - sigmoid(logit)): small when the critic calls the input fake."""
    return F.softplus(logits).mean()
