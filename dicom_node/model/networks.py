"""Networks of the Alpha-GAN (Rosca et al. 2017, arXiv:1706.04987) and of the BiGAN.

DCGAN-style convolutional stacks sized by the image side (a power of two, >= 32): each
down-sampling block halves the side until 4 x 4. The discriminators use spectral norm
(Miyato et al. 2018), which keeps their decision boundary from depending on the random start.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _depth(image_size: int) -> int:
    depth = int(math.log2(image_size)) - 2
    if image_size < 32 or 2 ** (depth + 2) != image_size:
        raise ValueError(f"image_size must be a power of two >= 32, got {image_size}")
    return depth


def _widths(image_size: int, base: int) -> list[int]:
    return [min(base * 2**i, base * 8) for i in range(_depth(image_size))]


class Encoder(nn.Module):
    """E: image (N, 1, S, S) in [-1, 1] -> code (N, z_dim); `features` returns hidden taps."""

    def __init__(self, image_size: int, z_dim: int, base: int = 32) -> None:
        super().__init__()
        widths = _widths(image_size, base)
        blocks: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(widths):
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0)]
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            blocks.append(nn.Sequential(*layers))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c_in, z_dim, 4, 1, 0)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        taps = []
        for block in self.blocks:
            x = block(x)
            taps.append(x)
        return self.head(x).flatten(1), taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[0]


class Generator(nn.Module):
    """G: code (N, z_dim) -> image (N, 1, S, S) in [-1, 1]."""

    def __init__(self, image_size: int, z_dim: int, base: int = 32) -> None:
        super().__init__()
        widths = list(reversed(_widths(image_size, base)))
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], 1, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


def _critic_blocks(image_size: int, base: int) -> nn.ModuleList:
    """Spectral-normalised strided convolutions from the image down to 4 x 4."""
    blocks: list[nn.Module] = []
    c_in = 1
    for c_out in _widths(image_size, base):
        blocks.append(
            nn.Sequential(
                spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)
            )
        )
        c_in = c_out
    return nn.ModuleList(blocks)


class ImageDiscriminator(nn.Module):
    """D: image -> realness logit (N,); `features` also returns the hidden taps."""

    def __init__(self, image_size: int, base: int = 32) -> None:
        super().__init__()
        self.blocks = _critic_blocks(image_size, base)
        self.head = spectral_norm(nn.Conv2d(_widths(image_size, base)[-1], 1, 4, 1, 0))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        taps = []
        for block in self.blocks:
            x = block(x)
            taps.append(x)
        return self.head(x).flatten(), taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[0]


class CodeDiscriminator(nn.Module):
    """C: code (N, z_dim) -> logit that the code was drawn from the prior N(0, I)."""

    def __init__(self, z_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            spectral_norm(nn.Linear(z_dim, hidden)),
            nn.LeakyReLU(0.2, inplace=True),
            spectral_norm(nn.Linear(hidden, hidden)),
            nn.LeakyReLU(0.2, inplace=True),
            spectral_norm(nn.Linear(hidden, 1)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).flatten()


class JointDiscriminator(nn.Module):
    """BiGAN's D(x, z) (Donahue et al. 2017): image branch and code branch joined by an MLP."""

    def __init__(self, image_size: int, z_dim: int, base: int = 32) -> None:
        super().__init__()
        self.blocks = _critic_blocks(image_size, base)
        c_last = _widths(image_size, base)[-1]
        self.code = nn.Sequential(spectral_norm(nn.Linear(z_dim, 256)), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(
            spectral_norm(nn.Linear(c_last * 16 + 256, 512)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Linear(512, 1)),
        )

    def features(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        taps = []
        h = x
        for block in self.blocks:
            h = block(h)
            taps.append(h)
        joint = torch.cat([h.flatten(1), self.code(z)], dim=1)
        return self.joint(joint).flatten(), taps

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.features(x, z)[0]
