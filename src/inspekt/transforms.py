"""Preprocessing defined by a model card: the one path from a decoded image to a model input.

Training, export, the Predictor, the app and the API all call ``preprocess_batch`` with the
card's ``InputSpec``; nothing else resizes or normalises images for a model. Pure NumPy /
OpenCV so that serving never needs torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inspekt.card import InputSpec

# Letterbox padding: mid-grey, so the border carries no edge the model could learn from.
PAD_VALUE = 114


@dataclass(frozen=True)
class Geometry:
    """Where the original image landed inside the model input, to map outputs back.

    ``scale_y``/``scale_x`` map original pixels to input pixels; ``top``/``left`` is the
    offset of the scaled image in the input (negative for a centre crop).
    """

    original_hw: tuple[int, int]
    scale_y: float
    scale_x: float
    top: int
    left: int


def _interpolation(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    # INTER_AREA avoids aliasing when shrinking (thin scratches survive); linear when growing.
    shrinking = dst_hw[0] * dst_hw[1] < src_hw[0] * src_hw[1]
    return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Return ``image`` as HxW (channels=1) or HxWx3 (channels=3) uint8.

    Args:
        image: HxW or HxWx3 uint8, as returned by ``inspekt.io.load_image(mode="keep")``.
        channels: 1 or 3.

    Returns:
        The converted array (the input itself when nothing changes).

    Raises:
        ValueError: on an array that is not an 8-bit image.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an HxW or HxWx3 uint8 image, got {image.dtype} {image.shape}")
    if channels == 1:
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def resize(image: np.ndarray, spec: InputSpec, *, mask: bool = False) -> tuple[np.ndarray, Geometry]:
    """Resize to the card's input size with its resize policy (stretch, letterbox, crop or tile).

    Args:
        image: HxW or HxWx3 uint8.
        spec: the card's input specification.
        mask: ``image`` is a class-index mask: nearest-neighbour interpolation, padding with 0.

    Returns:
        The resized image (input height x width; for ``tile`` the image scaled by ``spec.scale``,
        whose windows the model sees) and the geometry to map results back.
    """
    (h, w), (out_h, out_w) = image.shape[:2], spec.size
    method = (lambda src, dst: cv2.INTER_NEAREST) if mask else _interpolation
    if spec.resize == "tile":
        new_h, new_w = max(1, round(h * spec.scale)), max(1, round(w * spec.scale))
        out = (
            image
            if (new_h, new_w) == (h, w)
            else cv2.resize(image, (new_w, new_h), interpolation=method((h, w), (new_h, new_w)))
        )
        return out, Geometry((h, w), new_h / h, new_w / w, 0, 0)
    if spec.resize == "stretch":
        out = cv2.resize(image, (out_w, out_h), interpolation=method((h, w), (out_h, out_w)))
        return out, Geometry((h, w), out_h / h, out_w / w, 0, 0)
    fit = min if spec.resize == "letterbox" else max
    scale = fit(out_h / h, out_w / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = cv2.resize(image, (new_w, new_h), interpolation=method((h, w), (new_h, new_w)))
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    canvas = np.full((out_h, out_w) + image.shape[2:], 0 if mask else PAD_VALUE, dtype=np.uint8)
    src_y, src_x = max(0, -top), max(0, -left)
    dst_y, dst_x = max(0, top), max(0, left)
    ch, cw = min(new_h - src_y, out_h - dst_y), min(new_w - src_x, out_w - dst_x)
    canvas[dst_y : dst_y + ch, dst_x : dst_x + cw] = scaled[src_y : src_y + ch, src_x : src_x + cw]
    return canvas, Geometry((h, w), new_h / h, new_w / w, top, left)


def map_back(values: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map a model-space map (input height x width) back onto the original image's pixels.

    Args:
        values: HxW float or uint8 array in model-input coordinates.
        geometry: from ``resize`` for the same image.

    Returns:
        An array of the original image's height x width (regions outside the input: 0).
    """
    oh, ow = geometry.original_hw
    new_h, new_w = round(oh * geometry.scale_y), round(ow * geometry.scale_x)
    placed = np.zeros((new_h, new_w), dtype=values.dtype)
    src_y, src_x = max(0, geometry.top), max(0, geometry.left)
    dst_y, dst_x = max(0, -geometry.top), max(0, -geometry.left)
    ch = min(values.shape[0] - src_y, new_h - dst_y)
    cw = min(values.shape[1] - src_x, new_w - dst_x)
    placed[dst_y : dst_y + ch, dst_x : dst_x + cw] = values[src_y : src_y + ch, src_x : src_x + cw]
    return cv2.resize(placed, (ow, oh), interpolation=cv2.INTER_LINEAR)


def apply_clahe(image: np.ndarray, clip_limit: float) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (8x8 tiles) on the luminance only."""
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(8, 8))
    if image.ndim == 2:
        return clahe.apply(image)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def prepare(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Channels, optional CLAHE and resize: the uint8 image the model sees, before normalising.

    Training caches this output; ``preprocess`` normalises it. Returns the geometry to map back.
    """
    image = to_channels(image, spec.channels)
    if spec.clahe:
        image = apply_clahe(image, spec.clahe)
    return resize(image, spec)


def normalize(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Scale to [0, 1], subtract the card's mean, divide by its std; HWC uint8 -> CHW float32."""
    x = image.astype(np.float32) * np.float32(1 / 255)
    if x.ndim == 2:
        x = x[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def preprocess(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Turn one decoded image into the model's input exactly as in training.

    Args:
        image: HxW or HxWx3 uint8 (``load_image(..., mode="keep")``).
        spec: the card's input specification.

    Returns:
        A CHW float32 array and the geometry to map outputs back.
    """
    prepared, geometry = prepare(image, spec)
    return normalize(prepared, spec), geometry


def channel_stats(
    image: Callable[[int], np.ndarray], count: int, channels: int, limit: int = 2000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1]) of prepared uint8 images, from at most ``limit`` of them
    spread evenly over the ``count`` given by ``image(i)``: the normalisation stored in a card."""
    picks = np.linspace(0, count - 1, min(limit, count)).astype(int)
    total, total_sq, n = np.zeros(channels), np.zeros(channels), 0
    for i in picks:
        pixels = image(int(i)).reshape(-1, channels).astype(np.float64) / 255
        total += pixels.sum(0)
        total_sq += (pixels**2).sum(0)
        n += len(pixels)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 1e-6))
    return tuple(mean.round(4).tolist()), tuple(np.maximum(std, 1e-3).round(4).tolist())


def preprocess_batch(images: Sequence[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[Geometry]]:
    """``preprocess`` for several images, stacked into one NCHW float32 batch."""
    pairs = [preprocess(image, spec) for image in images]
    batch = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, spec.channels, *spec.size), np.float32)
    return batch, [p[1] for p in pairs]
