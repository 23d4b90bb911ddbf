"""The shipped anomaly model: an ensemble of GAN members plus their calibration, on disk.

A model directory holds ``model.json`` (recipe, member seeds, calibration), ``weights.safetensors``
(loaded without unpickling) and ``MODEL_CARD.md``. Inference returns one `ImageScore` per image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dicom_node.errors import ModelFileError
from dicom_node.model.calibration import Calibration
from dicom_node.model.members import GanMember
from dicom_node.model.population import Population
from dicom_node.model.recipe import Recipe
from dicom_node.model.saliency import anomaly_maps
from dicom_node.model.scores import ImageScore
from dicom_node.model.typicality import Typicality

FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"


@dataclass
class RawAnalysis:
    member_stats: list[dict[str, torch.Tensor]]
    reconstruction: torch.Tensor  # member-mean (N, 1, S, S)
    difference: torch.Tensor  # member-mean (N, 1, S, S)


@dataclass
class Assessment:
    statistics: dict[str, torch.Tensor]  # name -> (N,) z-score, member mean
    combined: torch.Tensor  # (N,) the score
    mirrored: torch.Tensor  # (N,) bool: the mirror image scored lower, and was kept
    raw: RawAnalysis  # of the images as given

    def oriented(self, x: torch.Tensor) -> torch.Tensor:
        """The images as they were scored: mirrored where their mirror image was kept."""
        return torch.where(self.mirrored[:, None, None, None], torch.flip(x, dims=[-1]), x)


class AnomalyModel:
    def __init__(
        self,
        name: str,
        recipe: Recipe,
        members: list[GanMember],
        calibration: Calibration | None,
        info: dict | None = None,
        population: Population | None = None,
        typicality: Typicality | None = None,
    ) -> None:
        self.name = name
        self.recipe = recipe
        self.members = members
        self.calibration = calibration
        self.info = info or {}
        self.population = population  # None: the model declares none, nothing is refused
        self.typicality = typicality  # None: no domain check on the image itself
        for m in self.members:
            m.eval()

    @property
    def image_size(self) -> int:
        return self.recipe.image_size

    @property
    def device(self) -> torch.device:
        return next(self.members[0].parameters()).device

    @torch.no_grad()
    def analyse(self, x: torch.Tensor, batch_size: int = 256) -> RawAnalysis:
        """Raw statistics of every member for model inputs (N, 1, S, S) in [-1, 1]."""
        stats: list[dict[str, list[torch.Tensor]]] = [{} for _ in self.members]
        recs, diffs = [], []
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size].to(self.device)
            rec_sum = torch.zeros_like(batch)
            diff_sum = torch.zeros_like(batch)
            for i, member in enumerate(self.members):
                out = member.analyse(batch)
                for k, v in out.statistics.items():
                    stats[i].setdefault(k, []).append(v.float().cpu())
                rec_sum += out.reconstruction
                diff_sum += out.difference
            recs.append((rec_sum / len(self.members)).cpu())
            diffs.append((diff_sum / len(self.members)).cpu())
        member_stats = [{k: torch.cat(v) for k, v in s.items()} for s in stats]
        return RawAnalysis(member_stats, torch.cat(recs), torch.cat(diffs))

    def assess(self, x: torch.Tensor, calibration: Calibration | None = None) -> Assessment:
        """Standardised statistics and combined scores of model inputs (N, 1, S, S). Every
        path that scores (the node, `score`, `evaluate`, calibration) comes through here."""
        cal = calibration or self._calibration()
        n = x.shape[0]
        both = torch.cat([x, torch.flip(x, dims=[-1])]) if cal.mirror_invariant else x
        raw = self.analyse(both)  # one pass: a single image costs hardly more than before
        z = cal.standardise(raw.member_stats)
        combined = cal.combine(z)
        mirrored = torch.zeros(n, dtype=torch.bool)
        if cal.mirror_invariant:
            mirrored = combined[n:] < combined[:n]
            z = {k: torch.where(mirrored, v[n:], v[:n]) for k, v in z.items()}
            combined = torch.minimum(combined[:n], combined[n:])
            raw = RawAnalysis(
                [{k: v[:n] for k, v in s.items()} for s in raw.member_stats],
                raw.reconstruction[:n],
                raw.difference[:n],
            )
        return Assessment(z, combined, mirrored, raw)

    def score(self, x: torch.Tensor) -> list[ImageScore]:
        cal = self._calibration()
        assessed = self.assess(x, cal)
        maps = self.anomaly_maps(x, assessed)
        results = []
        for i in range(x.shape[0]):
            score = float(assessed.combined[i])
            mirrored = bool(assessed.mirrored[i])
            results.append(
                ImageScore(
                    statistics={k: float(v[i]) for k, v in assessed.statistics.items()},
                    score=score,
                    percentile=cal.percentile(score),
                    abnormal=score >= cal.threshold,
                    anomaly_map=maps[i],
                    mirrored=mirrored,
                )
            )
        return results

    def anomaly_maps(self, x: torch.Tensor, assessed: Assessment) -> np.ndarray:
        """(N, S, S) maps of `x` as each image is given: an image scored as its mirror image
        gets that image's map mirrored back."""
        oriented = assessed.oriented(x).to(self.device)
        maps = anomaly_maps(self.members, self._calibration(), oriented)
        return np.where(assessed.mirrored.numpy()[:, None, None], maps[:, :, ::-1], maps)

    def _calibration(self) -> Calibration:
        if self.calibration is None:
            raise ModelFileError(f"model {self.name} has no calibration; run training to the end")
        return self.calibration

    @torch.no_grad()
    def code_distances(self, x: torch.Tensor) -> np.ndarray:
        """(N,) the members' mean `code_distance` of model inputs, for the domain check: the
        encoders alone, so an image is checked before the whole model runs on it."""
        x = x.to(self.device)
        per_member = [m.code_distance(m.encode(x)) for m in self.members]
        return torch.stack(per_member).mean(0).double().cpu().numpy()

    def unlike_training(self, x: torch.Tensor) -> str | None:
        """The domain check of one model input (1, 1, S, S): why it is refused, or None (also
        for a model without a domain check)."""
        if self.typicality is None:
            return None
        return self.typicality.problem(float(self.code_distances(x)[0]))

    def round_to_stored(self) -> None:
        """Weights rounded to the precision `save` stores, so that what is calibrated on them
        is what is shipped."""
        for m in self.members:
            m.load_state_dict({k: _stored(v).to(v.dtype) for k, v in m.state_dict().items()})

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"member{i}.{k}": _stored(v).detach().cpu().contiguous()
            for i, m in enumerate(self.members)
            for k, v in m.state_dict().items()
        }
        save_file(tensors, str(directory / WEIGHTS))
        meta = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "recipe": self.recipe.to_dict(),
            "members": len(self.members),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "info": self.info,
            "population": self.population.to_dict() if self.population else None,
            "typicality": self.typicality.to_dict() if self.typicality else None,
        }
        (directory / MODEL_JSON).write_text(json.dumps(meta, indent=1) + "\n")


