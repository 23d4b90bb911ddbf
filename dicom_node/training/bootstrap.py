"""Confidence intervals that respect patients: the bootstrap resamples whole patients (all
of a patient's images together), so a patient with several images cannot narrow the interval."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from dicom_node.model.calibration import threshold_at_sensitivity

RESAMPLES = 1000


def grouped_bootstrap(
    scores: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95% percentile intervals of AUROC, sensitivity and specificity at `threshold`."""
    patients, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    members = [np.flatnonzero(inverse == p) for p in range(len(patients))]
    rng = np.random.default_rng(seed)
    flagged = scores >= threshold
    found: dict[str, list[float]] = {"auroc": [], "sensitivity": [], "specificity": []}
    for _ in range(resamples):
        pick = np.concatenate([members[p] for p in rng.integers(0, len(patients), len(patients))])
        y = labels[pick]
        if not ((y == 0).any() and (y == 1).any()):
            continue  # a resample with one class says nothing about ranking
        found["auroc"].append(roc_auc_score(y, scores[pick]))
        found["sensitivity"].append(flagged[pick][y == 1].mean())
        found["specificity"].append((~flagged[pick][y == 0]).mean())
    return {
        name: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
        for name, v in found.items()
    }


def threshold_for_sensitivity_bound(
    scores: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    target: float,
    resamples: int = 500,
) -> float:
    """The highest threshold at which the lower bound of the patient-grouped bootstrap 95%
    interval of sensitivity reaches `target`: lowered from the point estimate's threshold, one
    abnormal image at a time."""
    abnormal = np.sort(scores[labels == 1])[::-1]
    start = threshold_at_sensitivity(scores, labels, target)
    for candidate in [start, *(float(s) for s in abnormal if s < start)]:
        low = grouped_bootstrap(scores, labels, groups, candidate, resamples)["sensitivity"][0]
        if low >= target:
            return candidate
    return float(abnormal[-1])
