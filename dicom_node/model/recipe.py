"""The hyper-parameters of one training run, saved beside the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum


class Architecture(str, Enum):
    ALPHA_GAN = "alpha-gan"
    BIGAN = "bigan"


ALPHA_GAN_STATISTICS = (
    "recon",
    "recon_lowpass",
    "encoder_features",
    "disc_features",
    "disc",
    "code_distance",
    "code",
)
BIGAN_STATISTICS = tuple(s for s in ALPHA_GAN_STATISTICS if s != "code")  # no code critic


AUGMENT_OVERSAMPLE = 4
SENSITIVITY_TARGET = 0.95  # the project's operating point: flag 95% of abnormal images


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
    # Geometric changes a site's images may carry (see the model card). Each image of a batch
    # gets its own, applied at AUGMENT_OVERSAMPLE x image_size before the node's own resize,
    # so the change does not blur the model input more than an acquired one would.
    augment_flip: bool = False  # mirror left-right with probability 1/2
    augment_rotate: float = 0.0  # degrees, uniform in [-r, r]
    augment_scale: float = 0.0  # relative zoom, uniform in [1 - s, 1 + s]
    # Each model input standardised to its own mean and standard deviation (mean +- 2 sd span
    # the networks' [-1, 1]) before the networks see it: a gain or offset of the exposure, or
    # a contrast change, then leaves the input as it was (model card: robustness). False:
    # the picture's own range, as models up to version 1.1 were trained.
    standardise_input: bool = True
    # The discriminator's decision boundary wanders from epoch to epoch; its statistic is the
    # mean over snapshots taken every `disc_snapshot_every` epochs from this fraction of
    # training on (the live discriminator at the last epoch is one of them).
    disc_snapshots_from: float = 0.4
    disc_snapshot_every: int = 4
    seed: int = 0

    @property
    def geometric_augmentation(self) -> bool:
        return self.augment_flip or self.augment_rotate > 0 or self.augment_scale > 0

    @property
    def training_resolution(self) -> int:
        """Size of the training images before augmentation."""
        return (
            self.image_size * AUGMENT_OVERSAMPLE if self.geometric_augmentation else self.image_size
        )

    @property
    def disc_snapshot_epochs(self) -> list[int]:
        first = self.disc_snapshots_from * self.epochs
        return [
            e
            for e in range(1, self.epochs + 1)
            if e >= first and (self.epochs - e) % self.disc_snapshot_every == 0
        ]

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
        d.setdefault("standardise_input", False)  # recipes saved before the field existed
        return cls(**d)
