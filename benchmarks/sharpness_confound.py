"""How far a trivial, model-free image statistic separates the validation classes, and how much
of a model's score it explains.

The mean absolute high-frequency residual (image minus its 3 x 3 box blur) measures sharpness.
If it alone separates normal from pneumonia, part of what any model learns on this data is
acquisition and processing (sharp originals vs. blurrier re-saved images), not anatomy. With
`--model`, the model's score is compared with it: the rank correlation within each class, and
the model's AUROC within thirds of the images of similar blurriness.

    .venv/bin/python benchmarks/sharpness_confound.py ../shared/data/zhanglab-cxr/val.npz \
        [--model models/alpha-gan-zhanglab]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from dicom_node.training.datasets import load_image_set


def blurriness(x: torch.Tensor) -> np.ndarray:
    """Minus the mean absolute high-frequency residual of model inputs (N, 1, S, S)."""
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return -(x - blurred).abs().flatten(1).mean(1).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a labelled .npz (val.npz)")
    p.add_argument("--model", help="also compare this model's score with blurriness")
    args = p.parse_args()
    data = load_image_set(args.data)
    labels = data.labels
    for size in (32, 64, 224):
        blur = blurriness(data.model_inputs(size))
        print(
            f"{size:>4} px: AUROC of blurriness alone {roc_auc_score(labels, blur):.3f} "
            f"(normal mean sharpness {-blur[labels == 0].mean():.4f}, "
            f"pneumonia {-blur[labels == 1].mean():.4f})"
        )
    print(f"{np.sum(labels == 0)} normal, {np.sum(labels == 1)} pneumonia")
    if args.model:
        from dicom_node.model.ensemble import load_model

        model = load_model(args.model)
        x = data.model_inputs(model.image_size)
        score = model.assess(x).combined.numpy()
        blur = blurriness(x)
        print(f"model {model.name}: AUROC {roc_auc_score(labels, score):.3f}")
        for label, name in ((0, "normal"), (1, "pneumonia")):
            rho = spearmanr(score[labels == label], blur[labels == label]).statistic
            print(f"  rank correlation of score and blurriness among {name}: {rho:+.3f}")
        thirds = np.quantile(blur, [1 / 3, 2 / 3])
        stratum = np.digitize(blur, thirds)
        for k, name in enumerate(("sharpest", "middle", "blurriest")):
            inside = stratum == k
            n0, n1 = int(np.sum(labels[inside] == 0)), int(np.sum(labels[inside] == 1))
            auroc = roc_auc_score(labels[inside], score[inside]) if n0 and n1 else float("nan")
            print(f"  {name} third: {n0} normal, {n1} pneumonia, AUROC {auroc:.3f}")


if __name__ == "__main__":
    main()
