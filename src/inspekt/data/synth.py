"""Procedural demo and test data: whole datasets of synthetic surfaces (``inspekt.data.surfaces``).

Users and tests never need a real dataset: ``make_surface`` renders one image in memory and
``write_dataset`` writes a whole folder in one of the layouts inspekt reads (class folders,
image/mask folders, MVTec AD). Everything is drawn from a seeded NumPy generator, so the same
parameters always give the same bytes.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspekt._version import __version__
from inspekt.data.layouts import LABELS_CSV  # the boxes layout: path,label,boxes (JSON [[class, x0, y0, x1, y1], ...])
from inspekt.data.surfaces import CLASSES, check_choice, check_numbers, render
from inspekt.errors import DatasetError

LAYOUTS = ("classes", "segmentation", "mvtec", "boxes")
KINDS = ("surface",)
COLORS = ("mixed", "grey", "color")

# Share of the "ok" images that go to train/good in the MVTec layout (MVTec AD uses ~60-80%).
_TRAIN_GOOD_SHARE = 0.6
# Names write_dataset creates at the top of its folder; overwrite=True removes only these.
_OWNED_NAMES = frozenset((*CLASSES, "images", "masks", "train", "test", "ground_truth", "README.txt", LABELS_CSV))

MAX_IMAGES = 1_000_000


@dataclass(frozen=True)
class SynthSummary:
    """What ``write_dataset`` wrote."""

    root: Path  # what to open: the dataset folder (the boxes layout: its labels.csv)
    layout: str  # one of LAYOUTS
    counts: dict[str, int]  # images per folder: {"ok": 50, ...} or {"train/good": 30, ...}
    n_images: int  # images written (masks not counted)
    seconds: float  # wall time


# --------------------------------------------------------------------------- helpers


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
    if layout == "boxes":  # the boxes go to labels.csv, not to a file per image
        return label, f"images/{label}/{stem}.png", None
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


def mask_boxes(mask: np.ndarray, label: str) -> list[list]:
    """One box ``[label, x0, y0, x1, y1]`` (pixels, x1 and y1 exclusive) per connected region of a
    rendered defect mask (``inspekt.regions``); none for an ok image."""
    from inspekt.regions import components

    if label == "ok":
        return []
    found = components((mask > 0).astype(np.uint8), mask.astype(np.float32), ("background", label))
    return [[label, x, y, x + w, y + h] for x, y, w, h in (c["bbox"] for c in found)]


def _write_boxes(path: Path, rows: list[tuple[str, str, list[list]]]) -> None:
    import csv
    import json

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "boxes"])
        for image_rel, label, boxes in rows:
            writer.writerow([image_rel, label, json.dumps(boxes)])


def _written_by_inspekt(root: Path) -> bool:
    readme = root / "README.txt"
    return readme.is_file() and "generated by inspekt" in readme.read_text(errors="replace")[:200]


def _readme(layout: str, n: int, size: int, seed: int, color: str, counts: dict[str, int]) -> str:
    """The few lines of README.txt that say how the dataset was made."""
    per_folder = ", ".join(f"{k}={v}" for k, v in counts.items())
    return (
        f"Synthetic inspection dataset generated by inspekt {__version__} "
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
        layout: "classes" (``<class>/``), "segmentation" (``images/`` + ``masks/``),
            "mvtec" (``train/good``, ``test/<class>``, ``ground_truth/<class>``) or "boxes"
            (``images/<class>/`` + ``labels.csv``: one box per defect region, from its mask; ok images
            are annotated negatives).
        color: "mixed" (per-image choice, ~half each), "grey" (HxW) or "color" (HxWx3).
        overwrite: allow a non-empty folder; the folders and README.txt that
            write_dataset creates are deleted first, other files are kept.
        progress: called with the number of images written so far, after each one.

    Returns:
        A ``SynthSummary`` with what to open (the folder; the boxes layout: its labels.csv), the
        layout, images per folder, count and time.

    Raises:
        DatasetError: unknown kind/layout/color, n < 1, size < 32, a negative seed, or a
            non-empty folder.
    """
    start = time.perf_counter()
    for value, choices, what in ((kind, KINDS, "kind"), (layout, LAYOUTS, "layout"), (color, COLORS, "color")):
        check_choice(value, choices, what)
    check_numbers(size, seed)
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_IMAGES:
        raise DatasetError(f"n={n!r} images is not possible: use n from 1 to {MAX_IMAGES:,} (e.g. n=200).")
    from inspekt.io import save_image  # the one place that writes images

    root = _prepare_root(out, overwrite)
    forced = {"mixed": None, "grey": False, "color": True}[color]
    counts: dict[str, int] = {}
    boxes = []
    for c, j, key, image_rel, mask_rel in _plan(n, layout):
        sample = render(CLASSES[c], int(size), np.random.default_rng([seed, c, j]), forced)
        save_image(root / image_rel, sample.image)
        if mask_rel is not None:
            save_image(root / mask_rel, sample.mask)
        boxes.append((image_rel, CLASSES[c], mask_boxes(sample.mask, CLASSES[c])))
        counts[key] = counts.get(key, 0) + 1
        if progress:
            progress(sum(counts.values()))
    if layout == "boxes":
        _write_boxes(root / LABELS_CSV, boxes)
    data = root / LABELS_CSV if layout == "boxes" else root
    (root / "README.txt").write_text(_readme(layout, n, size, seed, color, counts))
    return SynthSummary(data, layout, counts, n, time.perf_counter() - start)
