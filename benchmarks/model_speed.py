"""Scoring and training speed of the shipped model on this machine (CPU, or CUDA if present).

    .venv/bin/python benchmarks/model_speed.py [--model models/alpha-gan-zhanglab] [--device cpu]

Prints scoring images/s at batch 256 (the ensemble's statistics in both orientations, the score
and the anomaly map), single-image latency p50/p95 (model input to score, preprocessing not
included), each beside the reference in the same run: the statistics of the image as stored
only (the scoring before mirror invariance and the anomaly map); then the DICOM decode +
preprocessing time of the 1.8 MB sample, and training images/s of one member.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from dicom_node.model.ensemble import load_model
from dicom_node.model.inputs import to_model_input
from dicom_node.model.members import GanMember
from dicom_node.model.pixels import read_unit_image
from dicom_node.samples import SAMPLES_DIR
from dicom_node.training.steps import make_optimisers, train_epoch


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/alpha-gan-zhanglab")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model = load_model(args.model, args.device)
    size = model.image_size
    print(
        f"model {model.name}: {len(model.members)} members at {size} px on {args.device}, "
        f"{torch.get_num_threads()} torch threads"
    )
    batch = torch.rand(256, 1, size, size, device=args.device) * 2 - 1
    as_stored = replace(model.calibration, mirror_invariant=False)
    paths = {
        "score (both orientations, anomaly map)": model.score,
        "reference: statistics as stored only": lambda x: model.assess(x, as_stored),
    }
    for name, score in paths.items():
        score(batch[:8])  # warm-up
        t = statistics.median(timed(lambda s=score: s(batch), 5))
        single = sorted(timed(lambda s=score: s(batch[:1]), 50))
        print(
            f"{name}: {256 / t:,.0f} images/s at batch 256; one image p50 "
            f"{1000 * single[25]:.1f} ms, p95 {1000 * single[47]:.1f} ms"
        )
    path = SAMPLES_DIR / "zhanglab_01_normal.dcm"
    pre = timed(lambda: to_model_input(read_unit_image(path), size), 10)
    print(f"decode + preprocess {path.name} (1156 x 1596): {1000 * statistics.median(pre):.1f} ms")
    member = GanMember(model.recipe).to(args.device)
    opt = make_optimisers(member)
    images = torch.rand(640, 1, size, size) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    list(train_epoch(member, opt, images[:128], generator))  # warm-up
    t = statistics.median(timed(lambda: list(train_epoch(member, opt, images, generator)), 3))
    print(f"training one member: {640 / t:,.0f} images/s (batch {model.recipe.batch_size})")


if __name__ == "__main__":
    main()
