"""The one Predictor every front door uses: decode -> preprocess from the card -> model -> Prediction.

ONNX Runtime by default (no torch import needed to serve); a torch backend for gradients
(Grad-CAM) and for checking the export. Both backends see the same preprocessed batch.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspekt.bundle import ONNX, Bundle, load_network, open_bundle, with_card_outputs
from inspekt.card import EMBEDDING, ModelCard, PostProcess, positive_class
from inspekt.enhance import Pipeline
from inspekt.errors import BundleError, ConfigError, did_you_mean
from inspekt.io import BatchReport, iter_images
from inspekt.transforms import preprocess_batch

BACKENDS = ("onnx", "torch")
ImageSource = str | os.PathLike | bytes | np.ndarray


@dataclass
class Prediction:
    """One image's result, the same dataclass for every task.

    Attributes:
        source: the file path (or ``<array>`` / ``<bytes>``).
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
        time_ms: model + pre/post-processing time attributed to this image.
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
        return out | self.extra

    def __repr__(self) -> str:
        score = "" if self.score is None else f" {self.score:.3f}"
        if self.task == "segment":
            regions = len(self.extra.get("components", []))
            return (
                f"<Prediction {Path(self.source).name}: {self.label}{score} ({regions} region(s), "
                f"{self.extra.get('defect_area_pct', 0):.2f}% defect)>"
            )
        if self.task == "anomaly":
            return (
                f"<Prediction {Path(self.source).name}: {self.label}{score} (raw {self.extra.get('raw_score')}, "
                f"{self.extra.get('anomaly_area_pct', 0):.2f}% of pixels anomalous)>"
            )
        runners = ", ".join(f"{name} {p:.3f}" for name, p in self.top(3)[1:])
        return f"<Prediction {Path(self.source).name}: {self.label}{score}{f' (then {runners})' if runners else ''}>"

    def plot(self, image: np.ndarray | None = None, *, ax=None):
        """Draw the image with its label and top scores (for notebooks); returns the matplotlib Axes.

        Args:
            image: the decoded image; by default it is read again from ``source``.
            ax: an Axes to draw into (default: a new figure).
        """
        from inspekt.plots import plot_prediction

        if image is None:
            from inspekt.io import load_image

            image = load_image(self.source, mode="keep")
        return plot_prediction(self, image, ax=ax)

    def overlay(self, image: np.ndarray | None = None, *, opacity: float = 0.4) -> np.ndarray:
        """The image (RGB, original size) with the predicted mask filled at ``opacity`` and outlined
        (anomaly: the anomaly map as a heat map at ``opacity``, anomalous regions outlined in white).

        Args:
            image: the decoded image; by default it is read again from ``source``.
            opacity: fill opacity in [0, 1].

        Raises:
            ValueError: a prediction without a mask (classification).
        """
        from inspekt.draw import heat_overlay, overlay_mask

        if self.mask is None:
            raise ValueError(f"{self.source}: a {self.task} prediction has no mask to overlay")
        if image is None:
            from inspekt.io import load_image

            image = load_image(self.source, mode="keep")
        if self.task == "anomaly":
            return heat_overlay(image, self.heatmap, opacity, outline=self.mask)
        return overlay_mask(image, self.mask, opacity=opacity)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from (N, C) logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def decide(probs: np.ndarray, classes: Sequence[str], thresholds: dict[str, float]) -> np.ndarray:
    """Predicted class indices: the most probable class, or for a binary model with a threshold
    ``{positive: t}``, the positive class whenever its probability reaches ``t``. The one rule
    used by prediction, evaluation and the INT8 accuracy check."""
    best = probs.argmax(1)
    for name, threshold in thresholds.items():
        positive = list(classes).index(name)
        best = np.where(probs[:, positive] >= threshold, positive, 1 - positive)
    return best


def _classify(
    card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run, batch_size: int
) -> list[Prediction]:
    """Softmax scores; the label is the most probable class, or for a binary card with a threshold,
    the positive class whenever its probability reaches the threshold."""
    t0 = time.perf_counter()
    batch, _ = preprocess_batch(images, card.input)
    outputs = run(batch)
    probs = softmax(outputs[card.outputs[0]].astype(np.float64))
    embeddings = outputs.get(EMBEDDING, [None] * len(probs))
    results = []
    for source, row, best, embedding in zip(sources, probs, decide(probs, card.classes, card.thresholds), embeddings):
        scores = {name: float(p) for name, p in zip(card.classes, row)}
        best = int(best)
        results.append(
            Prediction(source, "classify", card.classes[best], float(row[best]), scores, embedding=embedding)
        )
    per_image = (time.perf_counter() - t0) * 1000 / max(1, len(images))
    for prediction in results:
        prediction.time_ms = per_image
    return results


