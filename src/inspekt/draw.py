"""Small drawing helpers for saved predictions: a label banner over the image (OpenCV, no torch)."""

from __future__ import annotations

import cv2
import numpy as np

from .transforms import to_channels


def banner(image: np.ndarray, text: str) -> np.ndarray:
    """The image as RGB with ``text`` on a dark strip along its top edge, scaled to the image width.

    Args:
        image: HxW or HxWx3 uint8.
        text: one line, e.g. ``"scratch 0.93"``.

    Returns:
        A new HxWx3 uint8 array of the same size.
    """
    out = to_channels(image, 3).copy()
    height, width = out.shape[:2]
    scale = max(0.3, min(2.0, width / 640))
    thickness = max(1, round(scale * 1.5))
    (text_w, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    strip = min(height, text_h + base + 8)
    out[:strip] = (out[:strip] * 0.35).astype(np.uint8)
    cv2.putText(out, text, (4, min(height - 1, text_h + 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)
    return out
