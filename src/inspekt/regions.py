"""Masks into regions, the same way for every task that draws them (segmentation, anomaly):
morphological clean-up and connected components with their class, box, area and scores."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from inspekt.card import PostProcess


def clean_mask(foreground: np.ndarray, post: PostProcess) -> np.ndarray:
    """Morphological opening then closing (elliptical kernel of ``post.kernel`` pixels), then
    removal of connected components smaller than ``post.min_area`` pixels. Returns a bool map."""
    mask = foreground.astype(np.uint8)
    if post.kernel > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (post.kernel, post.kernel))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    if post.min_area > 1 and mask.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        keep = np.zeros(n, dtype=bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= post.min_area
        mask = keep[labels].astype(np.uint8)
    return mask.astype(bool)


def components(mask: np.ndarray, defect: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """One record per connected defect region, largest first.

    Returns:
        Dicts with ``class`` (the majority class of its pixels), ``bbox`` [x, y, width, height],
        ``area_px``, ``area_pct`` (of the image), ``mean_score`` and ``max_score`` (defect probability).
    """
    if not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    total = mask.size
    found = []
    for i in range(1, n):
        region = labels == i
        votes = np.bincount(mask[region], minlength=len(classes))
        votes[0] = 0
        scores = defect[region]
        x, y, w, h, area = (int(v) for v in stats[i])
        found.append(
            {
                "class": classes[int(votes.argmax())],
                "bbox": [x, y, w, h],
                "area_px": area,
                "area_pct": round(100.0 * area / total, 4),
                "mean_score": round(float(scores.mean()), 4),
                "max_score": round(float(scores.max()), 4),
            }
        )
    return sorted(found, key=lambda c: -c["area_px"])
