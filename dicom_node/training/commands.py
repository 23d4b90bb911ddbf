"""Subcommands of the model: train, evaluate, score."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dicom_node.errors import TrainingError
from dicom_node.model.recipe import (
    ALPHA_GAN_STATISTICS,
    BIGAN_STATISTICS,
    SENSITIVITY_TARGET,
    Architecture,
    Recipe,
)

DEFAULT_WEIGHTS = "disc=1,code_distance=0.75"  # chosen by the ablation in the model card


def _parse_weights(text: str, arch: Architecture) -> dict[str, float]:
    allowed = ALPHA_GAN_STATISTICS if arch is Architecture.ALPHA_GAN else BIGAN_STATISTICS
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name not in allowed:
            if arch is Architecture.BIGAN and name == "code":
                continue  # the BiGAN has no code discriminator
            raise TrainingError(
                f"--combine: unknown statistic {name!r} (known: {', '.join(allowed)})"
            )
        weights[name] = float(value or 1)
    if not any(weights.values()):
        raise TrainingError("--combine: at least one statistic needs a positive weight")
    return {k: v for k, v in weights.items() if v}


def _model_path(args) -> Path:
    if args.model:
        return Path(args.model)
    from dicom_node.config_file import config_path, load_settings

    return load_settings(config_path(args.config)).model.path


def cmd_train(args) -> int:
    import torch

    from dicom_node.model.ensemble import pick_device
    from dicom_node.training.run import run_training

    torch.set_num_threads(args.threads) if args.threads else None
    arch = Architecture(args.arch)
    recipe = Recipe(
        arch=arch,
        image_size=args.image_size,
        epochs=args.epochs,
        seed=args.seed,
        base_width=args.base_width,
        batch_size=args.batch_size,
        disc_snapshot_every=args.disc_snapshot_every,
        augment_flip=args.augment_flip,
        augment_rotate=args.augment_rotate,
        augment_scale=args.augment_scale,
        standardise_input=args.standardise_input,
    )
    model = run_training(
        args.data,
        Path(args.out),
        recipe,
        args.members,
        pick_device(args.device),
        _parse_weights(args.combine, arch),
        args.val,
        args.sensitivity,
        args.name or Path(args.out).name,
    )
    print(
        f"model written to {args.out} (threshold {model.calibration.threshold:.3f}: "
        f"{model.calibration.operating_point})"
    )
    return 0


def cmd_calibrate(args) -> int:
    from dicom_node.model.ensemble import load_model
    from dicom_node.training.run import recalibrate

    model_dir = _model_path(args)
    model = load_model(model_dir)
    recalibrate(
        model,
        model_dir,
        args.data,
        _parse_weights(args.combine, model.recipe.arch),
        args.val,
        args.sensitivity,
    )
    print(
        f"{model_dir}: recalibrated (threshold {model.calibration.threshold:.3f}: "
        f"{model.calibration.operating_point})"
    )
    return 0


def cmd_evaluate(args) -> int:
    from dicom_node.model.ensemble import load_model
    from dicom_node.training.datasets import load_image_set
    from dicom_node.training.evaluation import evaluate_model, evaluate_pca

    data = load_image_set(args.data)
    plots = Path(args.plots) if args.plots else None
    model = load_model(_model_path(args))
    result = evaluate_model(model, data, plots, args.sensitivity)
    comparisons = [evaluate_model(load_model(p), data, plots) for p in args.compare]
    if args.pca_train:
        comparisons.append(evaluate_pca(load_image_set(args.pca_train), data))
    if comparisons:
        result["comparison"] = comparisons
    if args.robustness:
        from dicom_node.training.robustness import robustness

        if not isinstance(data.images, np.ndarray):
            raise TrainingError("--robustness needs an .npz of 8-bit images (val.npz)")
        result["robustness"] = robustness(model, data.images[data.labels == 0])
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'model':<28} {'AUROC':>6} {'AP':>6}  per statistic")
    for r in [result, *comparisons]:
        stats = " ".join(f"{k}={v:.3f}" for k, v in r["per_statistic"].items())
        print(f"{r['model']:<28} {r['auroc']:>6.3f} {r['average_precision']:>6.3f}  {stats}")
    ci = result["ci95"]
    print(
        f"AUROC {result['auroc']:.3f} (95% CI {ci['auroc'][0]:.3f}-{ci['auroc'][1]:.3f}); "
        f"operating point ({result['operating_point']}): sensitivity {result['sensitivity']:.3f}"
        f" ({ci['sensitivity'][0]:.3f}-{ci['sensitivity'][1]:.3f}), specificity "
        f"{result['specificity']:.3f} ({ci['specificity'][0]:.3f}-{ci['specificity'][1]:.3f})"
        f" on {result['n_abnormal']} abnormal / {result['n_normal']} normal images of "
        f"{result['n_patients']} patients ({result['ci_method']})"
    )
    x = result["operating_point_cross_fitted"]
    print(
        f"the same rule cross-fitted ({x['folds']} folds of patients): "
        + (
            f"not measured: {x['not_measured']}"
            if "not_measured" in x
            else f"sensitivity {x['sensitivity']:.3f} ({x['ci95']['sensitivity'][0]:.3f}-"
            f"{x['ci95']['sensitivity'][1]:.3f}), specificity {x['specificity']:.3f}"
        )
    )
    m = result["anomaly_map_in_lung_fields"]["anomaly_map"]
    print(
        f"anomaly map's share in the lung fields: abnormal {m['abnormal']:.3f}, normal "
        f"{m['normal']:.3f}, difference {m['difference']:+.3f} ({m['difference_ci95'][0]:+.3f}"
        f" to {m['difference_ci95'][1]:+.3f})"
    )
    if "domain_check" in result:
        d = result["domain_check"]
        print(
            f"domain check (refused above distance {d['threshold']}): refused "
            f"{d['refused_normal']:.1%} of normals, {d['refused_abnormal']:.1%} of abnormal; of "
            "images made unlike the training data: "
            + ", ".join(f"{k} {v:.0%}" for k, v in d["refused_unlike"].items())
        )
    if "robustness" in result:
        r = result["robustness"]
        print(f"normals flagged: {r['flagged_pct']:.1f}% of {r['normals']}; after a change:")
        for name, v in r["changes"].items():
            print(f"  {name:<18} {v['flagged_pct']:5.1f}%  ({v['change_points']:+.1f} points)")
        print(f"  within the limits {r['limits_points']}: {r['within_limits']}")
    return 0


def cmd_score(args) -> int:
    from dicom_node.errors import NotScorable, OutsidePopulation
    from dicom_node.model.ensemble import load_model
    from dicom_node.model.inputs import to_model_input
    from dicom_node.model.pixels import read_dataset, unit_image_from_dataset

    model = load_model(_model_path(args))
    status = 0
    for file in args.files:
        try:
            ds = read_dataset(file)
            if model.population and (problem := model.population.problem(ds)):
                raise OutsidePopulation(f"outside the model's population: {problem}")
            x = to_model_input(unit_image_from_dataset(ds, source=file), model.image_size)
            if problem := model.unlike_training(x):
                raise OutsidePopulation(problem)
        except NotScorable as exc:
            record = {"file": file, "error": str(exc)}
            status = 1
        else:
            score = model.score(x)[0]
            record = {"file": file, **score.to_record()}
            if args.pictures:
                record["picture"] = _save_picture(
                    Path(args.pictures), file, ds, score, model.calibration.threshold
                )
        if args.json:
            print(json.dumps(record))
        elif "error" in record:
            print(f"{file}: not scored: {record['error']}")
        else:
            flag = "ABNORMAL" if record["abnormal"] else "normal"
            print(
                f"{file}: score {record['score']:.2f} (percentile {record['percentile']:.0f}"
                f" among normals) {flag}"
            )
    return status


def _save_picture(folder: Path, file: str, ds, score, threshold: float) -> str:
    """The anomaly map as the node's Secondary Capture shows it, as a PNG named after `file`."""
    from PIL import Image

    from dicom_node.model.pixels import unit_image_from_dataset
    from dicom_node.results.anomaly_map import fit_for_display, render_anomaly_overlay

    folder.mkdir(parents=True, exist_ok=True)
    unit = fit_for_display(unit_image_from_dataset(ds, source=file))
    path = folder / f"{Path(file).stem}.png"
    Image.fromarray(render_anomaly_overlay(unit, score, threshold)).save(path)
    return str(path)


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an anomaly model on normal images")
    p.add_argument("--data", required=True, help=".npz of normal images or a folder of DICOM files")
    p.add_argument("--out", required=True, help="directory for the model, checkpoints and plots")
    p.add_argument("--arch", choices=[a.value for a in Architecture], default="alpha-gan")
    p.add_argument("--image-size", type=int, default=Recipe.image_size)
    p.add_argument("--base-width", type=int, default=Recipe.base_width)
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--epochs", type=int, default=Recipe.epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--members", type=int, default=3, help="ensemble members (seeds) to train")
    p.add_argument(
        "--disc-snapshot-every",
        type=int,
        default=Recipe.disc_snapshot_every,
        help="epochs between the discriminator snapshots whose mean is the disc statistic",
    )
    p.add_argument("--augment-flip", action="store_true", help="mirror half the training images")
    p.add_argument("--augment-rotate", type=float, default=0.0, help="random rotation, degrees")
    p.add_argument("--augment-scale", type=float, default=0.0, help="random zoom, e.g. 0.05")
    standardise = "each input to its own mean and sd (robust to exposure; default)"
    toggle = argparse.BooleanOptionalAction
    p.add_argument("--standardise-input", action=toggle, default=True, help=standardise)
    p.add_argument("--combine", default=DEFAULT_WEIGHTS, help="statistic=weight,... of the score")
    p.add_argument("--val", help="labelled .npz that sets the operating point")
    p.add_argument("--sensitivity", type=float, default=SENSITIVITY_TARGET)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    p.add_argument("--name")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("calibrate", help="new statistic weights or operating point, no retraining")
    p.add_argument("--model", help="model directory (default: the one in --config)")
    p.add_argument("--config")
    p.add_argument("--data", required=True, help="the training data (its held-out normals)")
    p.add_argument("--combine", default=DEFAULT_WEIGHTS)
    p.add_argument("--val")
    p.add_argument("--sensitivity", type=float, default=SENSITIVITY_TARGET)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="AUROC and operating point on a labelled set")
    p.add_argument("--model", help="model directory (default: the one in --config)")
    p.add_argument("--config")
    p.add_argument("--data", required=True)
    p.add_argument("--compare", action="append", default=[], help="another model directory")
    p.add_argument(
        "--sensitivity",
        type=float,
        default=SENSITIVITY_TARGET,
        help="target of the cross-fitted operating point",
    )
    p.add_argument("--pca-train", help="normals .npz to fit the PCA baseline on")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plots", help="directory for ROC curves, histograms, reconstructions")
    p.add_argument(
        "--robustness",
        action="store_true",
        help="normals flagged after brightness, contrast, gamma, flip, rotation and crop changes",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="score DICOM images")
    p.add_argument("files", nargs="+")
    p.add_argument("--model")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true")
    p.add_argument("--pictures", help="folder for a PNG of each image's anomaly map, as in the SC")
    p.set_defaults(func=cmd_score)
