"""The domain check on the image itself: how unlike the training normals an image is, as the
members' mean `code_distance` (model.members: the Mahalanobis distance of the code E(x) to the
codes of the training normals; `AnomalyModel.code_distances`). An image farther than
`threshold` is not scored: nothing the model learnt says what its score would mean.

The distance is also an anomaly signal (pneumonia lies farther than normals; it is one of the
score's statistics), so the threshold sits far above every held-out normal: it refuses only
images unlike any chest X-ray in the training data (see the model card for what it catches
and what it does not).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Typicality:
    held_out: list[float]  # distances of the held-out normals, sorted
    threshold: float  # refused above this distance

    def p_value(self, distance: float) -> float:
        """Share of held-out normals at least this far (with one added, so never 0)."""
        beyond = len(self.held_out) - bisect.bisect_left(self.held_out, distance)
        return (1 + beyond) / (1 + len(self.held_out))

    def problem(self, distance: float) -> str | None:
        if distance <= self.threshold:
            return None
        p = self.p_value(distance)
        shown = f"p<{p:.2g}" if p <= 1 / (1 + len(self.held_out)) else f"p={p:.2g}"
        return (
            f"image unlike the model's training data (typicality {shown}: distance "
            f"{distance:.1f}, refused above {self.threshold:.1f})"
        )

    def to_dict(self) -> dict:
        return {
            "held_out": [round(d, 4) for d in self.held_out],
            "threshold": round(self.threshold, 4),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Typicality:
        return cls(sorted(float(x) for x in d["held_out"]), float(d["threshold"]))
