"""Confidence intervals that respect patients: the bootstrap resamples whole patients (all
of a patient's images together), so a patient with several images cannot narrow the interval."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.metrics import roc_auc_score

from dicom_node.model.calibration import threshold_at_sensitivity

RESAMPLES = 1000


def patient_resamples(
    groups: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> Iterator[np.ndarray]:
    """Image indices of each bootstrap resample: as many patients as there are, drawn with
    replacement, each with all of their images."""
    patients, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    members = [np.flatnonzero(inverse == p) for p in range(len(patients))]
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield np.concatenate([members[p] for p in rng.integers(0, len(patients), len(patients))])


def grouped_bootstrap(
    scores: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    flagged: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95% percentile intervals of AUROC and of sensitivity and specificity of the flags."""
    found: dict[str, list[float]] = {"auroc": [], "sensitivity": [], "specificity": []}
    for pick in patient_resamples(groups, resamples, seed):
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
    resamples: int = RESAMPLES,
) -> float:
    """The highest threshold at which the lower bound of the patient-grouped bootstrap 95%
    interval of sensitivity reaches `target`: lowered from the point estimate's threshold, one
    abnormal image at a time. With the same resamples and seed as `evaluate`, so the interval
    it reports at this threshold is the one that was required to reach the target."""
    abnormal = np.sort(scores[labels == 1])[::-1]
    start = threshold_at_sensitivity(scores, labels, target)
    for candidate in [start, *(float(s) for s in abnormal if s < start)]:
        flagged = scores >= candidate
        low = grouped_bootstrap(scores, labels, groups, flagged, resamples)["sensitivity"][0]
        if low >= target:
            return candidate
    return float(abnormal[-1])


CROSS_FIT_FOLDS = 5


def cross_fitted_operating_point(
    scores: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    target: float,
    folds: int = CROSS_FIT_FOLDS,
    seed: int = 0,
) -> dict:
    """How the operating point holds on patients it was not chosen on: the patients are split
    into `folds`; each fold's images are flagged at the threshold that
    `threshold_for_sensitivity_bound` chooses on the other folds; sensitivity and specificity
    of these out-of-fold flags, with patient-grouped 95% intervals."""
    patients, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    fold_of_patient = np.random.default_rng(seed).permutation(len(patients)) % folds
    fold = fold_of_patient[inverse]
    flagged = np.zeros(len(scores), bool)
    thresholds = []
    for k in range(folds):
        fit = fold != k
        if not ((labels[fit] == 0).any() and (labels[fit] == 1).any()):
            return {"folds": folds, "not_measured": "too few patients of a class to split"}
        threshold = threshold_for_sensitivity_bound(scores[fit], labels[fit], groups[fit], target)
        flagged[fold == k] = scores[fold == k] >= threshold
        thresholds.append(round(threshold, 4))
    ci = grouped_bootstrap(scores, labels, groups, flagged)
    return {
        "folds": folds,
        "thresholds": thresholds,
        "sensitivity": round(float(flagged[labels == 1].mean()), 4),
        "specificity": round(float((~flagged[labels == 0]).mean()), 4),
        "ci95": {k: ci[k] for k in ("sensitivity", "specificity")},
    }
