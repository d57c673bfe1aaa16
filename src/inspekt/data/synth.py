"""Procedural demo and test data: synthetic metal surfaces with defects and exact masks.

Users and tests never need a real dataset: ``make_surface`` renders one image in memory and
``write_dataset`` writes a whole folder in one of the layouts inspekt reads (class folders,
image/mask folders, MVTec AD). Everything is drawn from a seeded NumPy generator, so the same
parameters always give the same bytes.

An image is built in float32 grey levels: a texture (grainy or brushed) around a random base
grey; an optional defect, a *profile* in 0..1 times a signed contrast (negative = darker); a
gentle illumination gradient and vignette (a gain <= 1, so nothing saturates); sensor noise;
and for the colour variant a metal tint (RGB). The mask is ``profile >= 0.5``: the pixels the
defect changed by at least half its contrast (>= ~15 grey levels, well above the texture's
own variation), so the mask and the visible defect coincide.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspekt.errors import DatasetError, did_you_mean

CLASSES = ("ok", "pore", "lop", "scratch")
LAYOUTS = ("classes", "segmentation", "mvtec")
KINDS = ("surface",)
COLORS = ("mixed", "grey", "color")

# A profile value at or above this is "defect": half the peak contrast (full width at half
# maximum), the usual convention for where a soft-edged feature begins.
_MASK_LEVEL = 0.5
# Share of the "ok" images that go to train/good in the MVTec layout (MVTec AD uses ~60-80%).
_TRAIN_GOOD_SHARE = 0.6
# Names write_dataset creates at the top of its folder; overwrite=True removes only these.
_OWNED_NAMES = frozenset((*CLASSES, "images", "masks", "train", "test", "ground_truth", "README.txt"))

Rng = np.random.Generator
MAX_SIZE = 4096  # a 4096x4096 surface is 16 MP; larger is a typo, not a dataset
MAX_IMAGES = 1_000_000


@dataclass(frozen=True)
class SynthSample:
    """One synthetic image, its defect mask and its class."""

    image: np.ndarray  # HxW uint8 (grey) or HxWx3 uint8 RGB (colour)
    mask: np.ndarray  # HxW uint8, 0 background / 255 defect; all zero for "ok"
    label: str  # one of CLASSES


@dataclass(frozen=True)
class SynthSummary:
    """What ``write_dataset`` wrote."""

    root: Path  # the dataset folder
    layout: str  # one of LAYOUTS
    counts: dict[str, int]  # images per folder: {"ok": 50, ...} or {"train/good": 30, ...}
    n_images: int  # images written (masks not counted)
    seconds: float  # wall time


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- textures


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


_TEXTURES: dict[str, Callable[[int, Rng], np.ndarray]] = {"grainy": _grainy, "brushed": _brushed}


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


# --------------------------------------------------------------------------- defects
# Each returns (profile, contrast): profile in 0..1 where the defect is (>= 0.5 is the mask),
# contrast in grey levels, negative for dark defects.


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


_DEFECTS: dict[str, Callable[[int, Rng], tuple[np.ndarray, float]]] = {
    "pore": _draw_pores,
    "lop": _draw_lop,
    "scratch": _draw_scratch,
}

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


# --------------------------------------------------------------------------- rendering


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """Raise DatasetError naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise DatasetError(
            f'Unknown {what} "{value}": use one of {", ".join(choices)}.' + did_you_mean(str(value), choices)
        )


def _check_numbers(size: int, seed: int) -> None:
    """Raise DatasetError for a size too small to hold a visible defect, or a bad seed."""
    if not isinstance(size, (int, np.integer)) or not 32 <= size <= MAX_SIZE:
        raise DatasetError(f"size={size!r} is out of range: use an integer size from 32 to {MAX_SIZE}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed={seed!r} is not usable: use an integer of 0 or more.")


def _render(label: str, size: int, rng: Rng, color: bool | None) -> SynthSample:
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
    _check_choice(label, CLASSES, "label")
    _check_numbers(size, seed)
    return _render(label, int(size), np.random.default_rng(seed), color)


# --------------------------------------------------------------------------- writing


