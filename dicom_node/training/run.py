"""`dicom-node train`: trains the ensemble members, writes diagnostics, grids and the model.

Layout of the output directory::

    DIR/model.json, DIR/weights.safetensors   the trained, calibrated model (model.ensemble)
    DIR/checkpoints/memberK.pt                 resumable state of member K (weights_only load)
    DIR/diagnostics.jsonl                      one line per member and epoch
    DIR/samples/memberK_epochNNN.png           x | G(E(x)) pairs and G(z) samples
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dicom_node.errors import TrainingError
from dicom_node.model.calibration import Calibration, fit_norms
from dicom_node.model.ensemble import AnomalyModel
from dicom_node.model.members import GanMember
from dicom_node.model.recipe import Recipe
from dicom_node.model.saliency import fit_saliency
from dicom_node.training.bootstrap import threshold_for_sensitivity_bound
from dicom_node.training.datasets import ImageSet, load_image_set, split_held_out
from dicom_node.training.domain import fit_code_distributions, fit_typicality
from dicom_node.training.plots import save_reconstruction_grid
from dicom_node.training.steps import make_optimisers, sample_diversity, train_epoch

log = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.1
SAMPLE_EVERY = 10


def train_member(
    recipe: Recipe,
    train_x: torch.Tensor,
    held_x: torch.Tensor,
    out: Path,
    index: int,
    device: torch.device,
) -> GanMember:
    torch.manual_seed(recipe.seed)
    member = GanMember(recipe).to(device)
    opt = make_optimisers(member)
    rng = torch.Generator().manual_seed(recipe.seed)
    ckpt = out / "checkpoints" / f"member{index}.pt"
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        saved = {k: v for k, v in state["recipe"].items() if k != "epochs"}
        if saved != {k: v for k, v in recipe.to_dict().items() if k != "epochs"}:
            raise TrainingError(f"{ckpt}: checkpoint of another recipe; use a new --out directory")
        member.load_state_dict(state["member"])
        opt.load_state_dict(state["optimisers"])
        rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        start = state["epoch"]
        log.info("member %d: resuming after epoch %d", index, start)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    steps = train_x.shape[0] // recipe.batch_size
    bar = tqdm(range(start, recipe.epochs), desc=f"member {index} seed {recipe.seed}", unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        for losses in train_epoch(member, opt, train_x, rng):
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
        member.take_disc_snapshot(epoch + 1)
        elapsed = time.perf_counter() - t0
        means = {k: v / steps for k, v in sums.items()}
        member.eval()
        with torch.no_grad():
            held_recon = float(member.analyse(held_x.to(device)).statistics["recon"].mean())
        diag = {
            "member": index,
            "seed": recipe.seed,
            "epoch": epoch + 1,
            **{k: round(v, 5) for k, v in means.items()},
            "held_out_recon": round(held_recon, 5),
            "sample_diversity": round(sample_diversity(member), 5),
            "images_per_s": round(steps * recipe.batch_size / elapsed, 1),
        }
        with (out / "diagnostics.jsonl").open("a") as f:
            f.write(json.dumps(diag) + "\n")
        bar.set_postfix(
            recon=f"{means['recon']:.3f}",
            held=f"{held_recon:.3f}",
            d=f"{means['loss_d']:.2f}",
            div=f"{diag['sample_diversity']:.3f}",
        )
        if (epoch + 1) % SAMPLE_EVERY == 0 or epoch + 1 == recipe.epochs:
            save_reconstruction_grid(
                member,
                held_x[:16].to(device),
                out / "samples" / f"member{index}_epoch{epoch + 1:03d}.png",
            )
        torch.save(
            {
                "recipe": recipe.to_dict(),
                "member": member.state_dict(),
                "optimisers": opt.state_dict(),
                "rng": rng.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
            },
            ckpt,
        )
    member.eval()
    return member


def calibrate(
    model: AnomalyModel,
    held_x: torch.Tensor,
    weights: dict[str, float],
    val: ImageSet | None,
    sensitivity: float,
) -> Calibration:
    norms = fit_norms(model.analyse(held_x).member_stats)
    provisional = Calibration(norms, weights, [0.0], 0.0, "", mirror_invariant=True)
    held = model.assess(held_x, provisional)
    normal_scores = sorted(held.combined.tolist())
    if val is not None and (val.labels == 1).any():
        val_scores = model.assess(val.model_inputs(model.image_size), provisional).combined.numpy()
        threshold = threshold_for_sensitivity_bound(val_scores, val.labels, val.groups, sensitivity)
        point = (
            f"lower bound of the 95% interval of sensitivity at {sensitivity:.0%} on the labelled "
            "validation set (patient-grouped bootstrap)"
        )
    else:
        threshold = float(np.quantile(normal_scores, sensitivity))
        point = f"{sensitivity:.0%} quantile of held-out normals (no labelled validation set given)"
    baseline, span = fit_saliency(model.members, provisional, held.oriented(held_x))
    return replace(
        provisional,
        normal_scores=normal_scores,
        threshold=threshold,
        operating_point=point,
        saliency_baseline=baseline,
        saliency_range=span,
    )


def fit_to_normals(
    model: AnomalyModel,
    train_x: torch.Tensor,
    held_x: torch.Tensor,
    weights: dict[str, float],
    val: ImageSet | None,
    sensitivity: float,
) -> None:
    """What a trained model learns from the normals beyond its weights: the members' code
    distributions (training normals), then, on the weights as stored, the calibration and the
    domain check (held-out normals)."""
    fit_code_distributions(model, train_x)
    model.round_to_stored()
    model.calibration = calibrate(model, held_x, weights, val, sensitivity)
    model.typicality = fit_typicality(model, held_x)


def recalibrate(
    model: AnomalyModel,
    directory: Path,
    data: str,
    weights: dict[str, float],
    val_path: str | None,
    sensitivity: float,
) -> None:
    """New statistic weights or operating point for a trained model, without retraining.

    `data` must be the training data: the held-out normals are the same patients as in training.
    """
    images = load_image_set(data)
    train_idx, held_idx = split_held_out(images.groups, HELD_OUT_FRACTION)
    held_x = images.model_inputs(model.image_size, held_idx)
    val = load_image_set(val_path) if val_path else None
    train_x = images.model_inputs(model.image_size, train_idx)
    fit_to_normals(model, train_x, held_x, weights, val, sensitivity)
    model.save(directory)


MIN_TRAIN_IMAGES = 16  # fewer give a GAN nothing to learn from; the card says so


def fitted_batch(recipe: Recipe, n_train: int, data: str) -> Recipe:
    """The recipe with a batch that fits a small set (a site's few dozen normals): at most half
    the training images, a power of two, at least 4. TrainingError below MIN_TRAIN_IMAGES."""
    if n_train < MIN_TRAIN_IMAGES:
        raise TrainingError(
            f"{data}: {n_train} training image(s) after holding out whole patients for "
            f"calibration; training needs at least {MIN_TRAIN_IMAGES} (and normals of at "
            "least 3 patients)"
        )
    if recipe.batch_size <= n_train // 2:
        return recipe
    batch = max(4, 1 << ((n_train // 2).bit_length() - 1))
    log.warning(
        "%d training images: batch size %d instead of %d (at least two steps an epoch)",
        n_train,
        batch,
        recipe.batch_size,
    )
    return replace(recipe, batch_size=batch)


def run_training(
    data: str,
    out: Path,
    recipe: Recipe,
    members: int,
    device: torch.device,
    weights: dict[str, float],
    val_path: str | None,
    sensitivity: float,
    name: str,
) -> AnomalyModel:
    images = load_image_set(data)
    if (images.labels != 0).any():
        raise TrainingError(f"{data}: holds abnormal images; train on normal images only")
    train_idx, held_idx = split_held_out(images.groups, HELD_OUT_FRACTION)
    recipe = fitted_batch(recipe, len(train_idx), data)
    train_x = images.model_inputs(recipe.image_size, train_idx)
    held_x = images.model_inputs(recipe.image_size, held_idx)
    train_source = (
        images.model_inputs(recipe.training_resolution, train_idx)
        if recipe.geometric_augmentation
        else train_x
    )
    log.info(
        "training on %d images, calibrating on %d held-out normals (%s)",
        len(train_idx),
        len(held_idx),
        device,
    )
    out.mkdir(parents=True, exist_ok=True)
    trained = [
        train_member(
            replace(recipe, seed=recipe.seed * 100 + k), train_source, held_x, out, k, device
        )
        for k in range(members)
    ]
    info = {
        "trained_on": str(data),
        "train_images": int(len(train_idx)),
        "held_out_normals": int(len(held_idx)),
        "member_seeds": [m.recipe.seed for m in trained],
        "device": str(device),
    }
    model = AnomalyModel(name, recipe, trained, None, info)
    val = load_image_set(val_path) if val_path else None
    fit_to_normals(model, train_x, held_x, weights, val, sensitivity)
    model.save(out)
    return model
