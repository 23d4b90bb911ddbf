"""How far a trivial, model-free image statistic separates the validation classes.

The mean absolute high-frequency residual (image minus its 3 x 3 box blur) measures sharpness.
If it alone separates normal from pneumonia, part of what any model learns on this data is
acquisition and processing (sharp originals vs. blurrier re-saved images), not anatomy.

    .venv/bin/python benchmarks/sharpness_confound.py ../shared/data/zhanglab-cxr/val.npz
"""

from __future__ import annotations

import sys

import numpy as np
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from dicom_node.training.datasets import load_image_set


def main(path: str) -> None:
    data = load_image_set(path)
    for size in (32, 64, 224):
        x = data.model_inputs(size)
        blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        sharpness = (x - blurred).abs().flatten(1).mean(1).numpy()
        auroc = roc_auc_score(data.labels, -sharpness)  # blurrier = "more abnormal"
        print(
            f"{size:>4} px: AUROC of blurriness alone {auroc:.3f} "
            f"(normal mean {sharpness[data.labels == 0].mean():.4f}, "
            f"pneumonia mean {sharpness[data.labels == 1].mean():.4f})"
        )
    print(f"{np.sum(data.labels == 0)} normal, {np.sum(data.labels == 1)} pneumonia")


if __name__ == "__main__":
    main(sys.argv[1])
