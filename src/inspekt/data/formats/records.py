"""What the writers take: one ``Record`` per image, made from a dataset sample or a prediction, and
the objects (connected regions per class) a record's mask holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inspekt.data.dataset import Box, Sample
from inspekt.io import image_size
from inspekt.results import Prediction


@dataclass
class Record:
    """One image to write: its class, mask and boxes, with scores when it is a prediction."""

    image: str
    width: int
    height: int
    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    mask: np.ndarray | None = None  # HxW class indices, 0 = background
    classes: Sequence[str] = ()  # the name of each mask index
    heatmap: np.ndarray | None = None  # HxW per-pixel score (the objects' scores)
    boxes: tuple[Box, ...] = ()
    box_scores: tuple[float | None, ...] = ()  # a prediction's score of each box
    split: str | None = None
    tag: bool = True  # the label is the image's own (not a detection's, whose boxes carry the classes)

    def scored_boxes(self) -> list[tuple[Box, float | None]]:
        """Each box with its score (None for labelled boxes)."""
        return [(box, self.box_scores[i] if i < len(self.box_scores) else None) for i, box in enumerate(self.boxes)]


@dataclass(frozen=True)
class Region:
    """One connected region of one class in a record's mask."""

    label: str
    pixels: np.ndarray = field(repr=False)  # HxW bool
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    score: float | None


def regions(record: Record) -> list[Region]:
    """The record's mask as connected regions (8-connected, per class), largest first."""
    import cv2

    if record.mask is None or not record.mask.any():
        return []
    found = []
    for value in np.unique(record.mask[record.mask > 0]).tolist():
        n, labels, stats, _ = cv2.connectedComponentsWithStats((record.mask == value).astype(np.uint8), connectivity=8)
        for i in range(1, n):
            pixels = labels == i
            x, y, w, h = (int(v) for v in stats[i][:4])
            score = float(record.heatmap[pixels].max()) if record.heatmap is not None else record.score
            found.append(Region(record.classes[value], pixels, (x, y, x + w, y + h), score))
    return sorted(found, key=lambda r: -int(r.pixels.sum()))


def from_prediction(prediction: Prediction, classes: Sequence[str]) -> Record:
    """A prediction as a record (``classes``: the model's classes, naming the mask's indices)."""
    if prediction.mask is not None:
        height, width = prediction.mask.shape
    else:
        width, height = image_size(prediction.source)
    found = getattr(prediction, "boxes", None) or []  # detection: {"class", "score", "box": [x0, y0, x1, y1]}
    return Record(
        image=prediction.source,
        width=width,
        height=height,
        label=prediction.label,
        score=prediction.score,
        scores=prediction.scores,
        mask=prediction.mask,
        classes=tuple(classes),
        heatmap=prediction.heatmap,
        boxes=tuple(Box(str(b["class"]), *map(float, b["box"])) for b in found),
        box_scores=tuple(b.get("score") for b in found),
        tag=getattr(prediction, "boxes", None) is None,
    )


def from_sample(sample: Sample, mask: np.ndarray | None, classes: Sequence[str], *, tag: bool = True) -> Record:
    """A dataset sample as a record; ``mask`` is its class-index map (``MaskRule.target``); ``tag``: write
    its label as the image's own (False in a detection dataset, whose boxes carry the classes)."""
    width, height = image_size(sample.path)
    return Record(
        image=str(sample.path),
        width=width,
        height=height,
        label=sample.label,
        mask=mask,
        classes=tuple(classes),
        boxes=sample.boxes or (),
        split=sample.split,
        tag=tag,
    )


def _grow(points: np.ndarray, by: float = 0.5) -> np.ndarray:
    """Move a closed polygon's edges ``by`` pixels outwards (mitred corners), so a boundary traced through
    pixel centres runs along the pixels' outer edges instead."""
    edges = np.roll(points, -1, axis=0) - points
    lengths = np.linalg.norm(edges, axis=1, keepdims=True)
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.maximum(lengths, 1e-9)
    signed = np.sum(points[:, 0] * np.roll(points[:, 1], -1) - np.roll(points[:, 0], -1) * points[:, 1])
    normals = normals if signed > 0 else -normals  # the side away from the inside
    before, after = np.roll(normals, 1, axis=0), normals  # the edges ending and starting at each point
    grown = points.copy()
    for i, (n1, n2) in enumerate(zip(before, after)):
        system = np.stack([n1, n2])
        if abs(np.linalg.det(system)) < 1e-6:  # straight on or turning back: push along the normal
            grown[i] += by * n1
        else:
            grown[i] += np.linalg.solve(system, [by, by])
    return grown


def outline(pixels: np.ndarray) -> list[list[float]]:
    """A region's outer boundary as flat x, y, ... polygons in pixel-edge coordinates (pixel ``i`` spans
    ``[i, i + 1)``): the boundary pixels' centres moved half a pixel outwards, so the polygon runs along
    the region's outer pixel edges (holes are not kept)."""
    import cv2

    contours, _ = cv2.findContours(pixels.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(float) + 0.5
        if len(points) < 3:  # a dot or a straight line: its pixels' box
            (x0, y0), (x1, y1) = points.min(axis=0) - 0.5, points.max(axis=0) + 0.5
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        else:
            points = _grow(points)
        height, width = pixels.shape
        polygons.append(np.clip(points, 0, [width, height]).ravel().tolist())
    return polygons
