"""Patient-grouped bootstrap intervals: whole patients are resampled, and the intervals hold
the figures they are about."""

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
