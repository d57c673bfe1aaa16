"""What every mode returns, at the bottom of the layers: one image's ``Prediction`` (the same
dataclass for every task; each task subclasses it for its own summary and overlay) and the
``BatchReport`` of files a batch read and skipped."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SkippedFile:
    """A source that ``iter_images`` could not load, and why."""

    path: str
    reason: str


@dataclass
class BatchReport:
    """Counts of what ``iter_images`` loaded and what it skipped."""

    loaded: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)

    def summary(self) -> str:
        """Return a human-readable summary: one header line, then one line per skipped file.

        Returns:
            E.g. ``"loaded 98 images, skipped 2:\\n  a.png: empty file (0 bytes)\\n  ..."``.
        """
        plural = "" if self.loaded == 1 else "s"
        head = f"loaded {self.loaded} image{plural}, skipped {len(self.skipped)}"
        if not self.skipped:
            return head
        return head + ":\n" + "\n".join(f"  {s.path}: {s.reason}" for s in self.skipped)

    def warn_unkept(self) -> None:
        """For a report the caller did not pass in: name the skipped files in a warning rather than drop
        them silently (from the library's entry points that take ``report=``)."""
        if self.skipped:
            warnings.warn(self.summary() + "\n(pass report=BatchReport() to collect them)", UserWarning, stacklevel=3)


@dataclass
class Prediction:
    """One image's result, the same dataclass for every task.

    Attributes:
        source: the file path (or ``<array N>`` / ``<bytes>``).
        task: classify, segment or anomaly.
        label: the predicted class; segment: the class of the largest defect region, or "ok".
        score: confidence of ``label`` (classify); segment: the largest defect probability of any pixel;
            anomaly: the normalised anomaly score (the calibrated threshold is 0.5; raw score in ``extra``).
        scores: per-class probabilities (classify); segment: each defect class's largest pixel probability.
        mask: HxW uint8 class-index mask at the original image size (segment; 0 = background; anomaly:
            1 = anomalous pixel).
        heatmap: HxW float32 map at the original image size (segment: defect probability; anomaly: the
            normalised anomaly map).
        embedding: the classifier head's input (penultimate features; classify bundles that export it).
        reconstruction: anomaly: what the model expected to see (HxW or HxWx3 uint8 at the original
            size; reconstruction methods and template_ratio's template), or None.
        time_ms: model + pre/post-processing time attributed to this image: the time of the model call
            it shared with ``batch_images`` images, divided by ``batch_images`` (1: its own time).
        batch_images: how many images were predicted together in that call (``to_dict`` also gives the
            call's whole time, ``batch_ms``, so nobody reads a batch average as one image's time).
        ood: ``{"score": float, "unlike_training": bool}``: how far the image's embedding is from the
            training images' (``inspekt.profiling.novelty``; above 1 = further than 99% of held-out
            images), or None when the bundle's reference has no embeddings to compare with; an image
            whose size is far outside the training images' is flagged for any model, with ``"why"``
            (``inspekt.engine.predictor.TrainingSizes``).
        boxes: detect: the boxes found, best first: ``{"class", "score", "box": [x0, y0, x1, y1],
            "area_px"}`` in original-image pixels (x1, y1 exclusive); None for tasks without boxes.
        extra: task details; segment: ``verdict``, ``components`` (class, bbox, area, scores),
            ``defect_area_pct``; anomaly: ``verdict``, ``raw_score``, ``components``, ``anomaly_area_pct``.
    """

    source: str
    task: str
    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    mask: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    embedding: np.ndarray | None = None
    reconstruction: np.ndarray | None = None
    time_ms: float = 0.0
    batch_images: int = 1
    ood: dict[str, Any] | None = None
    boxes: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` most probable classes with their probabilities, best first (all when k is None)."""
        ranked = sorted((self.scores or {}).items(), key=lambda kv: kv[1], reverse=True)
        return ranked[:k] if k else ranked

    def to_dict(self, topk: int | None = None) -> dict[str, Any]:
        """JSON-ready dict (arrays summarised by their shape, not dumped); ``scores`` best first,
        only the ``topk`` best when given."""
        out: dict[str, Any] = {"path": self.source, "task": self.task, "label": self.label, "score": self.score}
        if self.scores is not None:
            out["scores"] = dict(self.top(topk))
        for name in ("mask", "heatmap", "embedding", "reconstruction"):
            value = getattr(self, name)
            if value is not None:
                out[f"{name}_shape"] = list(value.shape)
        out["time_ms"] = round(self.time_ms, 3)
        out["batch_images"] = self.batch_images
        out["batch_ms"] = round(self.time_ms * self.batch_images, 3)
        if self.ood is not None:
            out["ood"] = dict(self.ood)
        if self.boxes is not None:
            out["boxes"] = [dict(box) for box in self.boxes]
        return out | self.extra

    def __repr__(self) -> str:
        details = "; ".join(part for part in (self.describe(), self.ood_note()) if part)  # the headline names its score
        return f"<Prediction {Path(self.source).name}: {self.headline()}{f' ({details})' if details else ''}>"

    def headline(self) -> str:
        """The verdict in a few words, e.g. ``scratch · 93.1%`` (each task's subclass words its own)."""
        return f"{self.label} · {self.score:.1%}" if self.score is not None else str(self.label)

    def describe(self) -> str:
        """What else a person should read about it, in one line ("" when nothing)."""
        return ""

    def ood_note(self) -> str:
        """``"unlike the training images (score 2.41)"`` when flagged (with the reason when it is its size),
        else ""."""
        return ood_note(self.ood)


def ood_note(ood: dict[str, Any] | None) -> str:
    """``Prediction.ood_note`` of a prediction's (or a recorded one's) ``ood`` dict."""
    reason = ood_reason(ood)
    return f"unlike the training images ({reason})" if reason else ""


def ood_reason(ood: dict[str, Any] | None) -> str:
    """Why an ``ood`` dict flags its image (``"score 2.41"``, with the size when that is the reason), or "" when
    it does not."""
    if not ood or not ood.get("unlike_training"):
        return ""
    return f"score {ood['score']:.2f}" + (f": {ood['why']}" if ood.get("why") else "")


def share_time(predictions: list[Prediction], started: float) -> None:
    """Divide the time since ``started`` (a ``time.perf_counter()`` value) among ``predictions``,
    made in one model call, and record how many shared it (``Prediction.batch_images``)."""
    per_image = (time.perf_counter() - started) * 1000 / max(1, len(predictions))
    for prediction in predictions:
        prediction.time_ms, prediction.batch_images = per_image, len(predictions)


def json_safe(value: Any) -> Any:
    """``value`` ready for strict JSON: NaN / infinite numbers become None (never a bare NaN that
    parsers refuse), numpy scalars and arrays plain numbers and lists; dicts, lists and tuples recursively."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
