"""The one Predictor every front door uses: decode -> preprocess from the card -> model -> Prediction.

ONNX Runtime by default (no torch import needed to serve); a torch backend for gradients
(Grad-CAM) and for checking the export. Both backends see the same preprocessed batch.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from inspekt import jsonio
from inspekt.bundle import REFERENCE, SEEN, Bundle, open_bundle
from inspekt.card import sanity_failure
from inspekt.enhance import Pipeline
from inspekt.errors import BundleError, ConfigError, did_you_mean, require_number
from inspekt.io import iter_images
from inspekt.io.arrays import as_image, is_in_memory
from inspekt.models.runtime import OnnxBackend, TorchBackend
from inspekt.profiling.novelty import KEY as NOVELTY
from inspekt.profiling.novelty import Novelty
from inspekt.results import BatchReport, Prediction
from inspekt.tasks import Task, get_task

BACKENDS = ("onnx", "torch")
ImageSource = str | os.PathLike | bytes | np.ndarray


def task_of(bundle: Bundle) -> Task:
    """The registered task of a bundle, after the task's own checks of its card.

    Raises:
        BundleError: an unknown task, or a card the task cannot use.
    """
    try:
        task = get_task(bundle.card.task)
        task.check_card(bundle.card)
    except (ConfigError, ValueError) as exc:
        raise BundleError(f"{bundle.path}: card.json: {exc}") from None
    return task


def _reference(bundle: Bundle) -> dict:
    """The bundle's reference.json, or {} when it has none or it is damaged (what needs it is then left out)."""
    try:
        data = jsonio.loads(bundle.read(REFERENCE)) if bundle.has(REFERENCE) else {}
    except (OSError, ValueError, BundleError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return {}
    return data if isinstance(data, dict) else {}


def seen_by(bundle: Bundle) -> dict[str, frozenset[str]] | None:
    """The ``image_key`` of the images the model trained on (``train``) and was validated on (``val``), or
    None for a bundle that does not record them (written before inspekt kept them, or damaged)."""
    return _seen(_reference(bundle))


def _seen(reference: dict) -> dict[str, frozenset[str]] | None:
    seen = reference.get(SEEN)
    if not isinstance(seen, dict):
        return None
    return {split: frozenset(seen.get(split) or ()) for split in ("train", "val")}


@dataclass(frozen=True)
class TrainingSizes:
    """The range of the training images' areas and aspect ratios (height / width), from the reference's
    profile. An image more than ``SIDE_FACTOR`` times smaller or larger per side than every training image,
    or more than ``ASPECT_FACTOR`` times narrower or wider, is unlike them whatever the model makes of it: a
    1x1 picture or a 6000x4000 one, resized to the input, can still get a confident label."""

    area: tuple[float, float]
    aspect: tuple[float, float]

    SIDE_FACTOR: ClassVar[float] = 4.0
    ASPECT_FACTOR: ClassVar[float] = 2.0

    @classmethod
    def from_reference(cls, reference: dict) -> TrainingSizes | None:
        try:
            properties = reference["properties"]
            area = np.asarray([v for v in properties["area"] if v], dtype=np.float64)
            aspect = np.asarray([v for v in properties["aspect_ratio"] if v], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            return None
        if not len(area) or not len(aspect):
            return None
        return cls((float(area.min()), float(area.max())), (float(aspect.min()), float(aspect.max())))

    def unlike(self, height: int, width: int) -> tuple[float, str] | None:
        """(score, why) when an image of this size is unlike the training images (score above 1), else None."""
        area, aspect = float(height * width), height / max(width, 1)
        side = np.sqrt(max(self.area[0] / area, area / self.area[1])) / self.SIDE_FACTOR
        shape = max(self.aspect[0] / aspect, aspect / self.aspect[1]) / self.ASPECT_FACTOR
        score = max(side, shape)
        if score <= 1:
            return None
        low, high = (round(np.sqrt(a)) for a in self.area)
        trained = f"about {low} px a side" if low == high else f"about {low} to {high} px a side"
        return round(float(score), 3), f"{width}x{height} px; the training images were {trained}"


def _check_thresholds(threshold: object, min_area: object, pixel_threshold: object) -> None:
    """The Python keywords' types (their ranges are the task's to judge): numbers, not strings."""
    for key, value in (("threshold", threshold), ("pixel_threshold", pixel_threshold)):
        if value is not None:
            require_number(key, value, "a number in [0, 1]")
    if min_area is not None:
        require_number("min_area", min_area, "a whole number of pixels >= 0", whole=True)


class Predictor:
    """Predict with a bundle: ``Predictor.load("model.inspekt").predict(["a.png"])``."""

    def __init__(
        self, bundle: Bundle, backend: OnnxBackend | TorchBackend, batch_size: int = 16, task: Task | None = None
    ):
        self.bundle = bundle
        self.card = bundle.card
        self.backend = backend
        self.batch_size = batch_size
        self.task = task or task_of(bundle)

    @functools.cached_property
    def reference(self) -> dict:
        """The bundle's reference.json, read once on first use ({}: none, or damaged)."""
        return _reference(self.bundle)

    @functools.cached_property
    def novelty(self) -> Novelty | None:
        """The training embeddings and threshold of the "unlike the training images" check, or None: no
        reference.json, one written before it held them, a model without embeddings, or damage (the check is
        then left out; predicting goes on)."""
        return Novelty.from_dict(self.reference.get(NOVELTY))

    @functools.cached_property
    def sizes(self) -> TrainingSizes | None:
        """The training images' sizes (None: no record, or a tiled model, which sees windows at the training
        scale whatever the image's size)."""
        if self.card.input.resize == "tile":
            return None
        return TrainingSizes.from_reference(self.reference)

    @functools.cached_property
    def seen(self) -> dict[str, frozenset[str]] | None:
        """The images the model trained on and was validated on (``seen_by``)."""
        return _seen(self.reference)

    def _flag_unlike_training(self, predictions: list[Prediction], shapes: Sequence[tuple[int, ...]]) -> None:
        """Set each prediction's ``ood``: from its embedding (when the bundle can check it), and for any
        model from its image size, far outside the training images' (``TrainingSizes``)."""
        embedded = [p for p in predictions if p.embedding is not None]
        if embedded and self.novelty is not None:
            try:
                found = self.novelty.assess(np.stack([p.embedding for p in embedded]))
            except ValueError:  # a reference made with another network's embeddings
                found = [None] * len(embedded)
            for prediction, ood in zip(embedded, found):
                prediction.ood = ood
        if self.sizes is None or len(shapes) != len(predictions):
            return
        for prediction, shape in zip(predictions, shapes):
            unlike = self.sizes.unlike(shape[0], shape[1])
            if unlike is not None:
                score, why = unlike
                before = prediction.ood or {"score": 0.0}
                prediction.ood = {"score": max(before["score"], score), "unlike_training": True, "why": why}

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
        require_number("batch_size", batch_size, "a whole number >= 1", whole=True)
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size} must be 1 or more")
        if threads is not None:
            require_number("threads", threads, "a whole number >= 1, or None for the default", whole=True)
        _check_thresholds(threshold, min_area, pixel_threshold)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}.{did_you_mean(backend, BACKENDS)} Use onnx or torch")
        opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
        task = task_of(opened)
        runner = OnnxBackend(opened, threads, task.score_axis) if backend == "onnx" else TorchBackend(opened, threads)
        predictor = cls(opened, runner, batch_size, task)
        if threshold is not None or min_area is not None or pixel_threshold is not None:
            predictor.card = task.with_threshold(predictor.card, threshold, min_area, pixel_threshold)
        return predictor

    def caveats(self) -> list[str]:
        """What a user must hear before this model's results, each naming the bundle: it failed the sanity
        check its training ran, or it is an INT8 bundle that the torch backend runs with its fp32 weights."""
        found = []
        failure = sanity_failure(self.card)
        if failure:
            found.append(f"{self.bundle.path} {failure}")
        if self.backend.name == "torch" and self.card.precision == "int8":
            found.append(
                f"{self.bundle.path} is an INT8 bundle: the torch backend runs its fp32 weights, so these results "
                "are the fp32 model's; leave the backend at onnx for the INT8 graph"
            )
        return found

    def with_threshold(
        self, threshold: float | None = None, min_area: int | None = None, pixel_threshold: float | None = None
    ) -> Predictor:
        """A copy that shares the loaded model but decides at another threshold / minimum region area
        (as ``load(threshold=, min_area=, pixel_threshold=)``; None keeps the card's)."""
        _check_thresholds(threshold, min_area, pixel_threshold)
        other = copy.copy(self)
        other.card = self.task.with_threshold(self.bundle.card, threshold, min_area, pixel_threshold)
        return other

    def predict_arrays(
        self, images: Sequence[np.ndarray], sources: Sequence[str] | None = None, *, enhance: Pipeline | None = None
    ) -> list[Prediction]:
        """Predict in-memory images (uint8 arrays, HxW or HxWx3; HxWx1, RGBA and PIL images are converted),
        batched; ``enhance`` is applied to each first (masks and maps then refer to the enhanced image)."""
        images = [as_image(image, f"images[{i}]") for i, image in enumerate(images)]
        sources = list(sources) if sources is not None else [f"<array {i}>" for i in range(len(images))]
        return self._predict_decoded(images, sources, enhance)

    def _predict_decoded(
        self, images: list[np.ndarray], sources: list[str], enhance: Pipeline | None
    ) -> list[Prediction]:
        """``predict_arrays`` on images ``as_image`` (or the decoder) already checked."""
        if enhance:
            images = [enhance(image) for image in images]
        results: list[Prediction] = []
        run = self.backend.run
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            results.extend(
                self.task.predict(self.card, chunk, sources[start : start + len(chunk)], run, self.batch_size)
            )
        self._flag_unlike_training(results, [image.shape for image in images])
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
            images: one source or an iterable of sources: paths, bytes, binary file objects, uint8 arrays
                (HxW, HxWx3; HxWx1 and RGBA are converted) or PIL images. Arrays are named ``<array N>``
                (N: their place in ``images``) in the predictions.
            report: collects skipped files (path + reason); pass one to read it afterwards. Without
                one, skipped files are reported as a ``UserWarning`` (``warnings``).
            enhance: an ``inspekt.enhance.Pipeline`` applied after decoding, before the card's preprocessing.

        Returns:
            One Prediction per image that could be read, in input order.
        """
        if isinstance(images, np.ndarray) and images.dtype.kind in "USO":  # a column of paths (df.path.values)
            images = images.ravel().tolist()
        if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or is_in_memory(images):
            images = [images]
        elif not isinstance(images, Iterable) or hasattr(images, "read"):
            images = [images]  # one file object, or something that is no image at all (said below)
        mine, report = report is None, report if report is not None else BatchReport()
        results: list[Prediction] = []
        pending: list[tuple[str, np.ndarray]] = []
        for index, item in enumerate(images):
            where = f"images[{index}]"
            if is_in_memory(item):
                pending.append((f"<array {index}>", as_image(item, where)))
            elif isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(item, "read"):
                pending.extend(iter_images([item], mode="keep", report=report))
            else:
                raise ConfigError(
                    f"{where}: {type(item).__name__} {str(item)[:40]!r} is not an image; give a path, bytes, a "
                    "binary file object, a uint8 numpy array or a PIL image (or a list of them)"
                )
            if len(pending) >= self.batch_size:
                results.extend(self._flush(pending, enhance))
        results.extend(self._flush(pending, enhance))
        if mine:
            report.warn_unkept()
        return results

    def _flush(self, pending: list[tuple[str, np.ndarray]], enhance: Pipeline | None) -> list[Prediction]:
        sources, arrays = [p[0] for p in pending], [p[1] for p in pending]
        pending.clear()
        return self._predict_decoded(arrays, sources, enhance) if arrays else []

    def __repr__(self) -> str:
        return f"Predictor({self.bundle!r}, backend={self.backend.name})"
