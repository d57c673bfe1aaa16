"""Suspect defect masks: where a drawn mask and an out-of-sample segmentation disagree most.

Three ways a mask is suspect, each scored 0..1:

* no defect drawn, but the model finds one it is sure of: score = its largest defect probability;
* a defect drawn, but the model sees none there: score = 1 - its mean defect probability inside;
* both found a defect, but they hardly overlap (drawn off, or around the wrong spot): score = 1 - IoU.

An image is flagged from ``FLAG`` up. What a model misses or adds everywhere is the model's fault,
not the masks': the summary gives the median IoU, so a person can tell the two apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspekt.curate.issues import DataIssue
from inspekt.data.dataset import Dataset
from inspekt.data.masks import MaskRule
from inspekt.results import Prediction

FLAG = 0.5  # masks scored from here are issues
SURE = 0.9  # a defect probability from which an undrawn defect counts


@dataclass(frozen=True)
class MaskCheck:
    """How one drawn mask compares with the model's segmentation of its image.

    Attributes:
        drawn: share of pixels drawn as defect.
        predicted: share of pixels the model calls defect (after its threshold and clean-up).
        iou: intersection over union of the two defect areas (None when both are empty).
        confidence: the model's largest defect probability anywhere in the image.
        inside: its mean defect probability inside the drawn defect (None when nothing is drawn).
    """

    drawn: float
    predicted: float
    iou: float | None
    confidence: float
    inside: float | None


def mask_checker(ds: Dataset) -> Callable[[Any], Callable[[str, Prediction], MaskCheck]]:
    """What ``cross_validate`` / ``from_bundle`` keep of each segmentation (``keep``): the comparison
    with the drawn mask, read with the model's mask rule; the maps themselves are dropped."""
    samples = {str(s.path): s for s in ds.samples}

    def for_card(card: Any) -> Callable[[str, Prediction], MaskCheck]:
        rule = MaskRule.from_card(card)

        def check(path: str, prediction: Prediction) -> MaskCheck:
            drawn = rule.target(samples[path], prediction.mask.shape) > 0
            found = prediction.mask > 0
            union = int((drawn | found).sum())
            return MaskCheck(
                drawn=float(drawn.mean()),
                predicted=float(found.mean()),
                iou=float((drawn & found).sum() / union) if union else None,
                confidence=float(prediction.heatmap.max()),
                inside=float(prediction.heatmap[drawn].mean()) if drawn.any() else None,
            )

        return check

    return for_card


def _verdict(check: MaskCheck) -> tuple[float, str, str | None]:
    """(score, why, suggested) of one image's mask."""
    if check.drawn == 0:
        if check.predicted > 0 and check.confidence >= SURE:
            share = f"{check.predicted:.2%} of the image"
            why = f"no defect drawn, but the model finds one (p {check.confidence:.2f}, {share})"
            return check.confidence, why, "defect"
        return 0.0, "", None
    if check.predicted == 0:
        inside = check.inside or 0.0
        why = f"a defect drawn ({check.drawn:.2%} of the image), but the model sees none there (mean p {inside:.2f})"
        return 1.0 - inside, why, "empty"
    iou = check.iou or 0.0
    return 1.0 - iou, f"drawn and predicted defects overlap little (IoU {iou:.2f})", None


def mask_issues(checks: dict[str, MaskCheck], splits: dict[str, str | None]) -> list[DataIssue]:
    """The images whose masks score ``FLAG`` or more, as issues (rank 0: ranked later)."""
    issues = []
    for path, check in checks.items():
        score, why, suggested = _verdict(check)
        if score >= FLAG:
            label = "defect" if check.drawn else "empty"
            issues.append(DataIssue(0, path, splits.get(path), "mask", float(score), label, suggested, why))
    return issues


def median_iou(checks: dict[str, MaskCheck]) -> float | None:
    """The median IoU over the images with a drawn defect (how good the judging model is), or None."""
    values = [c.iou or 0.0 for c in checks.values() if c.drawn > 0]
    return float(np.median(values)) if values else None
