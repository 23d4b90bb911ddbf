"""The figures `evaluate` reports: patient-grouped bootstrap intervals (whole patients
resampled; the intervals hold the figures they are about) and robustness to harmless changes
of the stored pixels."""

from __future__ import annotations

import json

import numpy as np
from sklearn.metrics import roc_auc_score

from dicom_node.training.bootstrap import cross_fitted_operating_point, grouped_bootstrap


def test_intervals_hold_the_point_estimates():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 100)
    scores = rng.normal(labels * 1.0, 1.0)
    groups = np.arange(200).astype(str)
    ci = grouped_bootstrap(scores, labels, groups, scores >= 0.5, resamples=300)
    auroc = roc_auc_score(labels, scores)
    assert ci["auroc"][0] < auroc < ci["auroc"][1]
    sensitivity = (scores[labels == 1] >= 0.5).mean()
    assert ci["sensitivity"][0] <= sensitivity <= ci["sensitivity"][1]


def test_copies_of_a_patient_do_not_narrow_the_interval():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 40)
    scores = rng.normal(labels * 1.0, 1.0)
    flags = scores >= 0.5
    once = grouped_bootstrap(scores, labels, np.arange(80).astype(str), flags, resamples=400)
    # Each patient's image three times, grouped by patient: the same evidence, the same width.
    thrice = grouped_bootstrap(
        np.tile(scores, 3),
        np.tile(labels, 3),
        np.tile(np.arange(80).astype(str), 3),
        np.tile(flags, 3),
        400,
    )
    ungrouped = grouped_bootstrap(
        np.tile(scores, 3),
        np.tile(labels, 3),
        np.arange(240).astype(str),
        np.tile(flags, 3),
        resamples=400,
    )

    def width(ci):
        return ci["auroc"][1] - ci["auroc"][0]

    assert abs(width(thrice) - width(once)) < 0.35 * width(once)
    assert width(ungrouped) < 0.75 * width(once)  # what ignoring patients would claim


def test_cross_fitting_chooses_each_folds_threshold_without_its_patients(monkeypatch):
    from dicom_node.training import bootstrap

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(60), 2).astype(str)  # two images per patient
    labels = np.repeat(rng.integers(0, 2, 60), 2)
    scores = rng.normal(labels * 2.0, 1.0)
    seen: list[set[str]] = []
    choose = bootstrap.threshold_for_sensitivity_bound

    def recording(s, y, g, target):
        seen.append(set(g))
        return choose(s, y, g, target, resamples=100)

    monkeypatch.setattr(bootstrap, "threshold_for_sensitivity_bound", recording)
    report = bootstrap.cross_fitted_operating_point(scores, labels, groups, 0.95)
    assert report["folds"] == len(seen) == len(report["thresholds"]) == 5
    patients = set(groups)
    left_out = [patients - fit for fit in seen]
    assert all(left_out) and set().union(*left_out) == patients  # each patient left out once
    assert sum(len(o) for o in left_out) == len(patients)
    ci = report["ci95"]
    assert ci["sensitivity"][0] <= report["sensitivity"] <= ci["sensitivity"][1]


def test_cross_fitting_of_separable_scores_flags_no_normal_and_misses_only_the_lowest():
    labels = np.repeat([0, 1], 50)
    scores = labels * 10.0 + np.linspace(0, 1, 100)
    report = cross_fitted_operating_point(scores, labels, np.arange(100).astype(str), 0.95)
    assert report["specificity"] == 1.0
    # Each fold's threshold is the lowest abnormal score of the other folds: an abnormal image
    # below every one of those is missed out of fold, as it would be on new patients.
    assert 0.95 <= report["sensitivity"] < 1.0


def test_a_brightness_offset_is_removed_by_the_path_and_a_flip_changes_nothing():
    from pathlib import Path

    import torch

    from dicom_node.config import SHIPPED_MODEL
    from dicom_node.model.ensemble import load_model
    from dicom_node.model.inputs import to_model_input
    from dicom_node.model.pixels import unit_from_values
    from dicom_node.training.robustness import robustness

    twins = np.load(Path(__file__).parent / "data" / "val_twins_224.npz")
    stored = np.stack([twins[k] for k in sorted(twins)])
    offset = stored[2].astype(np.float32) + 12  # the 0-234 twin: no clipping
    assert np.allclose(unit_from_values(offset), unit_from_values(stored[2]))
    model = load_model(SHIPPED_MODEL)
    report = robustness(model, stored)
    assert report["normals"] == 5 and set(report["within_limits"]) == {
        "brightness",
        "contrast",
        "flip",
    }
    assert report["changes"]["brightness -5%"]["change_points"] == 0.0  # offsets stretch away
    assert set(report["changes"]) >= {"flip", "rotate 5 degrees", "crop 95%", "gamma 1.1"}
    # An image and its mirror image get one score (the lower of the two), and one map, mirrored.
    x = torch.cat([to_model_input(unit_from_values(p), model.image_size) for p in stored])
    plain, mirrored = model.score(x), model.score(torch.flip(x, dims=[-1]))
    for a, b in zip(plain, mirrored):
        assert abs(a.score - b.score) < 1e-4 and a.mirrored != b.mirrored
        assert np.allclose(a.anomaly_map, b.anomaly_map[:, ::-1], atol=1e-4)


def test_evaluate_reports_every_figure_and_draws_the_pictures(tmp_path, capsys):
    from pathlib import Path

    from dicom_node.app.cli import main
    from dicom_node.config import SHIPPED_MODEL

    twins = np.load(Path(__file__).parent / "data" / "val_twins_224.npz")
    names = sorted(twins)  # IM-*: normal; person*: pneumonia (their names in val.npz)
    data = tmp_path / "labelled.npz"
    np.savez(
        data,
        images=np.stack([twins[k] for k in names] * 2),
        labels=np.array([int(k.startswith("person")) for k in names] * 2, np.uint8),
        patient_ids=np.array([f"p{i}" for i in range(2 * len(names))]),
    )
    args = ["evaluate", "--model", str(SHIPPED_MODEL), "--data", str(data)]
    assert main([*args, "--json", "--plots", str(tmp_path / "plots")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_normal"] == 6 and result["n_abnormal"] == 4
    assert result["ci95"]["auroc"][0] <= result["auroc"] <= result["ci95"]["auroc"][1]
    crossed = result["operating_point_cross_fitted"]
    assert crossed["folds"] == 5 and 0 <= crossed["sensitivity"] <= 1
    maps = result["anomaly_map_in_lung_fields"]
    assert 0 < maps["lung_field_area"] < 0.5
    for name in ("anomaly_map", "reference_reconstruction_error"):
        low, high = maps[name]["difference_ci95"]
        assert low <= maps[name]["difference"] <= high
    assert result["domain_check"]["refused_normal"] == 0.0
    drawn = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"anomaly_maps_alpha-gan-zhanglab.png", "roc_alpha-gan-zhanglab.png"} <= drawn
    assert main(args) == 0  # and as text, a line per figure
    text = capsys.readouterr().out
    assert "cross-fitted" in text and "share in the lung fields" in text


def test_cross_fitting_says_when_a_class_is_too_small_to_split():
    labels = np.array([0, 0, 0, 0, 0, 0, 1])
    report = cross_fitted_operating_point(np.arange(7.0), labels, np.arange(7).astype(str), 0.95)
    assert "not_measured" in report and "sensitivity" not in report
