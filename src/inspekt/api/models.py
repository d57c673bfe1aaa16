"""The models a service serves: named, loaded and warmed up at start."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspekt.api.batching import MicroBatcher
from inspekt.bundle import model_version
from inspekt.engine.predictor import Predictor
from inspekt.errors import BundleError, ConfigError
from inspekt.profiling.profile import Profile

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def model_name(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` -> (name, path); the name defaults to the bundle's file or folder
    stem (a run's ``bundle`` folder is named after its run).

    Raises:
        ConfigError: the name cannot be used in a URL.
    """
    name, sep, path = spec.partition("=")
    if not sep or not name or "/" in name or "\\" in name:
        path = spec
        stem = Path(path.rstrip("/\\"))
        name = stem.parent.name if stem.name == "bundle" and stem.parent.name else stem.stem
    if not NAME.match(name):
        raise ConfigError(
            f"model name {name!r} (from {spec!r}) cannot be used in a URL; choose one with "
            "NAME=PATH, using letters, digits, '.', '_' and '-'"
        )
    return name, path


@dataclass
class ServedModel:
    """One loaded model: its Predictor, its micro-batcher and (when the bundle has one) its drift reference."""

    name: str
    path: str
    predictor: Predictor
    batcher: MicroBatcher
    reference: Profile | None = None
    reference_note: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    drift_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def close(self) -> None:
        """Stop the batcher's thread."""
        self.batcher.close()


def card_summary(name: str, predictor: Predictor, has_reference: bool) -> dict[str, Any]:
    """What ``GET /v1/models`` says about a model (preprocessing facts come from the card only)."""
    card = predictor.card
    summary = {
        "name": name,
        "version": model_version(predictor.bundle),  # name@ the graph's sha256: which model answers
        "task": card.task,
        "architecture": card.architecture,
        "classes": list(card.classes),
        "input": {"size": list(card.input.size), "channels": card.input.channels, "resize": card.input.resize},
        "precision": card.precision,
        "thresholds": card.thresholds,
        # segment / detect: the probability or box-score threshold and the region clean-up predictions use
        "postprocess": None if card.postprocess is None else card.postprocess.model_dump(mode="json"),
        "metrics": card.metrics,
        "notes": list(card.notes),
        "sanity": None if card.sanity is None else card.sanity.model_dump(mode="json"),  # the training's own check
        "created_at": card.created_at,
        "drift_reference": has_reference,
    }
    if card.anomaly is not None:
        summary["anomaly"] = card.anomaly.model_dump(mode="json")
    return summary


def _reference(path: str) -> tuple[Profile | None, str]:
    from inspekt.drift.sources import bundle_reference

    try:
        return bundle_reference(path), ""
    except BundleError as exc:  # serving still works; the drift endpoint answers 409, the log says why
        logging.getLogger("inspekt.api").warning("drift checks are off for %s: %s", path, exc)
        return None, str(exc)


def warm_up(predictor: Predictor) -> None:
    """One prediction on a blank image of the card's input size, so the first request is not slow."""
    height, width = predictor.card.input.size
    shape = (height, width) if predictor.card.input.channels == 1 else (height, width, 3)
    predictor.predict_arrays([np.full(shape, 128, np.uint8)], ["<warm-up>"])


def load_models(
    specs: list[str], *, threads: int | None, max_batch: int, max_wait_ms: float, on_batch=None
) -> dict[str, ServedModel]:
    """Load, check and warm up every model.

    Args:
        specs: ``PATH`` or ``NAME=PATH`` per model.
        threads: inference threads per model (None: ONNX Runtime's default).
        max_batch: micro-batch size.
        max_wait_ms: micro-batch wait.
        on_batch: ``(model name, images) -> None`` per model call (metrics).

    Raises:
        ConfigError: no models, a duplicate name, or a bad name.
        BundleError: a bundle cannot be loaded.
    """
    if not specs:
        raise ConfigError("give at least one model bundle, e.g. inspekt serve models/surface-classifier.inspekt")
    served: dict[str, ServedModel] = {}
    for spec in specs:
        name, path = model_name(spec)
        if name in served:
            raise ConfigError(
                f"two models are named {name!r} ({served[name].path} and {path}); name them with "
                f"NAME=PATH, e.g. {name}-2={path}"
            )
        predictor = Predictor.load(path, threads=threads, batch_size=max_batch)
        warm_up(predictor)
        reference, note = _reference(path)
        batcher = MicroBatcher(
            name,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            on_batch=on_batch and (lambda n, name=name: on_batch(name, n)),
        )
        served[name] = ServedModel(
            name, path, predictor, batcher, reference, note, card_summary(name, predictor, reference is not None)
        )
    return served