def _segment(
    card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run, batch_size: int
) -> list[Prediction]:
    from inspekt.segment import predict_segment

    first = card.outputs[0]
    return predict_segment(card, images, sources, lambda batch: run(batch)[first], batch_size)


def _anomaly(
    card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run, batch_size: int
) -> list[Prediction]:
    from inspekt.anomaly import predict_anomaly

    return predict_anomaly(card, images, sources, run, batch_size)


# Per task: (card, decoded images, sources, run: NCHW batch -> outputs by name, batch size) -> predictions.
TASKS = {"classify": _classify, "segment": _segment, "anomaly": _anomaly}


def _check_graph(bundle: Bundle, session) -> None:
    """model.onnx must take the card's input shape and give one score per class."""
    card, (graph_input,) = bundle.card, session.get_inputs()
    wanted = [card.input.channels, *card.input.size]
    if [d for d in graph_input.shape[1:]] != wanted:
        raise BundleError(
            f"{bundle.path}: card.json declares input {wanted} (channels, height, width) but "
            f"model.onnx takes {graph_input.shape[1:]}; the card was edited or belongs to another model"
        )
    first = session.get_outputs()[0].shape
    scores = {"classify": first[-1], "segment": first[1]}.get(card.task)
    if scores is not None and scores != len(card.classes):
        raise BundleError(
            f"{bundle.path}: card.json lists {len(card.classes)} classes but model.onnx gives "
            f"{scores} scores; the card was edited or belongs to another model"
        )


