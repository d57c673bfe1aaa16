"""One window layout and one blend loop for every tiled model (segmentation, anomaly).

A tiled card (``input.resize == "tile"``) scales the image by ``input.scale`` and runs the model on
overlapping windows of ``input.size``. Training crops the same windows (``window_boxes``), and
prediction blends the windows' maps with weights that fall towards each window's border, so seams
do not show and a 4000x3000 image needs nothing special from the caller. Pure NumPy / OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from inspekt.card import InputSpec
from inspekt.transforms import normalize

# NCHW float32 windows -> the maps to blend, by name: (N, C, window height, window width) each
RunMaps = Callable[[np.ndarray], dict[str, np.ndarray]]


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``window`` pixels covering ``length`` (>= window) with the given
    overlap; the last window ends exactly at ``length``."""
    if length <= window:
        return [0]
    stride = max(1, int(round(window * (1 - overlap))))
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def window_boxes(padded_hw: tuple[int, int], spec: InputSpec) -> list[tuple[int, int]]:
    """Top-left corners of the overlapping ``spec.size`` windows that cover a (padded) image: the
    windows tiled training crops and tiled prediction runs on."""
    (h, w), (wh, ww) = padded_hw, spec.size
    return [(y, x) for y in window_starts(h, wh, spec.overlap) for x in window_starts(w, ww, spec.overlap)]


def blend_weights(height: int, width: int) -> np.ndarray:
    """Window weights: 1 in the middle, falling linearly to 0.05 at the border."""
    ramp = lambda n: np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) / (n / 2)  # noqa: E731
    weights = np.outer(np.clip(ramp(height), 0.05, 1), np.clip(ramp(width), 0.05, 1))
    return weights.astype(np.float32)


def pad_to_window(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Reflect-pad an image (or mask) at the bottom/right to at least ``size``; training and tiled
    inference pad the same way."""
    h, w = image.shape[:2]
    pad_h, pad_w = max(0, size[0] - h), max(0, size[1] - w)
    if not pad_h and not pad_w:
        return image
    mode = cv2.BORDER_REFLECT_101 if min(h, w) > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, mode)


def blend_tiles(prepared: np.ndarray, spec: InputSpec, run: RunMaps, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Run a model over the overlapping windows of a prepared (scaled) image and blend its maps.

    Args:
        prepared: HxW or HxWx3 uint8 image at the tiling scale (``transforms.prepare`` output).
        spec: the card's input specification (window size and overlap).
        run: normalised NCHW windows -> the (N, C, h, w) maps to blend, by name.
        batch_size: windows per model call.

    Returns:
        Each map, blended over the prepared image: (C, H, W) float32 by name.
    """
    h, w = prepared.shape[:2]
    wh, ww = spec.size
    padded = pad_to_window(prepared, spec.size)
    boxes, weights = window_boxes(padded.shape[:2], spec), blend_weights(wh, ww)
    ph, pw = padded.shape[:2]
    totals: dict[str, np.ndarray] = {}
    norm = np.zeros((ph, pw), dtype=np.float32)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        maps = run(np.stack([normalize(padded[y : y + wh, x : x + ww], spec) for y, x in chunk]))
        for name, values in maps.items():
            total = totals.setdefault(name, np.zeros((values.shape[1], ph, pw), dtype=np.float32))
            for (y, x), value in zip(chunk, values):
                total[:, y : y + wh, x : x + ww] += value * weights
        for y, x in chunk:
            norm[y : y + wh, x : x + ww] += weights
    return {name: (total / norm)[:, :h, :w] for name, total in totals.items()}
