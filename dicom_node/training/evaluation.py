"""Evaluation of anomaly models on a labelled image set, and the PCA-reconstruction baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score, roc_auc_score

from dicom_node.errors import TrainingError
from dicom_node.model.ensemble import AnomalyModel
from dicom_node.model.recipe import SENSITIVITY_TARGET
from dicom_node.training.bootstrap import (
    RESAMPLES,
    cross_fitted_operating_point,
    grouped_bootstrap,
)
from dicom_node.training.datasets import ImageSet
from dicom_node.training.domain import domain_report
from dicom_node.training.explanation import map_report
from dicom_node.training.plots import (
    save_difference_grid,
    save_roc_curves,
    save_statistic_histograms,
)

PCA_COMPONENTS = 16
PCA_IMAGE_SIZE = 32
MAP_MASK_SIZE = 128  # pixels of the mean image the lung fields are found in


def _require_both_classes(labels: np.ndarray) -> None:
    if not ((labels == 0).any() and (labels == 1).any()):
        raise TrainingError("evaluation needs normal (0) and abnormal (1) labels in --data")


def evaluate_model(
    model: AnomalyModel,
    data: ImageSet,
    plots: Path | None = None,
    sensitivity: float = SENSITIVITY_TARGET,
) -> dict:
    labels = np.asarray(data.labels)
    _require_both_classes(labels)
    x = data.model_inputs(model.image_size)
    if plots is not None:
        plots.mkdir(parents=True, exist_ok=True)
    cal = model.calibration
    assessed = model.assess(x)
    raw, z, combined = assessed.raw, assessed.statistics, assessed.combined.numpy()
    flagged = combined >= cal.threshold
    result = {
        "model": model.name,
        "auroc": round(float(roc_auc_score(labels, combined)), 4),
        "average_precision": round(float(average_precision_score(labels, combined)), 4),
        "per_statistic": {
            k: round(float(roc_auc_score(labels, v.numpy())), 4) for k, v in z.items()
        },
        "per_member_auroc": [
            round(float(roc_auc_score(labels, _member_combined(cal, s, i))), 4)
            for i, s in enumerate(raw.member_stats)
        ],
        "operating_point": cal.operating_point,
        "threshold": round(cal.threshold, 4),
        "sensitivity": round(float(flagged[labels == 1].mean()), 4),
        "specificity": round(float((~flagged[labels == 0]).mean()), 4),
        "n_normal": int((labels == 0).sum()),
        "n_abnormal": int((labels == 1).sum()),
        "n_patients": int(np.unique(np.asarray(data.groups).astype(str)).size),
        # 95% intervals, patients resampled whole (training.bootstrap)
        "ci95": grouped_bootstrap(combined, labels, data.groups, flagged),
        "ci_method": f"patient-grouped bootstrap, {RESAMPLES} resamples, percentile",
        # The threshold above was chosen on these images (in-sample); this is the same rule
        # applied to other patients (out-of-fold).
        "operating_point_cross_fitted": cross_fitted_operating_point(
            combined, labels, np.asarray(data.groups), sensitivity
        ),
    }
    if model.typicality is not None:
        result["domain_check"] = domain_report(model, x, labels)
    mean_image = ((data.model_inputs(MAP_MASK_SIZE).mean(0)[0] + 1) / 2).numpy()
    result["anomaly_map_in_lung_fields"] = map_report(
        model, x, assessed, mean_image, labels, np.asarray(data.groups), plots
    )
    if plots is not None:
        curves = {k: (v.numpy(), labels, result["per_statistic"][k]) for k, v in z.items()}
        curves["combined"] = (combined, labels, result["auroc"])
        save_roc_curves(
            curves, plots / f"roc_{model.name}.png", f"{model.name}: ROC on {len(labels)} images"
        )
        save_statistic_histograms(
            {**{k: v.numpy() for k, v in z.items()}, "combined": combined},
            labels,
            plots / f"statistics_{model.name}.png",
            f"{model.name}: statistics on validation set",
        )
        for label, name in ((0, "normal"), (1, "abnormal")):
            idx = np.flatnonzero(labels == label)[:8]
            save_difference_grid(
                x[idx],
                raw.reconstruction[idx],
                raw.difference[idx],
                plots / f"reconstructions_{model.name}_{name}.png",
            )
    return result


def _member_combined(cal, stats: dict[str, torch.Tensor], i: int) -> np.ndarray:
    """Combined score of ensemble member i alone, with its own calibration."""
    z = {k: (v - cal.norms[i][k][0]) / cal.norms[i][k][1] for k, v in stats.items()}
    return cal.combine(z).numpy()


def evaluate_pca(train: ImageSet, data: ImageSet) -> dict:
    """PCA reconstruction error (L1) at 32 px with 16 components, fitted on normals."""
    labels = np.asarray(data.labels)
    _require_both_classes(labels)
    fit = train.model_inputs(PCA_IMAGE_SIZE).flatten(1).numpy()
    pca = PCA(PCA_COMPONENTS, random_state=0).fit(fit)
    v = data.model_inputs(PCA_IMAGE_SIZE).flatten(1).numpy()
    err = np.abs(v - pca.inverse_transform(pca.transform(v))).mean(1)
    auroc = round(float(roc_auc_score(labels, err)), 4)
    return {
        "model": f"pca-{PCA_COMPONENTS}@{PCA_IMAGE_SIZE}px",
        "auroc": auroc,
        "average_precision": round(float(average_precision_score(labels, err)), 4),
        "per_statistic": {"recon": auroc},
    }
