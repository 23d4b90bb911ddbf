"""The anomaly model on a tiny configuration: training steps, statistics, calibration, files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dicom_node.app.cli import main
from dicom_node.errors import ModelFileError
from dicom_node.model.calibration import Calibration, fit_norms, threshold_at_sensitivity
from dicom_node.model.ensemble import AnomalyModel, load_model
from dicom_node.model.members import GanMember
from dicom_node.model.recipe import ALPHA_GAN_STATISTICS, BIGAN_STATISTICS, Architecture, Recipe
from dicom_node.samples import SAMPLES_DIR
from dicom_node.training.steps import make_optimisers, sample_diversity, train_epoch

TINY = dict(image_size=32, z_dim=8, base_width=4, batch_size=8, epochs=1)


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1


@pytest.mark.parametrize("arch", list(Architecture))
def test_training_steps_move_every_network(arch):
    torch.manual_seed(0)
    member = GanMember(Recipe(arch=arch, **TINY))
    before = {k: v.clone() for k, v in member.state_dict().items()}
    opt = make_optimisers(member)
    losses = list(train_epoch(member, opt, images(), torch.Generator().manual_seed(0)))
    assert len(losses) == 2 and all(np.isfinite(v) for step in losses for v in step.values())
    for name in ("encoder", "generator", "discriminator"):
        changed = [
            not torch.equal(before[k], v)
            for k, v in member.state_dict().items()
            if k.startswith(name) and v.dtype.is_floating_point
        ]
        assert any(changed), f"{name} did not learn"
    assert sample_diversity(member) > 0


@pytest.mark.parametrize(
    "arch,names",
    [(Architecture.ALPHA_GAN, ALPHA_GAN_STATISTICS), (Architecture.BIGAN, BIGAN_STATISTICS)],
)
def test_statistics_have_one_value_per_image(arch, names):
    member = GanMember(Recipe(arch=arch, **TINY)).eval()
    out = member.analyse(images(5))
    assert tuple(out.statistics) == names
    assert all(v.shape == (5,) for v in out.statistics.values())
    assert out.difference.shape == (5, 1, 32, 32)


def test_reconstruction_error_grows_with_the_difference():
    member = GanMember(Recipe(**TINY, standardise_input=False)).eval()  # x is what E sees
    x = images(4)
    rec = member.generator(member.encoder(x)).detach()
    far = member.analyse(-rec).statistics["recon"]
    near = member.analyse(rec).statistics["recon"]
    assert bool((far > near).all())


def test_discriminator_snapshots_are_taken_and_averaged():
    recipe = Recipe(**{**TINY, "epochs": 4, "disc_snapshots_from": 0.5, "disc_snapshot_every": 1})
    assert recipe.disc_snapshot_epochs == [2, 3, 4]
    torch.manual_seed(0)
    member = GanMember(recipe)
    assert len(member.disc_snapshots) == 2
    opt = make_optimisers(member)
    x = images()
    for epoch in range(1, 5):
        list(train_epoch(member, opt, x, torch.Generator().manual_seed(epoch)))
        member.take_disc_snapshot(epoch)
    member.eval()
    seen = member.prepare(x)
    live = member.discriminator(seen)
    snaps = [d(seen) for d in member.disc_snapshots]
    assert not torch.allclose(snaps[0], live)  # taken at epoch 2, D moved on since
    expected = -torch.stack([live, *snaps]).mean(0)
    assert torch.allclose(member.analyse(x).statistics["disc"], expected, atol=1e-5)


def test_a_standardising_model_sees_the_same_input_after_a_change_of_exposure():
    torch.manual_seed(0)
    x = images(3) * 0.8  # inside [-1, 1]: the change below clips nothing
    changed = x * 1.1 + 0.05  # more contrast, brighter
    standardising = GanMember(Recipe(**TINY)).eval()  # the default
    before, after = standardising.analyse(x).statistics, standardising.analyse(changed).statistics
    for name in before:
        assert torch.allclose(before[name], after[name], atol=1e-4), name
    plain = GanMember(Recipe(**TINY, standardise_input=False)).eval()
    assert not torch.allclose(
        plain.analyse(x).statistics["disc"], plain.analyse(changed).statistics["disc"]
    )
    saved = {k: v for k, v in Recipe(**TINY).to_dict().items() if k != "standardise_input"}
    assert not Recipe.from_dict(saved).standardise_input  # a model saved before the field


def tiny_model(members: int = 2) -> AnomalyModel:
    torch.manual_seed(0)
    ms = [GanMember(Recipe(**TINY)) for _ in range(members)]
    model = AnomalyModel("tiny", Recipe(**TINY), ms, None)
    norms = fit_norms(model.analyse(images(20, seed=1)).member_stats)
    model.calibration = Calibration(
        norms,
        {"recon": 1.0, "disc": 1.0},
        sorted(np.linspace(-1, 1, 21).tolist()),
        0.5,
        "test point",
    )
    return model


def test_calibration_standardises_against_normals_not_the_batch():
    model = tiny_model()
    held = images(20, seed=1)
    z = model.calibration.standardise(model.analyse(held).member_stats)
    assert abs(float(z["recon"].mean())) < 1e-4  # the held-out normals themselves: mean 0
    one = model.score(held[:1])[0]
    again = model.score(held[:3])[0]  # same image in a different batch: same score
    assert one.score == pytest.approx(again.score, abs=1e-5)


def test_percentile_and_flag():
    model = tiny_model()
    cal = model.calibration
    assert cal.percentile(-5) == 0 and cal.percentile(5) == 100
    assert cal.percentile(0.0) == pytest.approx(100 * 11 / 21)
    scores = model.score(images(3))
    assert all(s.abnormal == (s.score >= cal.threshold) for s in scores)


def test_threshold_reaches_the_requested_sensitivity():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    t = threshold_at_sensitivity(scores, labels, 0.8)
    assert (scores[labels == 1] >= t).mean() >= 0.8 and t == pytest.approx(0.7)


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = images(3, seed=5)
    for a, b in zip(model.score(x), loaded.score(x)):  # weights are stored as float16
        assert a.score == pytest.approx(b.score, abs=2e-3)


def test_code_distance_is_the_mahalanobis_distance_to_the_training_normals_codes():
    from sklearn.covariance import LedoitWolf

    from dicom_node.training.domain import fit_code_distributions

    model = tiny_model(members=1)
    member = model.members[0]
    assert not member.analyse(images(3)).statistics["code_distance"].any()  # not fitted yet
    train = images(40, seed=2)
    fit_code_distributions(model, train)
    fit = LedoitWolf().fit(member.encode(train).detach().double().numpy())
    x = images(3, seed=3)
    c = member.encode(x).detach().double().numpy() - fit.location_
    expected = np.sqrt(np.einsum("ij,jk,ik->i", c, fit.precision_, c))
    got = member.analyse(x).statistics["code_distance"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    np.testing.assert_allclose(model.code_distances(x), expected, rtol=1e-4)


def test_a_model_saved_before_members_held_their_code_distribution_loads_it(tmp_path):
    from safetensors.torch import load_file, save_file

    from dicom_node.training.domain import fit_code_distributions

    model = tiny_model()
    fit_code_distributions(model, images(40, seed=2))
    model.save(tmp_path)
    x = images(3, seed=3)
    expected = load_model(tmp_path).code_distances(x)
    # Version 1.1: the distribution was the domain check's, in model.json, not in the weights.
    weights, meta_path = tmp_path / "weights.safetensors", tmp_path / "model.json"
    tensors = load_file(weights)
    whitening = [tensors[f"member{i}.code_whitening"].double() for i in range(2)]
    kept = {k: v for k, v in tensors.items() if not k.endswith((".code_mean", ".code_whitening"))}
    save_file(kept, weights)
    meta = json.loads(meta_path.read_text())
    meta["typicality"] = {
        "means": [tensors[f"member{i}.code_mean"].tolist() for i in range(2)],
        "precisions": [(w @ w.T).tolist() for w in whitening],
        "held_out": [1.0, 2.0],
        "threshold": 5.2,
    }
    meta_path.write_text(json.dumps(meta))
    legacy = load_model(tmp_path)
    np.testing.assert_allclose(legacy.code_distances(x), expected, rtol=1e-3)
    assert legacy.typicality.threshold == 5.2


def test_missing_truncated_and_incompatible_files_name_themselves(tmp_path):
    model = tiny_model()
    model.save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="model.json: model file missing"):
        load_model(tmp_path / "nowhere")
    weights = tmp_path / "m" / "weights.safetensors"
    shutil.copy(weights, tmp_path / "w")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="weights.safetensors: truncated or corrupt"):
        load_model(tmp_path / "m")
    shutil.copy(tmp_path / "w", weights)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["recipe"]["base_width"] = 8
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="weights do not fit the recipe"):
        load_model(tmp_path / "m")
    meta["format"] = 99
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="model format 99"):
        load_model(tmp_path / "m")


def test_too_few_normals_are_refused_with_the_minimum(tmp_path, capsys):
    import pydicom

    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(5):
        ds = pydicom.dcmread(SAMPLES_DIR / "zhanglab_01_normal.dcm")
        ds.PatientID = f"FEW{i}"
        ds.save_as(folder / f"{i}.dcm")
    args = ["train", "--data", str(folder), "--out", str(tmp_path / "m"), "--image-size", "32"]
    assert main([*args, "--device", "cpu", "--members", "1"]) == 2
    assert "training needs at least 16" in capsys.readouterr().err


def test_train_on_a_dicom_folder_then_score_and_evaluate(tmp_path, capsys, caplog):
    """A site trains on a folder of its own normal DICOM studies; the model then scores."""
    import pydicom

    folder = tmp_path / "normals"
    folder.mkdir()
    for i in range(20):  # twenty patients from the three normal samples
        name = ("zhanglab_01_normal.dcm", "zhanglab_02_normal.dcm", "zhanglab_05_normal.dcm")[i % 3]
        ds = pydicom.dcmread(SAMPLES_DIR / name)
        ds.PatientID = f"SITE{i}"
        ds.save_as(folder / f"{i}.dcm")
    (folder / "notes.txt").write_text("not DICOM: skipped with a warning")
    out = tmp_path / "site-model"
    assert (
        main(
            [
                "train",
                "--data",
                str(folder),
                "--out",
                str(out),
                "--image-size",
                "32",
                "--base-width",
                "4",
                "--epochs",
                "2",
                "--members",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (out / "diagnostics.jsonl").read_text().count("\n") == 2
    assert list((out / "samples").glob("*.png"))
    assert "batch size 8 instead of 64" in caplog.text  # 18 training images: 8 a batch
    capsys.readouterr()
    assert (
        main(
            [
                "score",
                "--model",
                str(out),
                "--json",
                "--pictures",
                str(tmp_path / "pictures"),
                str(SAMPLES_DIR / "zhanglab_03_pneumonia.dcm"),
                str(tmp_path / "missing.dcm"),
            ]
        )
        == 1
    )
    good, bad = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert set(good) >= {"score", "percentile", "abnormal", "statistics", "mirrored"}
    assert "not a readable DICOM file" in bad["error"] and "picture" not in bad
    with Image.open(good["picture"]) as picture:  # the SC's rendering, above the image a band
        assert picture.size[0] == 1008 and picture.size[1] > 616


def test_resume_continues_from_the_checkpoint(tmp_path, capsys):
    npz = tmp_path / "normals.npz"
    rng = np.random.default_rng(0)
    np.savez(
        npz,
        images=rng.integers(0, 255, (24, 40, 40), dtype=np.uint8),
        labels=np.zeros(24, np.uint8),
        patient_ids=np.array([f"p{i}" for i in range(24)]),
    )
    args = [
        "train",
        "--data",
        str(npz),
        "--out",
        str(tmp_path / "m"),
        "--image-size",
        "32",
        "--base-width",
        "4",
        "--batch-size",
        "8",
        "--members",
        "1",
        "--device",
        "cpu",
    ]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "3"]) == 0  # the same command, more epochs: resumes
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "m" / "diagnostics.jsonl").open()]
    assert epochs == [1, 2, 3]
    assert main([*args, "--epochs", "4", "--base-width", "8"]) == 2
    assert "checkpoint of another recipe" in capsys.readouterr().err


def test_geometric_augmentation_gives_each_image_its_own_change_at_the_models_size():
    from dicom_node.model.recipe import Recipe
    from dicom_node.training.steps import augment

    generator = torch.Generator().manual_seed(0)
    flip_only = Recipe(image_size=16, augment_shift=0, augment_flip=True)
    x = torch.rand(64, 1, 16, 16) * 2 - 1  # already at the model's size: no resize
    out = augment(x, flip_only, generator)
    mirrored = [torch.allclose(torch.flip(a, dims=[-1]), b, atol=1e-5) for a, b in zip(x, out)]
    kept = [torch.allclose(a, b, atol=1e-5) for a, b in zip(x, out)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 16 < sum(mirrored) < 48  # each image draws its own flip, about half of them
    full = Recipe(image_size=16, augment_flip=True, augment_rotate=5, augment_scale=0.05)
    assert full.training_resolution == 64 and Recipe(image_size=16).training_resolution == 16
    big = torch.rand(8, 1, 64, 64) * 2 - 1
    assert augment(big, full, generator).shape == (8, 1, 16, 16)
