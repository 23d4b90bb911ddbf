"""PNG pictures of training and evaluation: reconstruction grids, ROC curves, histograms."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

MIN_TILE = 96  # pixels: small model inputs are enlarged so that people can see them


def _tile(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of (N, 1, S, S) tensors in [-1, 1] -> one uint8 picture."""
    lines = [torch.cat(list(r[:, 0]), dim=1) for r in rows]
    grid = torch.cat(lines, dim=0)
    picture = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    factor = max(1, -(-MIN_TILE // rows[0].shape[-1]))
    return np.kron(picture, np.ones((factor, factor), dtype=np.uint8))


@torch.no_grad()
def save_reconstruction_grid(member, x: torch.Tensor, path: Path) -> None:
    """Top: held-out x; middle: G(E(x)); bottom: G(z) samples (the seed's figure layout)."""
    was_training = member.training
    member.eval()
    x = member.prepare(x)
    rec = member.generator(member.encoder(x))
    gen = member.generator(torch.randn(x.shape[0], member.recipe.z_dim, device=x.device))
    member.train(was_training)
    Image.fromarray(_tile([x, rec, gen])).save(path)


def save_roc_curves(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path, title: str
) -> None:
    """curves: label -> (scores, labels, auroc)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, (scores, labels, auroc) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{label} (AUROC {auroc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_statistic_histograms(
    stats: dict[str, np.ndarray], labels: np.ndarray, path: Path, title: str
) -> None:
    """Normal vs abnormal histogram of each statistic ("statistics on validation set")."""
    names = list(stats)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = stats[name]
        bins = np.linspace(np.percentile(values, 1), np.percentile(values, 99), 30)
        ax.hist(values[labels == 0], bins=bins, alpha=0.6, density=True, label="normal")
        ax.hist(values[labels == 1], bins=bins, alpha=0.6, density=True, label="abnormal")
        ax.set_title(name, fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_difference_grid(
    x: torch.Tensor, rec: torch.Tensor, diff: torch.Tensor, path: Path
) -> None:
    """Rows: x, G(E(x)), |x - G(E(x))| (scaled to the row's maximum)."""
    scaled = diff / diff.amax().clamp_min(1e-6) * 2 - 1
    Image.fromarray(_tile([x, rec, scaled])).save(path)


def save_anomaly_maps(
    x: torch.Tensor,
    maps: np.ndarray,
    lung_fields: np.ndarray,
    labels: np.ndarray,
    path: Path,
    title: str,
    per_class: int = 6,
) -> None:
    """Rows of normal and abnormal images with their anomaly map over them and the lung
    fields' outline (the mask `evaluate` measures the map's share in)."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in (0, 1)]
    fig, axes = plt.subplots(2, per_class, figsize=(2 * per_class, 4.4), squeeze=False)
    for row, (idx, name) in enumerate(zip(picks, ("normal", "abnormal"))):
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(idx):
                continue
            i = idx[col]
            extent = (0, 1, 1, 0)
            ax.imshow((x[i, 0].numpy() + 1) / 2, cmap="gray", vmin=0, vmax=1, extent=extent)
            ax.imshow(maps[i], cmap="inferno", vmin=0, vmax=1, alpha=0.55, extent=extent)
            ax.contour(
                np.linspace(0, 1, lung_fields.shape[1]),
                np.linspace(0, 1, lung_fields.shape[0]),
                lung_fields,
                levels=[0.5],
                colors="cyan",
                linewidths=0.6,
            )
            ax.set_title(name, fontsize=8)
    fig.suptitle(f"{title}: anomaly maps (colour) and lung fields (cyan)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
