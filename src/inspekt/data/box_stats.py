"""What ``inspekt data info`` says about a dataset's boxes: how many per class, their sizes, the
annotated negatives and the boxes that reach outside their image (a detector clips them). A dataset
with masks and no box annotations is described by the boxes a detector reads from it: one per
connected region of each mask (``inspekt.regions``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inspekt.card import NORMAL_NAMES
from inspekt.data.dataset import Box, Dataset, FileProblem, Sample

SMALL_SIDE = 16  # boxes whose longer side is under this many pixels are counted as small


@dataclass
class BoxStats:
    """Box statistics of a dataset (pixels of the original images).

    Attributes:
        source: "annotations" (``Sample.boxes``) or "masks" (one box per mask region).
        n_boxes: boxes in all.
        images_with_boxes: images holding at least one box.
        negatives: images annotated as holding no object (``Sample.boxes == ()``).
        per_class: boxes per class.
        width, height: min / median / max box side.
        small: boxes whose longer side is under ``SMALL_SIDE`` pixels.
        outside: boxes reaching outside their image, per file (they are clipped when used).
    """

    source: str
    n_boxes: int
    images_with_boxes: int
    negatives: int
    per_class: dict[str, int]
    width: dict[str, float]
    height: dict[str, float]
    small: int
    outside: list[FileProblem] = field(default_factory=list)


def mask_boxes(sample: Sample, defect: np.ndarray) -> tuple[Box, ...]:
    """The boxes a detector reads from a sample's mask: one per connected region of its ``defect`` pixels
    (``masks.defect_pixels``), named by the sample's class (``defect`` for unlabelled or normal ones)."""
    from inspekt.regions import components

    label = sample.label if sample.label and sample.label.lower() not in NORMAL_NAMES else "defect"
    found = components(defect.astype(np.uint8), defect.astype(np.float32), ("background", label))
    return tuple(Box(label, x, y, x + w, y + h) for x, y, w, h in (c["bbox"] for c in found))


def _spread(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def box_stats(
    ds: Dataset, shapes: Sequence[tuple[int, int] | None], from_masks: Sequence[tuple[Box, ...]]
) -> BoxStats | None:
    """The dataset's box statistics, or None when it has neither boxes nor masks.

    Args:
        ds: the dataset.
        shapes: each sample's image (height, width), None where it could not be read.
        from_masks: each sample's boxes read from its mask (``mask_boxes``; none without a usable mask),
            used when the dataset has no box annotations.
    """
    annotated = any(s.boxes is not None for s in ds.samples)
    if not annotated and not ds.n_masks:
        return None
    per_image = [s.boxes or () for s in ds.samples] if annotated else list(from_masks)
    boxes = [b for found in per_image for b in found]
    sides = np.array([(b.x1 - b.x0, b.y1 - b.y0) for b in boxes], dtype=np.float64).reshape(-1, 2)
    outside = []
    for sample, found, shape in zip(ds.samples, per_image, shapes):
        if shape is None:
            continue
        h, w = shape
        beyond = [b for b in found if b.x0 < 0 or b.y0 < 0 or b.x1 > w or b.y1 > h]
        if beyond:
            first = beyond[0]
            where = f"({first.x0:g}, {first.y0:g}, {first.x1:g}, {first.y1:g}) in a {w}x{h} image"
            outside.append(FileProblem(str(sample.path), f"{len(beyond)} box(es) reach outside it, e.g. {where}"))
    return BoxStats(
        source="annotations" if annotated else "masks",
        n_boxes=len(boxes),
        images_with_boxes=sum(bool(found) for found in per_image),
        negatives=sum(s.boxes == () for s in ds.samples),
        per_class=dict(sorted(Counter(b.label for b in boxes).items())),
        width=_spread(sides[:, 0]),
        height=_spread(sides[:, 1]),
        small=int((sides.max(axis=1, initial=0) < SMALL_SIDE).sum()) if len(sides) else 0,
        outside=outside,
    )