CODE_DISTRIBUTION = ("code_mean", "code_whitening")


def _legacy_code_distribution(
    member: GanMember, index: int, missing: list[str], typicality: dict | None
) -> list[str]:
    """A model saved before members held their code distribution (version 1.1 and earlier)
    kept it in model.json's domain check: moved into the member. Without one the distance
    stays 0 and only a calibration that does not use it can score. The keys still missing."""
    if not set(CODE_DISTRIBUTION) <= set(missing):
        return missing
    if typicality and "means" in typicality:
        member.set_code_distribution(
            torch.tensor(typicality["means"][index], dtype=torch.float32),
            torch.tensor(typicality["precisions"][index], dtype=torch.float32),
        )
    return [k for k in missing if k not in CODE_DISTRIBUTION]


def _stored(v: torch.Tensor) -> torch.Tensor:
    """Stored as float16 (half the size; scores change by < 1e-3), loaded back as float32."""
    return v.half() if v.is_floating_point() else v


def pick_device(name: str) -> torch.device:
    """`auto` (a GPU when torch sees one), `cpu` or `cuda`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelFileError("device cuda: no CUDA device is visible to torch")
    return torch.device(name)


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> AnomalyModel:
    """Load a model directory; any missing, truncated or incompatible file names itself."""
    directory = Path(directory)
    meta_path, weights_path = directory / MODEL_JSON, directory / WEIGHTS
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ModelFileError(f"{path}: model file missing; is the model path right?")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ModelFileError(
                f"{meta_path}: model format {meta.get('format')!r}, "
                f"this node reads {FORMAT_VERSION}"
            )
        recipe = Recipe.from_dict(meta["recipe"])
        calibration = Calibration.from_dict(meta["calibration"]) if meta["calibration"] else None
        n_members = int(meta["members"])
        population = meta.get("population") and Population.from_dict(meta["population"])
        typicality = meta.get("typicality") and Typicality.from_dict(meta["typicality"])
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{meta_path}: unreadable model description ({exc})") from exc
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:
        raise ModelFileError(f"{weights_path}: truncated or corrupt weights ({exc})") from exc
    members = []
    for i in range(n_members):
        member = GanMember(recipe)
        prefix = f"member{i}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            missing, unexpected = member.load_state_dict(state, strict=False)
            missing = _legacy_code_distribution(member, i, missing, meta.get("typicality"))
        except RuntimeError as exc:  # shapes differ
            raise ModelFileError(
                f"{weights_path}: weights do not fit the recipe in {meta_path} ({str(exc)[:300]})"
            ) from exc
        if missing or unexpected:
            raise ModelFileError(
                f"{weights_path}: weights do not fit the recipe in {meta_path} (member {i}: "
                f"{len(missing)} missing tensor(s) such as {missing[:1]}, "
                f"{len(unexpected)} unexpected such as {unexpected[:1]})"
            )
        members.append(member.to(device))
    return AnomalyModel(
        meta["name"],
        recipe,
        members,
        calibration,
        meta.get("info", {}),
        population or None,
        typicality or None,
    )