def _class_counts(n: int) -> list[int]:
    """Split n images evenly over CLASSES; the remainder goes to the first classes."""
    return [n // len(CLASSES) + (k < n % len(CLASSES)) for k in range(len(CLASSES))]


def _n_train_good(n_ok: int) -> int:
    """How many ok images go to train/good: ~60%, leaving at least one for test/good."""
    if n_ok < 2:
        return n_ok
    return min(n_ok - 1, max(1, round(_TRAIN_GOOD_SHARE * n_ok)))


def _layout_paths(layout: str, label: str, stem: str, train: bool) -> tuple[str, str, str | None]:
    """(count key, image path, mask path or None) relative to the dataset root."""
    if layout == "classes":
        return label, f"{label}/{stem}.png", None
    if layout == "segmentation":
        return label, f"images/{label}/{stem}.png", f"masks/{label}/{stem}.png"
    if label == "ok":  # mvtec: good images, no masks (as in MVTec AD)
        folder = "train/good" if train else "test/good"
        return folder, f"{folder}/{stem}.png", None
    return f"test/{label}", f"test/{label}/{stem}.png", f"ground_truth/{label}/{stem}_mask.png"


def _plan(n: int, layout: str) -> list[tuple[int, int, str, str, str | None]]:
    """(class index, index in class, count key, image path, mask path) of every image."""
    plan = []
    for c, (label, count) in enumerate(zip(CLASSES, _class_counts(n))):
        n_train = _n_train_good(count) if label == "ok" else 0
        width = max(4, len(str(count - 1)))  # ok_0007.png; wider only past 10,000 images
        for j in range(count):
            stem = f"{label}_{j:0{width}d}"
            plan.append((c, j, *_layout_paths(layout, label, stem, j < n_train)))
    return plan


def _prepare_root(out: str | Path, overwrite: bool) -> Path:
    """Create the output folder; refuse a non-empty one unless ``overwrite``."""
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file: choose a folder path for the dataset.")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise DatasetError(
                f"{root} is not empty: choose another folder or delete it "
                "(or --overwrite / overwrite=True to replace a dataset inspekt wrote there before)."
            )
        if not _written_by_inspekt(root):
            raise DatasetError(
                f"{root} holds files that inspekt did not generate (no inspekt README.txt); "
                "overwrite only replaces a synthetic dataset: choose an empty folder."
            )
        # Remove only what write_dataset itself writes, so no stale images get mixed in
        # while files of the user's own are left alone.
        for entry in root.iterdir():
            if entry.name in _OWNED_NAMES:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {root}: {exc.strerror or exc}; choose another folder.") from exc
    return root


def _written_by_inspekt(root: Path) -> bool:
    readme = root / "README.txt"
    return readme.is_file() and "generated by inspekt" in readme.read_text(errors="replace")[:200]


def _readme(layout: str, n: int, size: int, seed: int, color: str, counts: dict[str, int]) -> str:
    """The few lines of README.txt that say how the dataset was made."""
    import inspekt

    per_folder = ", ".join(f"{k}={v}" for k, v in counts.items())
    return (
        f"Synthetic inspection dataset generated by inspekt {inspekt.__version__} "
        "(inspekt.data.synth.write_dataset); not real data.\n"
        f"kind=surface layout={layout} n={n} size={size} seed={seed} color={color}\n"
        f"images per folder: {per_folder}\n"
        "The same parameters regenerate identical images.\n"
    )


def write_dataset(
    out: str | Path,
    *,
    kind: str = "surface",
    n: int = 200,
    size: int = 128,
    seed: int = 0,
    layout: str = "classes",
    color: str = "mixed",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic dataset (PNG images, and masks where the layout has them).

    Image ``j`` of a class is drawn from ``np.random.default_rng([seed, c, j])`` (``c`` the
    class index), so every file is reproducible and does not depend on ``n``.

    Args:
        out: folder to write; created if missing, must be empty unless ``overwrite``.
        kind: what to render; only "surface" so far.
        n: total number of images, split evenly over ``CLASSES`` (remainder to the first).
        size: image width and height in pixels (32 or more).
        seed: random seed of the whole dataset.
        layout: "classes" (``<class>/``), "segmentation" (``images/`` + ``masks/``) or
            "mvtec" (``train/good``, ``test/<class>``, ``ground_truth/<class>``).
        color: "mixed" (per-image choice, ~half each), "grey" (HxW) or "color" (HxWx3).
        overwrite: allow a non-empty folder; the folders and README.txt that
            write_dataset creates are deleted first, other files are kept.
        progress: called with the number of images written so far, after each one.

    Returns:
        A ``SynthSummary`` with the root, layout, images per folder, count and time.

    Raises:
        DatasetError: unknown kind/layout/color, n < 1, size < 32, a negative seed, or a
            non-empty folder.
    """
    start = time.perf_counter()
    for value, choices, what in ((kind, KINDS, "kind"), (layout, LAYOUTS, "layout"), (color, COLORS, "color")):
        _check_choice(value, choices, what)
    _check_numbers(size, seed)
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_IMAGES:
        raise DatasetError(f"n={n!r} images is not possible: use n from 1 to {MAX_IMAGES:,} (e.g. n=200).")
    from inspekt.io import save_image  # the one place that writes images

    root = _prepare_root(out, overwrite)
    forced = {"mixed": None, "grey": False, "color": True}[color]
    counts: dict[str, int] = {}
    for c, j, key, image_rel, mask_rel in _plan(n, layout):
        sample = _render(CLASSES[c], int(size), np.random.default_rng([seed, c, j]), forced)
        save_image(root / image_rel, sample.image)
        if mask_rel is not None:
            save_image(root / mask_rel, sample.mask)
        counts[key] = counts.get(key, 0) + 1
        if progress:
            progress(sum(counts.values()))
    (root / "README.txt").write_text(_readme(layout, n, size, seed, color, counts))
    return SynthSummary(root, layout, counts, n, time.perf_counter() - start)
