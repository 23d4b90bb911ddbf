"""Calibration of the anomaly statistics against held-out normal images.

Every statistic of every ensemble member is standardised with the mean and standard deviation
it had on normal images that training never saw; the member z-scores are averaged, and the
combined score is the weighted mean of the chosen statistics' z-scores. These figures are saved
with the model and never recomputed from the batch at hand (cf. anomalib's normalisation stage).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class Calibration:
    norms: list[dict[str, tuple[float, float]]]  # per member: statistic -> (mean, std)
    weights: dict[str, float]  # statistic -> weight in the combined score
    normal_scores: list[float]  # combined scores of the held-out normals, sorted
    threshold: float  # combined score at or above which an image is flagged abnormal
    operating_point: str  # how the threshold was chosen, for the model card and the SR
    extra: dict = field(default_factory=dict)
    # An image and its mirror image get the same score, the lower of the two (model card:
    # a left-right flip is a harmless change for this triage).
    mirror_invariant: bool = False
    # The anomaly map (model.saliency): mean saliency of the held-out normals, (S * S,), and
    # the range of their excess over it that the map spans (model.saliency.MAP_RANGE); None:
    # a model calibrated before maps were.
    saliency_baseline: tuple[float, ...] | None = None
    saliency_range: tuple[float, float] = (0.0, 1.0)

    def standardise(self, member_stats: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Average over members of each statistic's z-score against normals."""
        names = self.norms[0].keys()  # a model calibrated before a statistic existed lacks it
        out = {}
        for name in names:
            zs = [
                (stats[name] - norm[name][0]) / norm[name][1]
                for stats, norm in zip(member_stats, self.norms)
            ]
            out[name] = torch.stack(zs, 0).mean(0)
        return out

    def combine(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        total = sum(self.weights.values())
        return sum(w * z[name] for name, w in self.weights.items()) / total

    def percentile(self, score: float) -> float:
        """Percentage of held-out normal images whose combined score is at or below `score`."""
        return 100.0 * bisect.bisect_right(self.normal_scores, score) / len(self.normal_scores)

    def to_dict(self) -> dict:
        return {
            "norms": [{k: list(v) for k, v in n.items()} for n in self.norms],
            "weights": self.weights,
            "normal_scores": self.normal_scores,
            "threshold": self.threshold,
            "operating_point": self.operating_point,
            "extra": self.extra,
            "mirror_invariant": self.mirror_invariant,
            "saliency_baseline": (
                [round(v, 8) for v in self.saliency_baseline] if self.saliency_baseline else None
            ),
            "saliency_range": list(self.saliency_range),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(
            norms=[{k: (float(v[0]), float(v[1])) for k, v in n.items()} for n in d["norms"]],
            weights={k: float(v) for k, v in d["weights"].items()},
            normal_scores=sorted(float(s) for s in d["normal_scores"]),
            threshold=float(d["threshold"]),
            operating_point=str(d["operating_point"]),
            extra=dict(d.get("extra", {})),
            mirror_invariant=bool(d.get("mirror_invariant", False)),
            saliency_baseline=(
                tuple(float(v) for v in d["saliency_baseline"])
                if d.get("saliency_baseline")
                else None
            ),
            saliency_range=tuple(float(v) for v in d.get("saliency_range", (0.0, 1.0))),
        )


def fit_norms(member_stats: list[dict[str, torch.Tensor]]) -> list[dict[str, tuple[float, float]]]:
    """Mean and standard deviation of each statistic on held-out normals, per member."""
    return [
        {k: (float(v.mean()), max(float(v.std()), 1e-8)) for k, v in stats.items()}
        for stats in member_stats
    ]


def threshold_at_sensitivity(scores: np.ndarray, labels: np.ndarray, sensitivity: float) -> float:
    """Highest threshold that flags at least `sensitivity` of the abnormal images (label 1)."""
    abnormal = np.sort(scores[labels == 1])
    if abnormal.size == 0:
        raise ValueError("threshold_at_sensitivity needs at least one abnormal image")
    missed = int(np.floor((1.0 - sensitivity) * abnormal.size + 1e-9))
    return float(abnormal[missed])
