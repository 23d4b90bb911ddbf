"""What scoring one image yields: the typed result the rest of the node passes on (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageScore:
    statistics: dict[str, float]  # statistic -> z-score against held-out normals
    score: float  # combined anomaly score (weighted mean z-score)
    percentile: float  # percentage of held-out normals scoring at or below this image
    abnormal: bool  # score at or above the model's operating point
    anomaly_map: np.ndarray  # (S, S) float32 in [0, 1]: where the score comes from (saliency)
    mirrored: bool = False  # scored as its mirror image (the lower of the two scores)

    def to_record(self) -> dict:
        return {
            "statistics": {k: round(v, 4) for k, v in self.statistics.items()},
            "score": round(self.score, 4),
            "percentile": round(self.percentile, 1),
            "abnormal": self.abnormal,
            "mirrored": self.mirrored,
        }
