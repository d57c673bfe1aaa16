"""A bundle's ``reference.json``: its training images' drift profile and the model's predictions on
its held-out (validation) images, so anything that serves the model can check incoming images
without the training data.

The predictions come from images the model was not fitted to: on its own training images a model
is more confident than on any new image from the same source, so comparing new images' predictions
with those would report drift where there is none (measured: a PatchCore model's mean score on 320
unseen images of its training folder, 0.083, against 0.050 on its training images; "Drift
detected", adjusted p 0.003)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from inspekt import storage
from inspekt.bundle import REFERENCE, SEEN
from inspekt.data.dataset import image_keys
from inspekt.profiling.novelty import KEY as NOVELTY
from inspekt.profiling.novelty import Novelty
from inspekt.profiling.profile import MAX_REFERENCE_IMAGES, Profile, profile_images, sample_files
from inspekt.progress import step
from inspekt.results import BatchReport

MAX_PREDICTED = 300  # held-out images the model predicts (labels, scores, embeddings) for the reference


def model_outputs(
    predictor, files: Sequence[str], progress: Callable[[int], None] | None = None
) -> dict[str, list] | None:
    """The predictor's label, score and (classifiers) embedding for each file it could read, or
    None when it could read none (e.g. a saved profile whose images are elsewhere); ``progress`` is
    called with the number of files done after each batch."""
    files, predictions, report = list(files), [], BatchReport()
    for start in range(0, len(files), predictor.batch_size):
        chunk = files[start : start + predictor.batch_size]
        predictions.extend(predictor.predict(chunk, report=report))
        if progress:
            progress(len(chunk))
    return outputs_of(predictions)


def outputs_of(predictions: Sequence) -> dict[str, list] | None:
    """Label, score, (detectors) box count and median box side, and (classifiers) embedding of each
    prediction; None when there are none."""
    if not predictions:
        return None
    out: dict[str, list] = {
        "files": [p.source for p in predictions],
        "labels": [p.label for p in predictions],
        "scores": [None if p.score is None else float(p.score) for p in predictions],
    }
    numbers = [output_numbers(p) for p in predictions]
    for key in numbers[0]:
        out[key] = [n.get(key) for n in numbers]
    if all(p.embedding is not None for p in predictions):
        out["embeddings"] = [[float(f"{v:.4g}") for v in p.embedding] for p in predictions]
    return out


def output_numbers(prediction) -> dict[str, float | None]:
    """The numbers the drift checks test per prediction beyond label and score: for a detector the boxes
    found (``box_counts``) and their median side (``box_sizes``, sqrt of area in pixels, None without
    boxes); empty for other tasks. The monitor keeps them per image."""
    if prediction.boxes is None:
        return {}
    return {"box_counts": len(prediction.boxes), "box_sizes": _median_side(prediction.boxes)}


def _median_side(boxes: Sequence[dict]) -> float | None:
    """The median of sqrt(area) over an image's boxes, in pixels; None without boxes."""
    if not boxes:
        return None
    return float(f"{np.median([np.sqrt(box['area_px']) for box in boxes]):.4g}")


def novelty_reference(predictor, train_files: Sequence[str], held_out: dict[str, list] | None) -> Novelty | None:
    """The embeddings of (a sample of) the training images, calibrated on the held-out images'
    embeddings (``inspekt.profiling.novelty``); None for models without embeddings."""
    if not held_out or not held_out.get("embeddings") or not train_files:
        return None
    train = model_outputs(predictor, train_files)
    if not train or not train.get("embeddings"):
        return None
    return Novelty.fit(train["embeddings"], held_out["embeddings"])


def _recorded(files: Sequence[str | os.PathLike]) -> list[str] | None:
    """What the bundle keeps of ``files``: their sorted distinct ``image_keys`` (None: some cannot be keyed)."""
    keys = image_keys([storage.as_path(f) for f in files])
    return None if keys is None else sorted(set(keys))


def write_reference(
    bundle_dir: str | os.PathLike,
    files: Sequence[str | os.PathLike],
    held_out: Sequence[str | os.PathLike],
    seed: int = 0,
    workers: int = 1,
    also_seen: Sequence[str | os.PathLike] = (),
) -> Profile:
    """Profile (a seeded sample of) the training images ``files``, predict (a sample of) the held-out
    images with the bundle, and write ``reference.json`` into the bundle folder (atomically). Under ``SEEN`` it
    keeps the ``image_key`` of every training image ("train") and of every held-out or ``also_seen`` image
    (images that calibrated it; "val"), so evaluation and label checks know which images the model saw, however
    they are listed. With no
    readable held-out image the reference has no predictions (the prediction and embedding checks
    are then skipped, rather than run against a biased baseline)."""
    from inspekt.engine.predictor import Predictor

    chosen = sample_files([str(f) for f in files], MAX_REFERENCE_IMAGES, seed)
    with step("drift reference: profiling training images", len(chosen)) as advance:
        profile = profile_images(chosen, workers=workers, progress=advance)
    predicted = sample_files([str(f) for f in held_out], MAX_PREDICTED, seed)
    predictor = Predictor.load(bundle_dir)
    with step("drift reference: predicting held-out images", len(predicted)) as advance:
        profile.model = model_outputs(predictor, predicted, advance) if predicted else None
    with step("drift reference: novelty baseline"):
        novelty = novelty_reference(predictor, sample_files(chosen, MAX_PREDICTED, seed), profile.model)
    with step("recording which images trained the model"):
        keys = {"train": _recorded(files), "val": _recorded([*held_out, *also_seen])}
    seen = {SEEN: keys} if None not in keys.values() else {}
    target = Path(bundle_dir) / REFERENCE
    tmp = target.with_name(f".{REFERENCE}.tmp")
    written = profile.to_dict() | ({NOVELTY: novelty.to_dict()} if novelty else {}) | seen
    tmp.write_text(json.dumps(written), encoding="utf-8")
    tmp.replace(target)
    return profile
