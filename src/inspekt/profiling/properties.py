"""Per-image properties: small pure functions in one table.

Each function takes a ``Stack`` (images at the working resolution, see ``inspekt.io.reduced``, with
their pixel work done once) and returns one float per image; NaN means "not applicable" (the colour
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
from functools import cached_property, lru_cache

import numpy as np

LUMA = np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709 weights for R, G, B
HIST_BINS = 256
COARSE_BINS = 32  # per-image histograms kept for permutation tests
CHANNELS = ("grey", "red", "green", "blue")


class Stack:
    """N images at the working resolution (any sizes, greyscale or RGB) and their full-resolution sizes.

    The pixel work is done once per image and kept: same-size grey images are stacked into one
    tall image, a block at a time (one OpenCV call's fixed cost is shared by the block, and the
    block stays in cache), for the grey histograms and the two filter responses (Laplacian,
    Immerkaer's kernel); colour images add one histogram call per channel. Everything else is
    arithmetic on those, for all images at once.

    Args:
        images: HxW uint8 greyscale or HxWx3 uint8 RGB arrays, or one (N, H, W[, 3]) array.
        sizes: (N, 2) full-resolution (height, width).
    """

    def __init__(self, images, sizes):
        self.images = list(images)
        self.sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
        self.colour = np.array([image.ndim == 3 for image in self.images], dtype=bool)

    def __len__(self) -> int:
        return len(self.images)

    @cached_property
    def grey(self) -> list[np.ndarray]:
        """Per image, the HxW uint8 luma (the BT.709 weighted sum, rounded); the image itself when grey."""
        import cv2

        weights = LUMA[None, :].astype(np.float32)
        return [cv2.transform(image, weights) if image.ndim == 3 else image for image in self.images]

    @cached_property
    def _grey_pass(self) -> tuple[np.ndarray, np.ndarray]:
        """One walk over the grey images, same-size ones in tall blocks: their 256-bin histograms
        and their detail sums (see ``detail``)."""
        hist, detail = np.empty((len(self), HIST_BINS)), np.full((len(self), 3), np.nan)
        for index in _same_shape(self.grey):
            h, w = self.grey[index[0]].shape
            size = max(1, min(_BLOCK, _BLOCK_PIXELS // (h * w)))
            for block in range(0, len(index), size):
                rows = index[block : block + size]
                tall = np.concatenate([self.grey[i] for i in rows])
                hist[rows] = _block_histograms(tall, len(rows))
                if h >= 3 and w >= 3:
                    detail[rows] = _detail_sums(tall, h)
        return hist, detail

    @cached_property
    def histograms(self) -> np.ndarray:
        """(N, 4, 256) pixel counts per image for grey, red, green, blue (colour rows 0 when grey)."""
        import cv2

        out = np.zeros((len(self), len(CHANNELS), HIST_BINS))
        out[:, 0] = self._grey_pass[0]
        for i in np.flatnonzero(self.colour):
            for c in range(3):
                out[i, c + 1] = cv2.calcHist([self.images[i]], [c], None, [HIST_BINS], [0, 256]).ravel()
        return out

    @cached_property
    def channel_means(self) -> np.ndarray:
        """(N, 4) mean of grey, red, green, blue (NaN for the colour of grey images)."""
        means = np.full((len(self), len(CHANNELS)), np.nan)
        grey = self.histograms[:, 0]
        means[:, 0] = _level_sums(grey) / grey.sum(axis=1)
        if self.colour.any():
            rgb = self.histograms[self.colour, 1:]
            means[self.colour, 1:] = _level_sums(rgb) / rgb.sum(axis=2)
        return means

    @property
    def detail(self) -> np.ndarray:
        """(N, 3): sum and sum of squares of the Laplacian, and sum of |Immerkaer response|, over
        each image's interior pixels (NaN when an image is too small to filter)."""
        return self._grey_pass[1]

    @cached_property
    def colour_shares(self) -> np.ndarray:
        """(N, 4): mean relative red, green, blue intensity and mean saturation (NaN for grey images)."""
        out = np.full((len(self), 4), np.nan)
        for i in np.flatnonzero(self.colour):
            out[i] = _colour_shares(self.images[i])
        return out


_LEVELS = np.arange(HIST_BINS, dtype=np.float64)


def _level_sums(hist: np.ndarray, power: int = 1) -> np.ndarray:
    """Sum of level**power x count over the last (256-bin) axis. numpy's einsum, not ``@``: a matrix
    product goes to BLAS, whose threads spin against every other busy process and halved the
    throughput of two profiling workers on two cores."""
    return np.einsum("...k,k->...", hist, _LEVELS**power)


_BLOCK = 32  # images per block at most (at most 256: image numbers are uint8)
_BLOCK_PIXELS = 1 << 18  # and pixels per block: a block stays in cache, and full-resolution images go one by one
_NOISE_TAPS = np.array([1, -2, 1], np.float32)  # Immerkaer's kernel is outer(taps, taps)


def _same_shape(images: list[np.ndarray]) -> list[list[int]]:
    """Indices of the images grouped by shape (first appearance order)."""
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return list(groups.values())


@lru_cache(maxsize=8)
def _image_numbers(count: int, h: int, w: int) -> np.ndarray:
    """(count * h, w) uint8: which image of a tall block each pixel belongs to."""
    return np.repeat(np.arange(count, dtype=np.uint8), h * w).reshape(count * h, w)


def _block_histograms(tall: np.ndarray, count: int) -> np.ndarray:
    """(count, 256) histograms of the ``count`` same-size images of a tall block, in one OpenCV
    call: a 2-D histogram of (pixel value, image number)."""
    import cv2

    numbers = _image_numbers(count, len(tall) // count, tall.shape[1])
    return cv2.calcHist([tall, numbers], [0, 1], None, [HIST_BINS, count], [0, 256, 0, count]).T


def _colour_shares(rgb: np.ndarray) -> list[float]:
    """Mean c / (R + G + B) for each channel (0 where the sum is 0) and mean saturation
    (max - min) / max (0 where max is 0) of one HxWx3 uint8 image. OpenCV per channel, with float32
    ratios and double-precision means: a float32 mean over millions of pixels drifts (0.025 at
    4096 x 4096), and whole-stack float temporaries took gigabytes."""
    import cv2

    r, g, b = cv2.split(rgb)
    total = cv2.max(cv2.add(cv2.add(r, g, dtype=cv2.CV_16U), b, dtype=cv2.CV_16U), 1)  # a zero sum has c = 0
    shares = [cv2.mean(cv2.divide(c, total, dtype=cv2.CV_32F))[0] for c in (r, g, b)]
    hi, lo = cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)
    saturation = cv2.divide(cv2.subtract(hi, lo), cv2.max(hi, 1), dtype=cv2.CV_32F)
    return shares + [cv2.mean(saturation)[0]]


def _detail_sums(tall: np.ndarray, h: int) -> list[tuple[float, float, float]]:
    """Filter a tall stack of same-size grey images (each ``h`` rows) at once; per image, the
    interior sums of ``Stack.detail`` (the border pixels saw a neighbouring image or the padding)."""
    import cv2

    lap = cv2.Laplacian(tall, cv2.CV_16S, ksize=1)[:, 1:-1]
    response = cv2.sepFilter2D(tall, cv2.CV_16S, _NOISE_TAPS, _NOISE_TAPS)[:, 1:-1]
    return [
        (
            cv2.sumElems(lap[top + 1 : top + h - 1])[0],
            cv2.norm(lap[top + 1 : top + h - 1], cv2.NORM_L2SQR),
            cv2.norm(response[top + 1 : top + h - 1], cv2.NORM_L1),
        )
        for top in range(0, len(tall), h)
    ]


def _interior_pixels(s: Stack) -> np.ndarray:
    return np.array([(g.shape[0] - 2) * (g.shape[1] - 2) for g in s.grey], dtype=np.float64)


def aspect_ratio(s: Stack) -> np.ndarray:
    """Height / width of the full image."""
    return s.sizes[:, 0] / s.sizes[:, 1]


def area(s: Stack) -> np.ndarray:
    """Height x width of the full image, in pixels."""
    return s.sizes[:, 0] * s.sizes[:, 1]


def brightness(s: Stack) -> np.ndarray:
    """Mean of 0.2125 R + 0.7154 G + 0.0721 B (the grey level itself for greyscale images)."""
    means = s.channel_means
    return np.where(s.colour, np.einsum("nc,c->n", np.nan_to_num(means[:, 1:]), LUMA), means[:, 0])


def contrast(s: Stack) -> np.ndarray:
    """RMS contrast: standard deviation of the grey image."""
    hist = s.histograms[:, 0]
    mean_square = _level_sums(hist, power=2) / hist.sum(axis=1)
    return np.sqrt(np.maximum(mean_square - s.channel_means[:, 0] ** 2, 0.0))


def _relative(channel: int) -> Callable[[Stack], np.ndarray]:
    def relative(s: Stack) -> np.ndarray:
        return s.colour_shares[:, channel]

    relative.__doc__ = (
        f"Mean relative {('red', 'green', 'blue')[channel]} intensity c / (R + G + B), 0 where the sum is 0."
    )
    return relative


def saturation(s: Stack) -> np.ndarray:
    """Mean HSV saturation (max - min) / max, 0 where max is 0."""
    return s.colour_shares[:, 3]


def sharpness(s: Stack) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of the grey image (interior pixels); falls when it blurs."""
    count = _interior_pixels(s)
    total, squares = s.detail[:, 0], s.detail[:, 1]
    return np.maximum(squares / count - (total / count) ** 2, 0.0)


def noise(s: Stack) -> np.ndarray:
    """Noise standard deviation by Immerkaer's method (1996): mean absolute response of a
    Laplacian-difference kernel that cancels smooth structure, times sqrt(pi / 2) / 6."""
    return s.detail[:, 2] / _interior_pixels(s) * math.sqrt(math.pi / 2) / 6


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
    """(N, 4, 256) counts -> (N, 4, 32) counts (8 neighbouring levels per bin); a channel no image
    has (the colour of a greyscale set) stays 0 without being summed."""
    out = np.zeros(histograms.shape[:2] + (COARSE_BINS,))
    for c in range(histograms.shape[1]):
        if histograms[:, c].any():
            out[:, c] = histograms[:, c].reshape(len(histograms), COARSE_BINS, -1).sum(axis=2)
    return out
