"""Where a detector's true boxes come from, the same way in training and evaluation: the dataset's
box annotations (``Sample.boxes``), or, for a dataset with masks and no boxes, one box per connected
region of each mask (``inspekt.regions``), so every segmentation dataset is a detection dataset.

Also the box arithmetic every part of the task uses: IoU and greedy matching at an IoU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspekt.card import MaskSpec, ModelCard
from inspekt.data import Dataset, Sample
from inspekt.data.layouts import csv_columns
from inspekt.data.masks import BACKGROUND, MaskRule, mask_rule
from inspekt.errors import DatasetError
from inspekt.regions import components

# One image's boxes as an (K, 5) float32 array: x0, y0, x1, y1 (pixels, x1/y1 exclusive), class index.
BoxArray = np.ndarray


def empty_boxes() -> BoxArray:
    return np.zeros((0, 5), dtype=np.float32)


@dataclass(frozen=True)
class BoxRule:
    """How a sample's true boxes are read: from its annotations, or from its mask (``masks`` set)."""

    classes: tuple[str, ...]
    masks: MaskRule | None = None

    @property
    def from_masks(self) -> bool:
        return self.masks is not None

    def spec(self) -> MaskSpec | None:
        """What the card records (``card.masks``): the mask rule, or None for annotated boxes."""
        return None if self.masks is None else self.masks.spec()

    @classmethod
    def from_card(cls, card: ModelCard) -> BoxRule:
        """The rule a detection card was trained with."""
        if card.masks is None:
            return cls(card.classes)
        classes = (BACKGROUND, *card.classes)
        values = {int(v): classes.index(name) for v, name in card.masks.values.items() if name in classes}
        return cls(card.classes, MaskRule(card.masks.mode, classes, card.masks.threshold, values))

    def boxes(self, sample: Sample, shape: tuple[int, int]) -> BoxArray:
        """The sample's boxes in original-image pixels, clipped to the image (``shape`` H, W).

        Raises:
            DatasetError: a mask that cannot be read or does not fit its image, or a box of a class
                the model does not know.
        """
        if self.masks is not None:
            target = self.masks.target(sample, shape)
            found = components(target, target.astype(np.float32), self.masks.classes)
            rows = [(x, y, x + w, y + h, self.classes.index(c["class"])) for c in found for x, y, w, h in [c["bbox"]]]
            return np.asarray(rows, dtype=np.float32).reshape(-1, 5)
        rows = []
        for box in sample.boxes or ():
            if box.label not in self.classes:
                raise DatasetError(
                    f"{sample.path}: a box of class {box.label!r}, which the model does not know "
                    f"(its classes: {', '.join(self.classes)}); evaluate on data with the model's classes"
                )
            rows.append((box.x0, box.y0, box.x1, box.y1, self.classes.index(box.label)))
        return clip_boxes(np.asarray(rows, dtype=np.float32).reshape(-1, 5), shape)


def clip_boxes(boxes: BoxArray, shape: tuple[int, int]) -> BoxArray:
    """Boxes clipped to an image of ``shape`` (H, W); boxes left with no area are dropped."""
    h, w = shape
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


def box_rule(ds: Dataset, masks: str = "binary", threshold: int = 128, values=None) -> BoxRule:
    """The rule for a training dataset: its annotated boxes when any sample has them, else boxes from
    its masks (``masks`` says how mask files name classes, as for segmentation).

    Raises:
        DatasetError: neither boxes nor masks.
    """
    labels = sorted({b.label for s in ds.samples for b in s.boxes or ()})
    if any(s.boxes is not None for s in ds.samples):
        if not labels:
            raise DatasetError(f"{ds.root}: the box annotations hold no box at all; annotate some objects")
        return BoxRule(tuple(labels))
    if not ds.n_masks:
        tables = sorted(ds.root.glob("*.csv")) if isinstance(ds.root, Path) and ds.root.is_dir() else []
        boxed = next((t for t in tables if "boxes" in csv_columns(t)), None)
        beside = f"; {boxed} holds boxes beside the images: give --data {boxed}" if boxed else ""
        raise DatasetError(
            f"{ds.root}: no boxes and no masks, so there is nothing to detect; give box annotations "
            f"(Pascal VOC XML, YOLO .txt, COCO JSON, a CSV with a boxes column) or masks (images/ + masks/, "
            f"MVTec ...){beside}"
        )
    rule = mask_rule(ds, masks, threshold=threshold, values=values)
    return BoxRule(rule.classes[1:], rule)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, >=4) with every box of ``b`` (M, >=4), x0 y0 x1 y1 first."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), dtype=np.float64)
    a, b = a[:, None, :4].astype(np.float64), b[None, :, :4].astype(np.float64)
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def match(found: np.ndarray, truth: BoxArray, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching, best score first, of found boxes (K, 6: x0 y0 x1 y1 class score) to true
    boxes of the same class at ``iou`` or more (the COCO rule at one IoU).

    Returns:
        Whether each found box is a true positive, and whether each true box was found.
    """
    hit, seen = np.zeros(len(found), dtype=bool), np.zeros(len(truth), dtype=bool)
    overlaps = iou_matrix(found, truth)
    for i in np.argsort(-found[:, 5], kind="stable") if len(found) else ():
        same = (truth[:, 4] == found[i, 4]) & ~seen & (overlaps[i] >= iou)
        if same.any():
            j = int(np.argmax(np.where(same, overlaps[i], -1)))
            hit[i], seen[j] = True, True
    return hit, seen
