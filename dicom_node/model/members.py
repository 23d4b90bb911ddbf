"""One trained GAN and the per-image anomaly statistics it yields.

For an image x with reconstruction x' = G(E(x)) the statistics are (higher = less normal):

- ``recon``: mean |x - x'|, the L1 reconstruction error;
- ``recon_lowpass``: the same on 8 x 8-pixel block means: the error at the scale a GAN can
  reproduce (opacities, effusions), free of the fine detail no reconstruction keeps;
- ``encoder_features``: squared distance of E's hidden layers between x and x';
- ``disc_features``: squared distance of D's hidden layers between x and x';
- ``disc``: minus D's realness logit for x (BiGAN: for the pair (x, E(x))), averaged over
  the discriminator snapshots of the late epochs;
- ``code_distance``: the Mahalanobis distance of the code E(x) to the codes of the training
  normals (their mean and a shrunk covariance, fitted after training: `set_code_distribution`),
  0 until fitted. Unlike the critics' statistics it does not depend on where an adversarial
  game stopped: its AUROC varied by 0.01 between training seeds where D's varied by 0.05
  (model card). Far beyond every normal, it is also the model's domain check (model.typicality);
- ``code``: C's logit that E(x) was drawn from the prior rather than encoded from a normal
  image (Alpha-GAN only). C is trained to tell encoded normals from prior draws, so a code
  it cannot place among the encoded normals is pushed to the prior side: measured on the
  validation split, the sign that says "unlike encoded normals" is the anomalous one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dicom_node.model.networks import (
    CodeDiscriminator,
    Encoder,
    Generator,
    ImageDiscriminator,
    JointDiscriminator,
)
from dicom_node.model.recipe import ALPHA_GAN_STATISTICS, BIGAN_STATISTICS, Architecture, Recipe

LOWPASS_BLOCK = 8
STANDARD_SPAN = 2.0  # standard deviations from an input's mean to the end of [-1, 1]


def feature_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Per-sample mean squared distance between two lists of hidden activations, shape (N,)."""
    per_layer = [(x - y).pow(2).flatten(1).mean(1) for x, y in zip(a, b)]
    return torch.stack(per_layer, 0).mean(0)


@dataclass(frozen=True)
class MemberOutput:
    statistics: dict[str, torch.Tensor]  # name -> (N,)
    reconstruction: torch.Tensor  # (N, 1, S, S) in [-1, 1]
    difference: torch.Tensor  # (N, 1, S, S) |x - x'| in [0, 2]


class GanMember(nn.Module):
    """E, G and the critics of one training run (one seed)."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        s, z, w = recipe.image_size, recipe.z_dim, recipe.base_width
        self.encoder = Encoder(s, z, w)
        self.generator = Generator(s, z, w)
        if recipe.arch is Architecture.ALPHA_GAN:
            self.discriminator: nn.Module = ImageDiscriminator(s, w)
            self.code_discriminator: nn.Module | None = CodeDiscriminator(z)
        else:
            self.discriminator = JointDiscriminator(s, z, w)
            self.code_discriminator = None
        # The training normals' code distribution: distance = |(E(x) - mean) @ whitening|, with
        # whitening @ whitening.T the inverse covariance (a Cholesky factor stays well-defined
        # when stored as float16, where a rounded inverse covariance may not).
        self.register_buffer("code_mean", torch.zeros(z))
        self.register_buffer("code_whitening", torch.zeros(z, z))
        # Frozen copies of D from earlier epochs (filled by training; see Recipe).
        self.disc_snapshots = nn.ModuleList(
            copy.deepcopy(self.discriminator).requires_grad_(False)
            for _ in recipe.disc_snapshot_epochs[:-1]
        )

    def take_disc_snapshot(self, epoch: int) -> None:
        """Copy the live D into its slot if `epoch` is a snapshot epoch (not the last)."""
        epochs = self.recipe.disc_snapshot_epochs[:-1]
        if epoch in epochs:
            self.disc_snapshots[epochs.index(epoch)].load_state_dict(
                self.discriminator.state_dict()
            )

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs (N, 1, S, S) as the networks see them (Recipe.standardise_input)."""
        if not self.recipe.standardise_input:
            return x
        mean = x.mean(dim=(-2, -1), keepdim=True)
        sd = x.std(dim=(-2, -1), keepdim=True).clamp(min=1e-3)
        return ((x - mean) / (STANDARD_SPAN * sd)).clamp(-1, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code E(x) of model inputs."""
        return self.encoder(self.prepare(x))

    def set_code_distribution(self, mean: torch.Tensor, precision: torch.Tensor) -> None:
        """The training normals' mean code (z,) and inverse code covariance (z, z)."""
        self.code_mean.copy_(mean)
        self.code_whitening.copy_(torch.linalg.cholesky(precision.double()).to(precision.dtype))

    def code_distance(self, code: torch.Tensor) -> torch.Tensor:
        """(N,) Mahalanobis distance of codes (N, z) to the training normals' codes."""
        return ((code - self.code_mean) @ self.code_whitening).norm(dim=1)

    @property
    def statistic_names(self) -> tuple[str, ...]:
        if self.recipe.arch is Architecture.ALPHA_GAN:
            return ALPHA_GAN_STATISTICS
        return BIGAN_STATISTICS

    def critic_features(
        self, x: torch.Tensor, code: torch.Tensor, critic: nn.Module | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        critic = critic or self.discriminator
        if self.recipe.arch is Architecture.ALPHA_GAN:
            return critic.features(x)
        return critic.features(x, code)

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> MemberOutput:
        """Statistics of a batch of model inputs (N, 1, S, S) in [-1, 1]; call in eval mode."""
        return self.statistics(x)

    def statistics(self, x: torch.Tensor) -> MemberOutput:
        """`analyse`, differentiable with respect to `x` (for the explaining map)."""
        x = self.prepare(x)
        code, enc_taps = self.encoder.features(x)
        rec = self.generator(code)
        rec_code, rec_enc_taps = self.encoder.features(rec)
        logit, disc_taps = self.critic_features(x, code)
        _, rec_disc_taps = self.critic_features(rec, rec_code)
        if len(self.disc_snapshots):  # spectral norm keeps the snapshots' logits on one scale
            logits = [logit] + [self.critic_features(x, code, d)[0] for d in self.disc_snapshots]
            logit = torch.stack(logits).mean(0)
        diff = (x - rec).abs()
        stats = {
            "recon": diff.flatten(1).mean(1),
            "recon_lowpass": (F.avg_pool2d(x, LOWPASS_BLOCK) - F.avg_pool2d(rec, LOWPASS_BLOCK))
            .abs()
            .flatten(1)
            .mean(1),
            "encoder_features": feature_distance(enc_taps, rec_enc_taps),
            "disc_features": feature_distance(disc_taps, rec_disc_taps),
            "disc": -logit,
            "code_distance": self.code_distance(code),
        }
        if self.code_discriminator is not None:
            stats["code"] = self.code_discriminator(code)
        return MemberOutput(stats, rec, diff)
