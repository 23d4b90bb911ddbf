"""The figures `evaluate` reports: patient-grouped bootstrap intervals (whole patients
resampled; the intervals hold the figures they are about) and robustness to harmless changes
of the stored pixels."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from dicom_node.training.bootstrap import grouped_bootstrap


def test_intervals_hold_the_point_estimates():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 100)
    scores = rng.normal(labels * 1.0, 1.0)
    groups = np.arange(200).astype(str)
    ci = grouped_bootstrap(scores, labels, groups, threshold=0.5, resamples=300)
    auroc = roc_auc_score(labels, scores)
    assert ci["auroc"][0] < auroc < ci["auroc"][1]
    sensitivity = (scores[labels == 1] >= 0.5).mean()
    assert ci["sensitivity"][0] <= sensitivity <= ci["sensitivity"][1]


def test_copies_of_a_patient_do_not_narrow_the_interval():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 40)
    scores = rng.normal(labels * 1.0, 1.0)
    once = grouped_bootstrap(scores, labels, np.arange(80).astype(str), 0.5, resamples=400)
    # Each patient's image three times, grouped by patient: the same evidence, the same width.
    thrice = grouped_bootstrap(
        np.tile(scores, 3), np.tile(labels, 3), np.tile(np.arange(80).astype(str), 3), 0.5, 400
    )
    ungrouped = grouped_bootstrap(
        np.tile(scores, 3), np.tile(labels, 3), np.arange(240).astype(str), 0.5, resamples=400
    )

    def width(ci):
        return ci["auroc"][1] - ci["auroc"][0]

    assert abs(width(thrice) - width(once)) < 0.35 * width(once)
    assert width(ungrouped) < 0.75 * width(once)  # what ignoring patients would claim


def test_a_brightness_offset_is_removed_by_the_path_and_a_flip_is_not():
    from pathlib import Path

    from dicom_node.config import SHIPPED_MODEL
    from dicom_node.model.ensemble import load_model
    from dicom_node.model.pixels import unit_from_values
    from dicom_node.training.robustness import robustness

    twins = np.load(Path(__file__).parent / "data" / "val_twins_224.npz")
    stored = np.stack([twins[k] for k in sorted(twins)])
    offset = stored[2].astype(np.float32) + 12  # the 0-234 twin: no clipping
    assert np.allclose(unit_from_values(offset), unit_from_values(stored[2]))
    report = robustness(load_model(SHIPPED_MODEL), stored)
    assert report["normals"] == 5 and set(report["within_limits"]) == {
        "brightness",
        "contrast",
        "flip",
    }
    assert report["changes"]["brightness -5%"]["change_points"] == 0.0  # offsets stretch away
    assert set(report["changes"]) >= {"flip", "rotate 5 degrees", "crop 95%", "gamma 1.1"}
