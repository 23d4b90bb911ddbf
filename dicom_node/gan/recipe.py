"""The hyper-parameters of one training run, saved beside the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum


class Architecture(str, Enum):
    ALPHA_GAN = "alpha-gan"
    BIGAN = "bigan"


@dataclass(frozen=True)
class Recipe:
    arch: Architecture = Architecture.ALPHA_GAN
    image_size: int = 64
    z_dim: int = 64
    base_width: int = 32
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    recon_weight: float = 20.0  # lambda of Rosca et al.
    feature_match_weight: float = 1.0  # D-feature matching for G(E(x)); 0 = plain Alpha-GAN
    augment_shift: int = 4  # pixels of random translation at image_size; 0 = none
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = self.arch.value
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        d = dict(d)
        d["arch"] = Architecture(d["arch"])
        d["betas"] = tuple(d["betas"])
        return cls(**d)
