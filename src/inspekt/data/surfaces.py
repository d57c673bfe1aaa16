"""Synthetic metal surfaces with defects and exact masks, rendered in memory (``make_surface``).

An image is built in float32 grey levels: a texture (grainy or brushed) around a random base
grey; an optional defect, a *profile* in 0..1 times a signed contrast (negative = darker); a
gentle illumination gradient and vignette (a gain <= 1, so nothing saturates); sensor noise;
and for the colour variant a metal tint (RGB). The mask is ``profile >= 0.5``: the pixels the
defect changed by at least half its contrast (>= ~15 grey levels, well above the texture's
own variation), so the mask and the visible defect coincide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from inspekt.errors import DatasetError, did_you_mean

CLASSES = ("ok", "pore", "lop", "scratch")


# A profile value at or above this is "defect": half the peak contrast (full width at half
# maximum), the usual convention for where a soft-edged feature begins.
_MASK_LEVEL = 0.5


Rng = np.random.Generator


MAX_SIZE = 4096  # a 4096x4096 surface is 16 MP; larger is a typo, not a dataset


@dataclass(frozen=True)
class SynthSample:
    """One synthetic image, its defect mask and its class."""

    image: np.ndarray  # HxW uint8 (grey) or HxWx3 uint8 RGB (colour)
    mask: np.ndarray  # HxW uint8, 0 background / 255 defect; all zero for "ok"
    label: str  # one of CLASSES


def _unit(field: np.ndarray) -> np.ndarray:
    """Shift and scale a field to zero mean, unit standard deviation."""
    field = field - field.mean()
    return field / (field.std() + 1e-6)


def _smooth_field(size: int, rng: Rng, cells: int) -> np.ndarray:
    """A smooth random field in 0..1: low-res noise upsampled (cheap large-scale variation)."""
    low = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _segment(size: int, rng: Rng, lo: float, hi: float, margin: float) -> np.ndarray:
    """End points (2x2, x/y) of a random segment of length lo..hi * size inside the image."""
    length = rng.uniform(lo, hi) * size
    angle = rng.uniform(0.0, np.pi)
    half = 0.5 * length * np.array([np.cos(angle), np.sin(angle)])
    # Choose the centre so both ends stay at least `margin` pixels inside the image.
    lo_c = margin + np.abs(half)
    hi_c = np.maximum(size - 1 - margin - np.abs(half), lo_c)
    centre = rng.uniform(lo_c, hi_c)
    return np.stack([centre - half, centre + half])


def _to_fixed(points: np.ndarray) -> np.ndarray:
    """Points as int32 in OpenCV's 4-bit fixed point (``shift=4``) for sub-pixel drawing."""
    return np.round(points * 16).astype(np.int32)


def _grainy(size: int, rng: Rng) -> np.ndarray:
    """Cast or blasted metal: fine noise smoothed more along one axis, plus mottling."""
    noise = rng.standard_normal((size, size), dtype=np.float32)
    sx, sy = rng.uniform(0.6, 2.2, 2)  # unequal sigmas: grain stretched along x or y
    grain = cv2.GaussianBlur(noise, (0, 0), sigmaX=sx, sigmaY=sy)
    mottle = _smooth_field(size, rng, cells=6) - 0.5
    return _unit(_unit(grain) + rng.uniform(0.5, 1.5) * _unit(mottle))


