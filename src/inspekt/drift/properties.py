"""Per-image properties: small pure functions in one table.

Each function takes a ``Stack`` (same-size images at the working resolution, see
``inspekt.reduced``) and returns one float per image; NaN means "not applicable" (the colour
properties of a greyscale image). Adding a property is one function and one row in ``PROPERTIES``.

Resolution, per property (``resolution`` in the table):

- ``header``: from the full-resolution size, exact whatever the working resolution.
- ``working``: computed on the image reduced by a power of two (the shorter side kept >= the
  profile's ``min_side``, 64 by default). Means and ratios (brightness, relative colour,
  saturation) and histogram shapes (contrast, entropy) barely change under that reduction.
  Sharpness and noise describe fine detail and do change: they are comparable between two
  profiles made with the same ``min_side`` (which ``inspekt.drift`` checks), and a blur of
  sigma pixels shows as sigma / factor at the working resolution. ``min_side=0`` measures
  everything at full resolution (slower).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

LUMA = np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709 weights for R, G, B
HIST_BINS = 256
COARSE_BINS = 32  # per-image histograms kept for permutation tests
CHANNELS = ("grey", "red", "green", "blue")


class Stack:
    """N same-size images at the working resolution and their full-resolution sizes.

    Args:
        pixels: (N, H, W) uint8 greyscale or (N, H, W, 3) uint8 RGB.
        sizes: (N, 2) full-resolution (height, width).
    """

    def __init__(self, pixels: np.ndarray, sizes: np.ndarray):
        self.pixels = pixels
        self.sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
        self.colour = pixels.ndim == 4

    def __len__(self) -> int:
        return len(self.pixels)

    @cached_property
    def grey(self) -> np.ndarray:
        """(N, H, W) uint8 luma (the BT.709 weighted sum, rounded) — the image itself when grey."""
        if not self.colour:
            return self.pixels
        import cv2

        n, h, w, _ = self.pixels.shape
        flat = self.pixels.reshape(n * h, w, 3)
        return cv2.transform(flat, LUMA[None, :].astype(np.float32)).reshape(n, h, w)

    @cached_property
    def histograms(self) -> np.ndarray:
        """(N, 4, 256) pixel counts per image for grey, red, green, blue (colour rows 0 when grey)."""
        import cv2

        out = np.zeros((len(self), len(CHANNELS), HIST_BINS))
        for i in range(len(self)):
            out[i, 0] = cv2.calcHist([self.grey[i]], [0], None, [HIST_BINS], [0, 256]).ravel()
            if self.colour:
                for c in range(3):
                    out[i, c + 1] = cv2.calcHist([self.pixels[i]], [c], None, [HIST_BINS], [0, 256]).ravel()
        return out

    @cached_property
    def grey_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the grey image, from its histogram."""
        hist = self.histograms[:, 0]
        levels = np.arange(HIST_BINS)
        total = hist.sum(axis=1)
        mean = hist @ levels / total
        var = hist @ (levels ** 2) / total - mean ** 2
        return mean, np.sqrt(np.maximum(var, 0.0))

    @cached_property
    def rgb_float(self) -> np.ndarray:
        """(N, H*W, 3) float32 pixels of colour images."""
        return self.pixels.reshape(len(self), -1, 3).astype(np.float32)

    def interiors(self, response: np.ndarray) -> list[np.ndarray]:
        """Per image, the view of a filter response of the tall grey stack without its border pixels
        (where the filter saw a neighbouring image or the padding)."""
        n, h, w = self.grey.shape
        return [r[1:-1, 1:-1] for r in response.reshape(n, h, w)]

    @property
    def tall(self) -> np.ndarray | None:
        """The grey stack as one (N*H, W) image (one OpenCV call for all), None when too small to filter."""
        n, h, w = self.grey.shape
        return self.grey.reshape(n * h, w) if h >= 3 and w >= 3 else None


def _na(stack: Stack) -> np.ndarray:
    return np.full(len(stack), np.nan)


def aspect_ratio(s: Stack) -> np.ndarray:
    """Height / width of the full image."""
    return s.sizes[:, 0] / s.sizes[:, 1]


def area(s: Stack) -> np.ndarray:
    """Height x width of the full image, in pixels."""
    return s.sizes[:, 0] * s.sizes[:, 1]