class OnnxBackend:
    """Runs ``model.onnx`` with ONNX Runtime on the CPU."""

    name = "onnx"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(bundle.read(ONNX), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            detail = " ".join(str(exc).split())[:200]
            raise BundleError(
                f"{bundle.path}: {ONNX} cannot be loaded ({type(exc).__name__}: {detail}); the file is "
                "damaged or not from inspekt: export the bundle again or retrain"
            ) from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        _check_graph(bundle, self.session)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for an NCHW float32 batch."""
        return dict(zip(self.output_names, self.session.run(None, {"input": batch})))


class TorchBackend:
    """Runs the torch network rebuilt from ``weights.safetensors`` (or, with ``of``, a network in memory)."""

    name = "torch"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.network = with_card_outputs(load_network(bundle), bundle.card)
        self.output_names = list(bundle.card.outputs)

    @classmethod
    def of(cls, network, output_names: Sequence[str]) -> TorchBackend:
        """A backend over a network that has no bundle yet (e.g. just fitted, for calibration)."""
        backend = cls.__new__(cls)
        backend.network, backend.output_names = network.eval(), list(output_names)
        return backend

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for an NCHW float32 batch."""
        import torch

        with torch.inference_mode():
            out = self.network(torch.from_numpy(batch))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {name: t.numpy() for name, t in zip(self.output_names, out)}


def _with_threshold(
    card: ModelCard, threshold: float | None, min_area: int | None, pixel_threshold: float | None = None
) -> ModelCard:
    for name, value in (("--threshold", threshold), ("--pixel-threshold", pixel_threshold)):
        if value is not None and not 0 <= value <= 1:
            raise ConfigError(f"{name} {value} must be a probability in [0, 1] (anomaly models: a normalised score)")
    if min_area is not None and (card.task == "classify" or min_area < 0):
        raise ConfigError(
            f"--min-area applies to segmentation and anomaly models and must be >= 0 (got {min_area} "
            f"for a {card.task} model)"
        )
    if pixel_threshold is not None and card.task != "anomaly":
        raise ConfigError(f"--pixel-threshold applies to anomaly models; this is a {card.task} model")
    if card.task in ("segment", "anomaly") and min_area is not None:
        post = card.postprocess or PostProcess(min_area=0, kernel=3)
        card = card.model_copy(update={"postprocess": post.model_copy(update={"min_area": min_area})})
    if card.task == "anomaly":
        changes = {k: v for k, v in (("decision", threshold), ("pixel_decision", pixel_threshold)) if v is not None}
        return card.model_copy(update={"anomaly": card.anomaly.model_copy(update=changes)})
    if card.task == "segment":
        post = card.postprocess or PostProcess()
        changes = {"threshold": threshold} if threshold is not None else {}
        return card.model_copy(update={"postprocess": post.model_copy(update=changes)})
    if threshold is None:
        return card
    if len(card.classes) != 2:
        raise ConfigError(
            f"--threshold applies to binary classifiers, segmentation and anomaly models; this "
            f"{card.task} model has classes {list(card.classes)}"
        )
    return card.model_copy(update={"thresholds": {positive_class(card.classes): float(threshold)}})


class Predictor:
    """Predict with a bundle: ``Predictor.load("model.inspekt").predict(["a.png"])``."""

    def __init__(self, bundle: Bundle, backend: OnnxBackend | TorchBackend, batch_size: int = 16):
        self.bundle = bundle
        self.card = bundle.card
        self.backend = backend
        self.batch_size = batch_size
        if self.card.task not in TASKS:
            raise ConfigError(f"{bundle.path}: this inspekt version cannot predict {self.card.task} bundles yet")

    @classmethod
    def load(
        cls,
        bundle: str | Path | Bundle,
        *,
        backend: str = "onnx",
        threads: int | None = None,
        batch_size: int = 16,
        threshold: float | None = None,
        min_area: int | None = None,
        pixel_threshold: float | None = None,
    ) -> Predictor:
        """Open a bundle and create its backend.

        Args:
            bundle: bundle folder, ``.inspekt`` file, run folder, or an opened ``Bundle``.
            backend: "onnx" (default, ONNX Runtime) or "torch".
            threads: intra-op threads (None: the runtime's default).
            batch_size: images per model call.
            threshold: binary classifiers: the positive-class probability at which it is predicted
                (overrides the card's threshold; default: the card's, else the most probable class).
                Segmentation: the defect probability at which a pixel is a defect. Anomaly: the
                normalised score at which an image is anomalous (the card's calibrated threshold is 0.5).
            min_area: segmentation and anomaly: drop regions smaller than this many pixels (overrides the card).
            pixel_threshold: anomaly: the normalised map value at which a pixel is anomalous (default 0.5).

        Raises:
            BundleError: the bundle cannot be opened.
            ConfigError: unknown backend, or a threshold / minimum area the model cannot use.
        """
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size} must be 1 or more")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}.{did_you_mean(backend, BACKENDS)} Use onnx or torch")
        opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
        runner = (OnnxBackend if backend == "onnx" else TorchBackend)(opened, threads)
        predictor = cls(opened, runner, batch_size)
        if threshold is not None or min_area is not None or pixel_threshold is not None:
            predictor.card = _with_threshold(predictor.card, threshold, min_area, pixel_threshold)
        return predictor

    def with_threshold(
        self, threshold: float | None = None, min_area: int | None = None, pixel_threshold: float | None = None
    ) -> Predictor:
        """A copy that shares the loaded model but decides at another threshold / minimum region area
        (as ``load(threshold=, min_area=, pixel_threshold=)``; None keeps the card's)."""
        other = copy.copy(self)
        other.card = _with_threshold(self.bundle.card, threshold, min_area, pixel_threshold)
        return other

    def predict_arrays(
        self, images: Sequence[np.ndarray], sources: Sequence[str] | None = None, *, enhance: Pipeline | None = None
    ) -> list[Prediction]:
        """Predict decoded images (HxW or HxWx3 uint8), batched; ``enhance`` is applied to each first
        (masks and maps then refer to the enhanced image)."""
        sources = list(sources) if sources is not None else ["<array>"] * len(images)
        if enhance:
            images = [enhance(image) for image in images]
        results: list[Prediction] = []
        run = self.backend.run
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            results.extend(
                TASKS[self.card.task](self.card, chunk, sources[start : start + len(chunk)], run, self.batch_size)
            )
        return results

    def predict(
        self,
        images: Iterable[ImageSource] | ImageSource,
        *,
        report: BatchReport | None = None,
        enhance: Pipeline | None = None,
    ) -> list[Prediction]:
        """Predict paths, bytes or arrays; bad files are skipped and recorded in ``report``.

        Args:
            images: one source or an iterable of sources (paths, bytes, uint8 arrays).
            report: collects skipped files (path + reason); pass one to read it afterwards.
            enhance: an ``inspekt.enhance.Pipeline`` applied after decoding, before the card's preprocessing.

        Returns:
            One Prediction per image that could be read, in input order.
        """
        if isinstance(images, (str, os.PathLike, bytes, np.ndarray)):
            images = [images]
        report = report if report is not None else BatchReport()
        results: list[Prediction] = []
        pending: list[tuple[str, np.ndarray]] = []
        for item in images:
            if isinstance(item, np.ndarray):
                pending.append(("<array>", item))
                continue
            pending.extend(iter_images([item], mode="keep", report=report))
            if len(pending) >= self.batch_size:
                results.extend(self._flush(pending, enhance))
        results.extend(self._flush(pending, enhance))
        return results

    def _flush(self, pending: list[tuple[str, np.ndarray]], enhance: Pipeline | None) -> list[Prediction]:
        sources, arrays = [p[0] for p in pending], [p[1] for p in pending]
        pending.clear()
        return self.predict_arrays(arrays, sources, enhance=enhance) if arrays else []

    def __repr__(self) -> str:
        return f"Predictor({self.bundle!r}, backend={self.backend.name})"
