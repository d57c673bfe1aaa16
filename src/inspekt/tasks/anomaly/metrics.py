"""Anomaly thresholds and metrics: calibration of the image and pixel thresholds, the scale of
the normalisation that maps them to 0.5, and pixel-level AUROC / AUPRO from histograms (so a test set of any
size and resolution is scored in constant memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LOGIT_RANGE = 16.0  # normalised maps are binned on the logit scale in [-16, 16] (float32 saturates beyond)
BINS = 2000
FPR_LIMIT = 0.3  # AUPRO integrates the per-region overlap up to this false-positive rate (Bergmann et al.)


@dataclass(frozen=True)
class Calibration:
    """A calibrated raw threshold, its normalisation scale, and how it was chosen."""

    threshold: float
    scale: float
    method: str
    warning: str = ""


def best_f1_threshold(normal: np.ndarray, anomalous: np.ndarray) -> tuple[float, float]:
    """The raw threshold with the best F1 (anomalous = positive) and that F1; the threshold is the
    midpoint between the two scores it separates, so it never sits on a score."""
    scores = np.concatenate([normal, anomalous])
    truth = np.r_[np.zeros(len(normal), bool), np.ones(len(anomalous), bool)]
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order]
    tp = np.cumsum(truth)
    fp = np.cumsum(~truth)
    f1 = 2 * tp / (tp + fp + len(anomalous))
    distinct = np.r_[scores[1:] < scores[:-1], True]  # cut only between different scores
    best = int(np.argmax(np.where(distinct, f1, -1)))
    below = scores[best + 1] if best + 1 < len(scores) else scores[best] - abs(scores[best]) * 1e-3 - 1e-6
    return float((scores[best] + below) / 2), float(f1[best])


MEDIAN_AT = 9.0  # the median normal value lands this many scale units below the threshold: 0.05 normalised


def normal_scale(normal: np.ndarray, threshold: float) -> float:
    """Raw units per unit of ``anomaly.normalise``: the median normal value lands at 0.05."""
    spread = (threshold - float(np.median(normal))) / MEDIAN_AT
    if spread <= 0:
        spread = float(np.std(normal))
    return max(spread, abs(threshold) * 1e-4, 1e-8)


def _quantile_rule(normal: np.ndarray, quantile: float) -> tuple[float, str]:
    # just above the order statistic, so that share of normal images stays below it
    threshold = float(np.quantile(normal, quantile, method="higher"))
    threshold += 1e-3 * max(float(np.std(normal)), abs(threshold) * 1e-3, 1e-9)
    label = f"{quantile:.1%} quantile of {len(normal)} normal validation scores"
    if len(normal) < 1 / (1 - quantile):
        label += " (fewer images than the quantile needs: the largest score)"
    return threshold, label


def calibrate(
    normal: np.ndarray, anomalous: np.ndarray | None, method: str, quantile: float, sigma: float
) -> Calibration:
    """Choose a raw threshold from validation scores.

    Args:
        normal: raw scores of normal validation images (or pixels).
        anomalous: raw scores of anomalous validation images (or pixels), or None / empty.
        method: auto (f1 when anomalous scores exist, else quantile), f1, quantile or sigma. A best-F1
            threshold that would flag most normal images falls back to the quantile rule (with a warning).
        quantile: share of normal scores below the threshold (quantile method).
        sigma: the threshold is mean + sigma * std (sigma method).

    Returns:
        The threshold, the normalisation scale, the method used and a warning when the result is weak.

    Raises:
        ValueError: f1 without anomalous scores, no normal scores, or non-finite scores.
    """
    normal = np.asarray(normal, dtype=np.float64)
    anomalous = np.asarray(anomalous if anomalous is not None else [], dtype=np.float64)
    if not len(normal) or not np.isfinite(normal).all() or not np.isfinite(anomalous).all():
        raise ValueError(
            "the model gives no or non-finite validation scores (training diverged?); lower the "
            "learning rate (lr=) or try another method"
        )
    method = ("f1" if len(anomalous) else "quantile") if method == "auto" else method
    if method == "f1" and not len(anomalous):
        raise ValueError("calibration f1 needs anomalous validation images; use quantile or sigma")
    warning = ""
    if method == "f1":
        threshold, f1 = best_f1_threshold(normal, anomalous)
        false_alarms = float((normal >= threshold).mean())
        if false_alarms <= 0.5:
            label = f"best F1 {f1:.3f} on {len(normal)} normal + {len(anomalous)} anomalous validation images"
            return Calibration(threshold, normal_scale(normal, threshold), label)
        warning = (
            f"the best-F1 threshold would flag {false_alarms:.0%} of the normal validation images (the model "
            "hardly separates them), so the quantile rule was used; check the data or try another method"
        )
    if method == "sigma":
        threshold = float(normal.mean() + sigma * normal.std())
        label = f"mean + {sigma:g} std of {len(normal)} normal validation scores"
    else:
        threshold, label = _quantile_rule(normal, quantile)
    if np.ptp(normal) == 0:
        threshold += abs(threshold) * 1e-3 + 1e-6  # all normal scores equal: never flag them all
        warning = (
            "the threshold rests on a single normal validation image: give more normal images"
            if len(normal) == 1
            else "every normal validation image has the same score: the model is not discriminating"
        )
    return Calibration(threshold, normal_scale(normal, threshold), label, warning)


def truth_mask(sample, shape: tuple[int, int]) -> np.ndarray | None:
    """A dataset sample's anomaly mask as booleans (mask value >= 128) at ``shape``, or None without a
    mask file.

    Raises:
        DatasetError: an unreadable mask or one of another size than its image.
    """
    from inspekt.data.masks import MaskRule

    return None if sample.mask is None else MaskRule("binary", ("normal", "anomaly")).target(sample, shape) > 0


def _edges() -> np.ndarray:
    """Bin edges on [0, 1] that are uniform on the logit scale."""
    z = np.linspace(-LOGIT_RANGE, LOGIT_RANGE, BINS - 1)
    return 1.0 / (1.0 + np.exp(-z))


class PixelTally:
    """Histograms of normalised anomaly-map values: over normal pixels, anomalous pixels, and per
    ground-truth region (for AUPRO). Add images one at a time."""

    def __init__(self):
        self.edges = _edges()
        self.negative = np.zeros(BINS, np.int64)
        self.positive = np.zeros(BINS, np.int64)
        self.regions: list[np.ndarray] = []

    def _hist(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(self.edges, values.ravel()), minlength=BINS)

    def add(self, heat: np.ndarray, truth: np.ndarray) -> None:
        """One image: its normalised map (HxW in [0, 1]) and its boolean ground-truth mask (same size)."""
        self.negative += self._hist(heat[~truth])
        if truth.any():
            self.positive += self._hist(heat[truth])
            n, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
            for region in range(1, n):
                self.regions.append(self._hist(heat[labels == region]))

    @staticmethod
    def _rates(counts: np.ndarray) -> np.ndarray:
        """Share of values at or above each bin, from the highest bin down (threshold decreasing)."""
        above = np.cumsum(counts[::-1])
        return above / max(1, above[-1])

    def auroc(self) -> float | None:
        """Pixel AUROC (ties within a bin count half); None without both kinds of pixels."""
        if not self.positive.any() or not self.negative.any():
            return None
        tpr, fpr = np.r_[0, self._rates(self.positive)], np.r_[0, self._rates(self.negative)]
        return float(np.trapezoid(tpr, fpr))

    def aupro(self, limit: float = FPR_LIMIT) -> float | None:
        """Area under the per-region-overlap curve up to ``limit`` false-positive rate, divided by
        ``limit`` (1 = every region fully found before any false alarm); None without regions."""
        if not self.regions or not self.negative.any():
            return None
        fpr = np.r_[0, self._rates(self.negative)]
        pro = np.r_[0, np.mean([self._rates(r) for r in self.regions], axis=0)]
        cut = np.searchsorted(fpr, limit, side="right")
        x, y = fpr[:cut], pro[:cut]
        if cut < len(fpr):  # close the curve exactly at the limit
            x = np.r_[x, limit]
            y = np.r_[y, np.interp(limit, fpr[cut - 1 : cut + 1], pro[cut - 1 : cut + 1])]
        return float(np.trapezoid(y, x) / limit)
