"""Training steps of the Alpha-GAN (Rosca et al. 2017, Algorithm 1) and the BiGAN.

Each network has its own optimiser and its own loss: E and G share the reconstruction term
but get separate gradients, so one network's adversarial term never moves another's weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dicom_node.model.inputs import to_model_input
from dicom_node.model.members import GanMember, feature_distance
from dicom_node.model.recipe import Architecture, Recipe
from dicom_node.training.losses import fake_loss, real_loss


@dataclass
class Optimisers:
    by_net: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {k: v.state_dict() for k, v in self.by_net.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            self.by_net[k].load_state_dict(v)


def make_optimisers(member: GanMember) -> Optimisers:
    r = member.recipe
    nets: dict[str, nn.Module] = {
        "encoder": member.encoder,
        "generator": member.generator,
        "discriminator": member.discriminator,
    }
    if member.code_discriminator is not None:
        nets["code_discriminator"] = member.code_discriminator
    return Optimisers(
        {k: torch.optim.Adam(n.parameters(), r.lr, betas=r.betas) for k, n in nets.items()}
    )


def augment(x: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """A training batch (N, 1, R, R) at `recipe.training_resolution` -> model inputs
    (N, 1, S, S): each image's own flip, rotation and zoom (reflected at the border), the
    node's own resize to S, then one random translation of the batch by up to
    `augment_shift` pixels (positioning varies per site)."""
    if recipe.geometric_augmentation:
        x = to_model_input((_geometric(x, recipe, generator)[:, 0] + 1) / 2, recipe.image_size)
    return _shift(x, recipe.augment_shift, generator)


def _geometric(x: torch.Tensor, r: Recipe, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    uniform = torch.rand(n, 3, generator=generator) * 2 - 1  # each in [-1, 1]
    angle = uniform[:, 0] * math.radians(r.augment_rotate)
    zoom = 1 + uniform[:, 1] * r.augment_scale
    mirror = torch.where(uniform[:, 2] < 0, -1.0, 1.0) if r.augment_flip else torch.ones(n)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * mirror, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * mirror, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


def _shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + h, dx : dx + w]


def _step(
    optimiser: torch.optim.Optimizer, net: nn.Module, loss: torch.Tensor, retain: bool
) -> None:
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=retain)
    for p, g in zip(params, grads):
        p.grad = g
    optimiser.step()


def alpha_gan_step(member: GanMember, opt: Optimisers, x: torch.Tensor) -> dict[str, float]:
    r = member.recipe
    E, G, D, C = member.encoder, member.generator, member.discriminator, member.code_discriminator
    z_prior = torch.randn(x.shape[0], r.z_dim, device=x.device)

    # E and G: reconstruction + adversarial terms, each network with its own loss.
    code = E(x)
    rec = G(code)
    gen = G(z_prior)
    recon = (x - rec).abs().mean()
    logit_rec, taps_rec = D.features(rec)
    logit_gen = D(gen)
    _, taps_real = D.features(x)
    fm = feature_distance([t.detach() for t in taps_real], taps_rec).mean()
    loss_e = r.recon_weight * recon + real_loss(C(code))
    loss_g = (
        r.recon_weight * recon
        + real_loss(logit_rec)
        + real_loss(logit_gen)
        + r.feature_match_weight * fm
    )
    _step(opt.by_net["encoder"], E, loss_e, retain=True)
    _step(opt.by_net["generator"], G, loss_g, retain=False)

    # D: real x against both kinds of fake.
    loss_d = real_loss(D(x)) + 0.5 * (fake_loss(D(rec.detach())) + fake_loss(D(gen.detach())))
    _step(opt.by_net["discriminator"], D, loss_d, retain=False)

    # C: prior codes against encoded codes.
    loss_c = real_loss(C(z_prior)) + fake_loss(C(code.detach()))
    _step(opt.by_net["code_discriminator"], C, loss_c, retain=False)
    return {
        "recon": recon.item(),
        "feature_match": fm.item(),
        "loss_e": loss_e.item(),
        "loss_g": loss_g.item(),
        "loss_d": loss_d.item(),
        "loss_c": loss_c.item(),
    }


def bigan_step(member: GanMember, opt: Optimisers, x: torch.Tensor) -> dict[str, float]:
    r = member.recipe
    E, G, D = member.encoder, member.generator, member.discriminator
    z_prior = torch.randn(x.shape[0], r.z_dim, device=x.device)
    code = E(x)
    gen = G(z_prior)
    loss_d = real_loss(D(x, code.detach())) + fake_loss(D(gen.detach(), z_prior))
    _step(opt.by_net["discriminator"], D, loss_d, retain=False)
    loss_e = fake_loss(D(x, code))
    loss_g = real_loss(D(gen, z_prior))
    _step(opt.by_net["encoder"], E, loss_e, retain=False)
    _step(opt.by_net["generator"], G, loss_g, retain=False)
    with torch.no_grad():
        recon = (x - G(code)).abs().mean()
    return {
        "recon": recon.item(),
        "loss_e": loss_e.item(),
        "loss_g": loss_g.item(),
        "loss_d": loss_d.item(),
    }


def train_epoch(
    member: GanMember,
    opt: Optimisers,
    images: torch.Tensor,
    generator: torch.Generator,
) -> Iterator[dict[str, float]]:
    """One pass over `images` (N, 1, R, R) in [-1, 1] at `training_resolution`, in shuffled
    batches; yields step losses."""
    r = member.recipe
    step = alpha_gan_step if r.arch is Architecture.ALPHA_GAN else bigan_step
    member.train()
    order = torch.randperm(images.shape[0], generator=generator)
    device = next(member.parameters()).device
    for start in range(0, len(order) - r.batch_size + 1, r.batch_size):
        batch = images[order[start : start + r.batch_size]]
        batch = member.prepare(augment(batch, r, generator).to(device))
        yield step(member, opt, batch)


@torch.no_grad()
def sample_diversity(member: GanMember, n: int = 64) -> float:
    """Mean pairwise L1 distance between samples G(z): near zero means mode collapse."""
    member.eval()
    device = next(member.parameters()).device
    x = member.generator(torch.randn(n, member.recipe.z_dim, device=device)).flatten(1)
    return torch.cdist(x, x, p=1).sum().item() / (n * (n - 1) * x.shape[1])
