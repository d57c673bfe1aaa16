"""What every annotation reader shares: the parsed form of one image (``Entry`` with its ``Shape`` s)
and ``build``, which checks, clips and rasterises entries into inspekt ``Sample`` s.

Masks are written once as PNG files into a cache folder keyed by the annotation's digest (the user
cache, so a read-only dataset folder works): ``$INSPEKT_CACHE_DIR``, else ``$XDG_CACHE_HOME/inspekt``,
else ``~/.cache/inspekt``. Class ``k`` (0-based, in the sorted order of the classes that have
shapes) is pixel value ``255 - k``, 0 is background: every value is at least 128, so the default
``masks=binary`` reads any class as defect, ``masks=folder`` takes the image's class, and
``masks=values`` with the printed ``mask_values`` keeps every class apart.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspekt.data.dataset import Box, FileProblem, Sample
from inspekt.errors import DatasetError, ImageLoadError
from inspekt.io import image_size, save_image
from inspekt.progress import step

MAX_MASK_CLASSES = 128  # values 255 .. 128


@dataclass
class Shape:
    """One annotated object of an image, in pixels of the original image."""

    label: str
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1
    polygons: list[list[float]] = field(default_factory=list)  # each a flat x, y, x, y ... list
    mask: np.ndarray | None = None  # HxW bool over the whole image


@dataclass
class Entry:
    """One image as an annotation file describes it."""

    image: Path
    where: str  # names the entry in messages: "labels.json: image 7 (a.png)"
    size: tuple[int, int] | None = None  # (width, height) the file states, checked against the image
    label: str | None = None  # an image-level class (tag / choice); else the shapes' one class
    split: str | None = None
    shapes: list[Shape] = field(default_factory=list)


@dataclass(frozen=True)
class Annotations:
    """An annotation source read into samples (``layouts.open_dataset`` makes it a ``Dataset``)."""

    format: str
    root: Path
    samples: tuple[Sample, ...]
    problems: tuple[FileProblem, ...]
    mask_classes: tuple[str, ...]  # class k is mask value 255 - k

    @property
    def mask_values(self) -> dict[int, str]:
        """The mask pixel value of each class (for ``masks=values``)."""
        return {255 - k: name for k, name in enumerate(self.mask_classes)}


def cache_root() -> Path:
    """inspekt's cache folder (``$INSPEKT_CACHE_DIR``, ``$XDG_CACHE_HOME/inspekt`` or ``~/.cache/inspekt``)."""
    if os.environ.get("INSPEKT_CACHE_DIR"):
        return Path(os.environ["INSPEKT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inspekt"


def file_digest(paths: Iterable[Path]) -> str:
    """sha256 over the bytes of ``paths`` (in the given order) and their names."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def find_image(bases: Iterable[Path], name: str) -> Path:
    """The first existing ``base / name`` (also trying only the file name); else the first candidate
    (``..`` folded, so a name relative to the annotation file gives a clean path)."""
    candidates = [Path(os.path.normpath(b / name)) for b in bases] + [b / Path(name).name for b in bases]
    return next((c for c in candidates if c.is_file()), candidates[0])


def header_size(path: Path) -> tuple[int, int]:
    """An image's (width, height) from its header; (0, 0) when unreadable (``build`` reports the file)."""
    try:
        return image_size(path)
    except (ImageLoadError, OSError):
        return (0, 0)


def polygon_bounds(flat: list[float]) -> tuple[float, float, float, float]:
    """The box around a flat x, y, x, y ... polygon."""
    xs, ys = flat[0::2], flat[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def rasterise_polygons(polygons: list[list[float]], width: int, height: int) -> np.ndarray:
    """HxW bool: the pixels inside the polygons (pycocotools' rasteriser, the COCO reference)."""
    from pycocotools import mask as coco_mask

    rles = coco_mask.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def _clip_shape(shape: Shape, width: int, height: int) -> bool:
    """Clip a shape's box and polygons to the image; True when anything lay outside."""
    outside = False
    if shape.box is not None:
        x0, y0, x1, y1 = shape.box
        clipped = (min(max(x0, 0), width), min(max(y0, 0), height), min(max(x1, 0), width), min(max(y1, 0), height))
        outside = clipped != (x0, y0, x1, y1)
        shape.box = clipped
    for i, flat in enumerate(shape.polygons):
        points = np.asarray(flat, dtype=float).reshape(-1, 2)
        limited = np.clip(points, 0, [width, height])
        outside |= bool((limited != points).any())
        shape.polygons[i] = limited.ravel().tolist()
    return outside


def _shape_box(shape: Shape) -> tuple[float, float, float, float] | None:
    if shape.box is not None:
        return shape.box
    if shape.polygons:
        bounds = np.array([polygon_bounds(p) for p in shape.polygons])
        return (*bounds[:, :2].min(axis=0).tolist(), *bounds[:, 2:].max(axis=0).tolist())
    if shape.mask is not None and shape.mask.any():
        ys, xs = np.nonzero(shape.mask)
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    return None


def _check_size(entry: Entry) -> tuple[int, int] | str:
    """The image's (width, height), or why the entry cannot be used."""
    if not entry.image.is_file():
        return f"image not found at {entry.image}; put the image there or correct its name in the annotation"
    try:
        actual = image_size(entry.image)
    except ImageLoadError as exc:
        return f"image unreadable ({str(exc).split(': ', 1)[-1]}); replace the file or drop its annotation"
    if entry.size is not None and tuple(entry.size) != actual:
        return (
            f"the annotation says the image is {entry.size[0]}x{entry.size[1]} but {entry.image.name} is "
            f"{actual[0]}x{actual[1]}; re-export the annotation for this image"
        )
    return actual


def _prepare(entry: Entry, size: tuple[int, int], problems: list[FileProblem]) -> list[Shape]:
    """The entry's usable shapes, clipped to the image; what was clipped or dropped is reported."""
    kept = []
    for n, shape in enumerate(entry.shapes, start=1):
        if _clip_shape(shape, *size):
            problems.append(
                FileProblem(
                    entry.where,
                    f"shape {n} ({shape.label}) reaches outside the {size[0]}x{size[1]} image; clipped to it "
                    "(check its coordinates in the labelling tool)",
                )
            )
        box = _shape_box(shape)
        if box is None or (box[2] - box[0]) * (box[3] - box[1]) <= 0:
            problems.append(
                FileProblem(entry.where, f"shape {n} ({shape.label}) has no area (after clipping); skipped")
            )
            continue
        kept.append(shape)
    return kept


def _mask(shapes: list[Shape], size: tuple[int, int], classes: tuple[str, ...]) -> np.ndarray | None:
    """The class-value mask of the shapes that have polygons or a mask (later shapes paint over earlier)."""
    painted = [s for s in shapes if s.polygons or s.mask is not None]
    if not painted:
        return None
    out = np.zeros((size[1], size[0]), dtype=np.uint8)
    for shape in painted:
        region = shape.mask if shape.mask is not None else rasterise_polygons(shape.polygons, *size)
        out[region] = 255 - classes.index(shape.label)
    return out


def build(fmt: str, root: Path, entries: list[Entry], problems: list[FileProblem], digest: str) -> Annotations:
    """Check, clip and rasterise parsed entries into samples; bad entries are reported and skipped.

    Args:
        fmt: the format's name (the dataset's layout).
        root: the annotation file or folder.
        entries: the parsed images.
        problems: what the parser already found wrong (appended to).
        digest: the annotation's content digest (keys the mask cache).
    """
    classes = tuple(sorted({s.label for e in entries for s in e.shapes if s.polygons or s.mask is not None}))
    if len(classes) > MAX_MASK_CLASSES:
        raise DatasetError(f"{root}: {len(classes)} mask classes; inspekt masks hold at most {MAX_MASK_CLASSES}")
    cache = cache_root() / "annotations" / f"{fmt}-{digest[:20]}"
    samples = []
    with step(f"reading {fmt} annotations", total=len(entries), announce=False) as advance:
        for i, entry in enumerate(entries):
            advance()
            size = _check_size(entry)
            if isinstance(size, str):
                problems.append(FileProblem(entry.where, size))
                continue
            shapes = _prepare(entry, size, problems)
            mask = _mask(shapes, size, classes)
            mask_path = None
            if mask is not None:
                mask_path = cache / f"{i:06d}_{entry.image.stem}.png"
                if not mask_path.is_file():
                    save_image(mask_path, mask)
            labels = {s.label for s in shapes}
            label = entry.label or (labels.pop() if len(labels) == 1 else None)
            boxes = tuple(Box(s.label, *_shape_box(s)) for s in shapes)
            samples.append(Sample(entry.image, label, mask_path, entry.split, boxes))
    return Annotations(fmt, root, tuple(samples), tuple(problems), classes)