def _brushed(size: int, rng: Rng) -> np.ndarray:
    """Brushed metal: noise averaged along a line of random angle (long parallel streaks)."""
    length = max(7, (size // 5) | 1)  # odd kernel, streaks ~20% of the image long
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    angle = rng.uniform(0.0, np.pi)
    dx, dy = c * np.cos(angle), c * np.sin(angle)
    ends = _to_fixed(np.array([[c - dx, c - dy], [c + dx, c + dy]]))
    cv2.line(kernel, tuple(ends[0]), tuple(ends[1]), 1.0, 1, cv2.LINE_AA, shift=4)
    kernel /= kernel.sum()
    noise = rng.standard_normal((size, size), dtype=np.float32)
    streaks = cv2.filter2D(noise, -1, kernel, borderType=cv2.BORDER_REFLECT)
    fine = cv2.GaussianBlur(noise, (0, 0), 0.7)  # a little isotropic grain on top
    return _unit(_unit(streaks) + 0.35 * _unit(fine))


def _illumination(size: int, rng: Rng) -> np.ndarray:
    """A gain <= 1: a linear gradient in a random direction times an off-centre vignette."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    angle = rng.uniform(0.0, 2 * np.pi)
    # Python floats, not NumPy float64 scalars, keep the arithmetic in float32 (NEP 50).
    cos, sin, root2 = float(np.cos(angle)), float(np.sin(angle)), float(np.sqrt(2))
    ramp = (cos * xx + sin * yy + root2) / (2 * root2)
    cx, cy = (float(v) for v in rng.uniform(-0.3, 0.3, 2))
    r2 = (xx - cx) ** 2 + (yy - cy) ** 2
    r2 = r2 / r2.max()
    # Gain stays in ~0.6..1: visibly uneven light, yet defects keep most of their contrast.
    return 1.0 - rng.uniform(0.0, 0.15) * ramp - rng.uniform(0.05, 0.25) * r2


def _draw_pores(size: int, rng: Rng) -> tuple[np.ndarray, float]:
    """1-4 small dark round or elliptic blobs with a soft edge (gas pores)."""
    profile = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        radius = max(2.0, rng.uniform(0.02, 0.06) * size)
        axes = radius * np.array([1.0, rng.uniform(0.6, 1.0)])
        centre = rng.uniform(radius + 2, size - 3 - radius, 2)
        blob = np.zeros_like(profile)
        cv2.ellipse(
            blob,
            tuple(_to_fixed(centre)),
            tuple(_to_fixed(axes)),
            rng.uniform(0, 180),
            0,
            360,
            1.0,
            -1,
            cv2.LINE_AA,
            shift=4,
        )
        # Soft edge scales with the pore; each pore gets its own depth (0.8..1 of contrast).
        blob = cv2.GaussianBlur(blob, (0, 0), max(0.6, 0.25 * radius))
        profile = np.maximum(profile, blob * rng.uniform(0.8, 1.0))
    return profile, -rng.uniform(35.0, 65.0)


def _draw_lop(size: int, rng: Rng) -> tuple[np.ndarray, float]:
    """One long thin dark seam, straight or slightly bowed (lack of penetration)."""
    ends = _segment(size, rng, 0.5, 0.9, margin=0.04 * size)
    # A quadratic Bezier whose control point is pushed sideways by up to 6% of the length.
    direction = ends[1] - ends[0]
    normal = np.array([-direction[1], direction[0]])
    control = ends.mean(axis=0) + rng.uniform(-0.06, 0.06) * normal
    t = np.linspace(0.0, 1.0, 24)[:, None]
    curve = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * control + t**2 * ends[1]
    curve = np.clip(curve, 1, size - 2)
    profile = np.zeros((size, size), np.float32)
    width = int(rng.integers(2, 5))
    cv2.polylines(profile, [_to_fixed(curve)], False, 1.0, width, cv2.LINE_8, shift=4)
    profile = cv2.GaussianBlur(profile, (0, 0), 0.6)
    # Depth varies along the seam (partial penetration), but never below the mask level.
    profile *= 0.75 + 0.25 * _smooth_field(size, rng, cells=4)
    return profile, -rng.uniform(35.0, 65.0)


def _draw_scratch(size: int, rng: Rng) -> tuple[np.ndarray, float]:
    """1-2 thin bright lines at random angles (tool or handling scratches)."""
    profile = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        ends = _to_fixed(_segment(size, rng, 0.3, 0.8, margin=2.0))
        thickness = int(rng.integers(1, 3))
        cv2.line(profile, tuple(ends[0]), tuple(ends[1]), 1.0, thickness, cv2.LINE_8, shift=4)
    # A slight blur keeps the line soft; its core stays ~0.8, well above the mask level.
    profile = cv2.GaussianBlur(profile, (0, 0), 0.5)
    profile *= 0.8 + 0.2 * _smooth_field(size, rng, cells=4)
    return profile, rng.uniform(40.0, 70.0)


# Metal tints as RGB gains (normalised so the largest is 1: a tint never brightens).
_TINTS = {
    "bronze": (1.0, 0.80, 0.58),
    "copper": (1.0, 0.72, 0.56),
    "brass": (1.0, 0.92, 0.64),
    "blue_steel": (0.80, 0.88, 1.0),
    "titanium": (0.92, 0.93, 1.0),
}


def _tint(grey: np.ndarray, rng: Rng) -> np.ndarray:
    """Colour a grey float image as a tinted metal; returns HxWx3 uint8 RGB."""
    names = tuple(_TINTS)
    gains = np.array(_TINTS[names[rng.integers(len(names))]], np.float32)
    gains = gains * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    gains /= gains.max()
    rgb = grey[..., None] * gains
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32)  # per-channel sensor noise
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """Raise DatasetError naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise DatasetError(
            f'Unknown {what} "{value}": use one of {", ".join(choices)}.' + did_you_mean(str(value), choices)
        )


def check_numbers(size: int, seed: int) -> None:
    """Raise DatasetError for a size too small to hold a visible defect, or a bad seed."""
    if not isinstance(size, (int, np.integer)) or not 32 <= size <= MAX_SIZE:
        raise DatasetError(f"size={size!r} is out of range: use an integer size from 32 to {MAX_SIZE}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed={seed!r} is not usable: use an integer of 0 or more.")


def render(label: str, size: int, rng: Rng, color: bool | None) -> SynthSample:
    """Render one sample from ``rng`` (the whole image depends on this generator only)."""
    # Always drawn, so forcing grey/colour does not shift the draws that follow.
    coin = bool(rng.random() < 0.5)
    want_color = coin if color is None else bool(color)
    base = rng.uniform(90.0, 160.0)
    amplitude = rng.uniform(5.0, 10.0)
    names = tuple(_TEXTURES)
    grey = base + amplitude * _TEXTURES[names[rng.integers(len(names))]](size, rng)
    # The defect gets its own generator, seeded by a draw made for every label: the same
    # seed then gives the same surface with and without the defect (a clean/defect pair).
    defect_rng = np.random.default_rng(rng.integers(2**63))
    mask = np.zeros((size, size), np.uint8)
    if label != "ok":
        profile, contrast = _DEFECTS[label](size, defect_rng)
        grey += contrast * profile
        mask[profile >= _MASK_LEVEL] = 255
    grey *= _illumination(size, rng)
    grey += 1.2 * rng.standard_normal(grey.shape, dtype=np.float32)
    if want_color:
        image = _tint(grey, rng)
    else:
        image = np.clip(grey + 0.5, 0, 255).astype(np.uint8)
    return SynthSample(image=image, mask=mask, label=label)


def make_surface(label: str, *, size: int = 128, seed: int = 0, color: bool | None = None) -> SynthSample:
    """One synthetic surface image with an optional defect and its exact mask.

    Args:
        label: one of ``CLASSES``: "ok" (no defect), "pore", "lop" or "scratch".
        size: width and height in pixels (32 or more).
        seed: random seed; the same (label, size, seed, color) gives identical arrays.
        color: True for an HxWx3 RGB tinted metal, False for HxW grey, None to let the
            seed choose (about half each).

    Returns:
        A ``SynthSample`` with the uint8 image, the 0/255 mask and the label.

    Raises:
        DatasetError: unknown label, size below 32, or a negative seed.
    """
    check_choice(label, CLASSES, "label")
    check_numbers(size, seed)
    return render(label, int(size), np.random.default_rng(seed), color)


_TEXTURES: dict[str, Callable[[int, Rng], np.ndarray]] = {"grainy": _grainy, "brushed": _brushed}


# Each defect returns (profile, contrast): profile in 0..1 where the defect is (>= 0.5 is the mask),
# contrast in grey levels, negative for dark defects.
_DEFECTS: dict[str, Callable[[int, Rng], tuple[np.ndarray, float]]] = {
    "pore": _draw_pores,
    "lop": _draw_lop,
    "scratch": _draw_scratch,
}
