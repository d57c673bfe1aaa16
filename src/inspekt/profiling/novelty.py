"""Is an image unlike the training images? Distance of its model embedding to the training images'.

A bundle's ``reference.json`` keeps, under ``"novelty"``, the embeddings of a sample of the training
images and a threshold: the 99th percentile of the held-out (validation) images' distances to them
(held-out images, because a training image's own embedding is in the set and would make every
distance look small). An image's score is its mean distance to its ``k`` nearest training embeddings
divided by that threshold, so a score above 1 means "further from the training images than 99% of
held-out images from the same source": ``unlike_training``. Pure NumPy: serving needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

K = 5  # nearest training embeddings averaged
PERCENTILE = 99.0  # of the held-out images' distances: the flag's threshold
MIN_HELD_OUT = 5  # fewer held-out embeddings give no usable threshold: no novelty check
KEY = "novelty"  # its entry in reference.json


@dataclass(frozen=True)
class Novelty:
    """Training embeddings (N, D) and the calibrated distance threshold."""

    embeddings: np.ndarray
    threshold: float
    k: int = K

    @classmethod
    def fit(cls, train: Sequence[Sequence[float]], held_out: Sequence[Sequence[float]]) -> Novelty | None:
        """Calibrate on ``held_out`` embeddings; None when there are too few of either to do so."""
        train_arr = np.asarray(train, dtype=np.float64)
        held = np.asarray(held_out, dtype=np.float64)
        if train_arr.ndim != 2 or held.ndim != 2 or len(train_arr) < 1 or len(held) < MIN_HELD_OUT:
            return None
        k = min(K, len(train_arr))
        distances = _knn_distance(train_arr, held, k)
        threshold = float(np.percentile(distances, PERCENTILE))
        return cls(train_arr, max(threshold, 1e-9), k)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) distance / threshold of each (N, D) embedding: above 1 is unlike the training images."""
        return _knn_distance(self.embeddings, np.asarray(embeddings, dtype=np.float64), self.k) / self.threshold

    def assess(self, embeddings: np.ndarray) -> list[dict[str, Any]]:
        """``{"score": float, "unlike_training": bool}`` of each (N, D) embedding (what a Prediction carries)."""
        return [{"score": round(float(s), 3), "unlike_training": bool(s > 1.0)} for s in self.scores(embeddings)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (embeddings at 4 significant digits, as the reference's other embeddings)."""
        return {
            "k": self.k,
            "percentile": PERCENTILE,
            "threshold": self.threshold,
            "embeddings": [[float(f"{v:.4g}") for v in row] for row in self.embeddings],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Novelty | None:
        """Read ``to_dict``'s output; None for anything missing or malformed (no check, no crash)."""
        try:
            embeddings = np.asarray(data["embeddings"], dtype=np.float64)
            threshold, k = float(data["threshold"]), int(data["k"])
        except (KeyError, TypeError, ValueError):
            return None
        if embeddings.ndim != 2 or not len(embeddings) or not np.isfinite(threshold) or threshold <= 0 or k < 1:
            return None
        return cls(embeddings, threshold, min(k, len(embeddings)))


def _knn_distance(reference: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q,) mean Euclidean distance of each query to its ``k`` nearest reference rows."""
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(f"embedding of {queries.shape[1]} values, the reference has {reference.shape[1]}")
    squared = (queries**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2 * queries @ reference.T
    distances = np.sqrt(np.maximum(squared, 0.0))
    return np.sort(distances, axis=1)[:, :k].mean(1)
