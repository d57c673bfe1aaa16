"""Detection inference: the network's heat map and box distances for an image (resized, or tiled by
``inspekt.tiling``), boxes read off by peak extraction (a 3x3 max filter: a cell is an object's
centre when no neighbour of its class scores higher; no NMS), mapped back to original pixels.

This NumPy code runs after either backend, so ONNX and torch give the same boxes whenever their
maps agree (the parity check at export). Pure NumPy / OpenCV: serving needs no torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inspekt.card import InputSpec, ModelCard, PostProcess
from inspekt.results import share_time
from inspekt.tasks.base import DrawnPrediction
from inspekt.tiling import blend_tiles
from inspekt.transforms import Geometry, prepare, preprocess_batch

RunMaps = Callable[[np.ndarray], dict[str, np.ndarray]]  # NCHW inputs -> {"heatmap", "boxes"}
STRIDE = 4  # input pixels per map cell (inspekt.models.detect.STRIDE)
MAX_BOXES = 100  # boxes kept per image, best first (COCO's maxDets)
OK = "ok"


class DetectPrediction(DrawnPrediction):
    """A detection: ``boxes`` holds the objects found, ``extra["counts"]`` how many per class."""

    def headline(self) -> str:
        counts = self.extra["counts"]
        found = ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "no box"
        return f"{self.extra['verdict']} · {found}"

    def describe(self) -> str:
        return f"{len(self.boxes or ())} box(es), best score {self.score:.2f}"

    def plot(self, image: np.ndarray | None = None, *, ax=None):
        """Draw the image with its boxes, the verdict and the best score (notebooks); returns the Axes."""
        from inspekt.draw import plot_prediction

        return plot_prediction(self, self.overlay(image), ax=ax)

    def overlay(self, image: np.ndarray | None = None, *, opacity: float = 0.4) -> np.ndarray:
        """The image (RGB, original size) with every box drawn in its class colour ("class score")."""
        from inspekt.draw import draw_boxes

        classes = tuple(self.scores or ())
        return draw_boxes(self._image(image), self.boxes or [], classes)


@dataclass
class Maps:
    """One image's maps on its cell grid: ``heat`` (classes, h, w), ``dist`` (4, h, w) in model-input
    pixels, and how the grid maps onto the original image."""

    heat: np.ndarray
    dist: np.ndarray
    geometry: Geometry


def _cells(values: np.ndarray) -> np.ndarray:
    """Full-resolution maps back onto the cell grid (each cell's centre pixel)."""
    return values[:, STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE]


def tiled_maps(prepared: np.ndarray, spec: InputSpec, run: RunMaps, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Maps of a scaled image blended over its windows (``tiling.blend_tiles``). Each window's cells
    are spread over their pixels, the distances re-measured from each pixel's own position, so that
    windows starting anywhere (not only at multiples of the stride) blend in agreement; the result is
    read back at the image's own cell centres."""

    def spread(batch: np.ndarray) -> dict[str, np.ndarray]:
        out = run(batch)
        heat = out["heatmap"].repeat(STRIDE, axis=2).repeat(STRIDE, axis=3)
        dist = out["boxes"].repeat(STRIDE, axis=2).repeat(STRIDE, axis=3)
        dx = (np.arange(dist.shape[3]) % STRIDE - STRIDE // 2).astype(np.float32)  # pixel minus cell centre
        dy = (np.arange(dist.shape[2]) % STRIDE - STRIDE // 2).astype(np.float32)[:, None]
        moved = np.stack([dist[:, 0] + dx, dist[:, 1] + dy, dist[:, 2] - dx, dist[:, 3] - dy], axis=1)
        return {"heatmap": heat, "boxes": moved}

    blended = blend_tiles(prepared, spec, spread, batch_size)
    return _cells(blended["heatmap"]), _cells(blended["boxes"])


def box_maps(images: Sequence[np.ndarray], spec: InputSpec, run: RunMaps, batch_size: int = 16) -> list[Maps]:
    """The heat map and box distances of decoded images (any size), with their geometry."""
    if spec.resize == "tile":
        found = []
        for image in images:
            prepared, geometry = prepare(image, spec)
            found.append(Maps(*tiled_maps(prepared, spec, run, batch_size), geometry))
        return found
    batch, geometries = preprocess_batch(images, spec)
    if not len(batch):
        return []
    out = run(batch)
    return [Maps(h, d, g) for h, d, g in zip(out["heatmap"], out["boxes"], geometries)]


def peaks(heat: np.ndarray, threshold: float, limit: int = MAX_BOXES) -> tuple[np.ndarray, ...]:
    """Object centres: cells that are the largest of their class in their 3x3 neighbourhood, the best
    class of their cell and score at least ``threshold``; at most ``limit``, best first.

    Returns:
        Class indices, rows and columns of the cells, and their scores.
    """
    kernel = np.ones((3, 3), dtype=np.uint8)
    pooled = np.stack([cv2.dilate(channel, kernel) for channel in heat])
    best = heat.argmax(axis=0)
    keep = (heat >= pooled) & (heat >= threshold) & (np.arange(len(heat))[:, None, None] == best[None])
    cls, rows, cols = np.nonzero(keep)
    scores = heat[cls, rows, cols]
    order = np.argsort(-scores, kind="stable")[:limit]
    return cls[order], rows[order], cols[order], scores[order]


def decode(maps: Maps, threshold: float, min_area: float = 0.0) -> np.ndarray:
    """The boxes of one image in original pixels: (K, 6) float32 of x0, y0, x1, y1, class, score."""
    cls, rows, cols, scores = peaks(maps.heat, threshold)
    cx, cy = (cols + 0.5) * STRIDE, (rows + 0.5) * STRIDE
    left, top, right, bottom = maps.dist[:, rows, cols]
    g = maps.geometry
    oh, ow = g.original_hw
    x0 = ((cx - left - g.left) / g.scale_x).clip(0, ow)
    x1 = ((cx + right - g.left) / g.scale_x).clip(0, ow)
    y0 = ((cy - top - g.top) / g.scale_y).clip(0, oh)
    y1 = ((cy + bottom - g.top) / g.scale_y).clip(0, oh)
    found = np.stack([x0, y0, x1, y1, cls, scores], axis=1).astype(np.float32).reshape(-1, 6)
    area = (found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])
    return found[(area > 0) & (area >= min_area)]


def box_records(found: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Boxes as the JSON records of ``Prediction.boxes`` (best first)."""
    return [
        {
            "class": classes[int(c)],
            "score": round(float(s), 6),
            "box": [round(float(v), 2) for v in (x0, y0, x1, y1)],
            "area_px": round(float((x1 - x0) * (y1 - y0)), 1),
        }
        for x0, y0, x1, y1, c, s in found
    ]


def predict_detect(
    card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run: RunMaps, batch_size: int
):
    """Predictions (boxes, counts, verdict) for decoded images; the Predictor's detect path."""
    post = card.postprocess or PostProcess()
    groups = [[i] for i in range(len(images))] if card.input.resize == "tile" else [list(range(len(images)))]
    results = []
    for group in groups:
        t0 = time.perf_counter()
        for i, maps in zip(group, box_maps([images[i] for i in group], card.input, run, batch_size)):
            results.append(_prediction(card, post, sources[i], maps))
        share_time(results[-len(group) :], t0)
    return results


def _prediction(card: ModelCard, post: PostProcess, source: str, maps: Maps) -> DetectPrediction:
    found = decode(maps, post.threshold, post.min_area)
    boxes = box_records(found, card.classes)
    counts = {name: sum(b["class"] == name for b in boxes) for name in card.classes}
    per_class = {name: round(float(h.max()), 6) for name, h in zip(card.classes, maps.heat)}
    extra = {"verdict": "defect" if boxes else OK, "counts": counts, "image_hw": list(maps.geometry.original_hw)}
    label = boxes[0]["class"] if boxes else OK
    return DetectPrediction(source, "detect", label, float(maps.heat.max()), per_class, boxes=boxes, extra=extra)