def brightness(s: Stack) -> np.ndarray:
    """Mean of 0.2125 R + 0.7154 G + 0.0721 B (the grey level itself for greyscale images)."""
    if not s.colour:
        return s.grey_moments[0]
    levels = np.arange(HIST_BINS)
    channel_means = s.histograms[:, 1:] @ levels / s.histograms[:, 1:].sum(axis=2)
    return channel_means @ LUMA


def contrast(s: Stack) -> np.ndarray:
    """RMS contrast: standard deviation of the grey image."""
    return s.grey_moments[1]


def _relative(channel: int) -> Callable[[Stack], np.ndarray]:
    def relative(s: Stack) -> np.ndarray:
        if not s.colour:
            return _na(s)
        rgb = s.rgb_float
        total = rgb.sum(axis=2)
        share = np.divide(rgb[:, :, channel], total, out=np.zeros_like(total), where=total > 0)
        return share.mean(axis=1).astype(np.float64)

    relative.__doc__ = f"Mean relative {('red', 'green', 'blue')[channel]} intensity c / (R + G + B), 0 where the sum is 0."
    return relative


def saturation(s: Stack) -> np.ndarray:
    """Mean HSV saturation (max - min) / max, 0 where max is 0."""
    if not s.colour:
        return _na(s)
    hi, lo = s.pixels.max(axis=3).astype(np.float32), s.pixels.min(axis=3).astype(np.float32)
    sat = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0)
    return sat.reshape(len(s), -1).mean(axis=1).astype(np.float64)


_NOISE_TAPS = np.array([1, -2, 1], np.float32)  # Immerkaer's kernel is outer(taps, taps)


def sharpness(s: Stack) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of the grey image (interior pixels); falls when it blurs."""
    import cv2

    if s.tall is None:
        return _na(s)
    lap = cv2.Laplacian(s.tall, cv2.CV_16S, ksize=1)
    return np.array([cv2.meanStdDev(r)[1][0, 0] ** 2 for r in s.interiors(lap)])


def noise(s: Stack) -> np.ndarray:
    """Noise standard deviation by Immerkaer's method (1996): mean absolute response of a
    Laplacian-difference kernel that cancels smooth structure, times sqrt(pi / 2) / 6."""
    import cv2

    if s.tall is None:
        return _na(s)
    response = cv2.sepFilter2D(s.tall, cv2.CV_16S, _NOISE_TAPS, _NOISE_TAPS)
    mean_abs = np.array([cv2.norm(r, cv2.NORM_L1) / r.size for r in s.interiors(response)])
    return mean_abs * math.sqrt(math.pi / 2) / 6


def entropy(s: Stack) -> np.ndarray:
    """Shannon entropy of the grey histogram, in bits (0 to 8)."""
    hist = s.histograms[:, 0]
    p = hist / hist.sum(axis=1, keepdims=True)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1)


@dataclass(frozen=True)
class Property:
    """One row of the property table."""

    name: str
    fn: Callable[[Stack], np.ndarray]
    resolution: str  # "header" or "working", see the module docstring
    colour_only: bool = False


PROPERTIES: tuple[Property, ...] = (
    Property("aspect_ratio", aspect_ratio, "header"),
    Property("area", area, "header"),
    Property("brightness", brightness, "working"),
    Property("contrast", contrast, "working"),
    Property("relative_red", _relative(0), "working", colour_only=True),
    Property("relative_green", _relative(1), "working", colour_only=True),
    Property("relative_blue", _relative(2), "working", colour_only=True),
    Property("saturation", saturation, "working", colour_only=True),
    Property("sharpness", sharpness, "working"),
    Property("entropy", entropy, "working"),
    Property("noise", noise, "working"),
)
PROPERTY_NAMES = tuple(p.name for p in PROPERTIES)


def compute(stack: Stack) -> dict[str, np.ndarray]:
    """Every property of every image in the stack: ``{name: (N,) float64}``."""
    return {p.name: np.asarray(p.fn(stack), dtype=np.float64) for p in PROPERTIES}


def coarse(histograms: np.ndarray) -> np.ndarray:
    """(N, 4, 256) counts -> (N, 4, 32) counts (8 neighbouring levels per bin)."""
    n, c, _ = histograms.shape
    return histograms.reshape(n, c, COARSE_BINS, HIST_BINS // COARSE_BINS).sum(axis=3)
