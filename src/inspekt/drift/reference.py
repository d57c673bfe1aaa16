"""A bundle's ``reference.json``: its training images' drift profile and the model's predictions on
them, so anything that serves the model can check incoming images without the training data."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from .profile import Profile, profile_images
from .sources import MAX_REFERENCE_IMAGES, REFERENCE, sample_files

MAX_PREDICTED = 300  # training images the model predicts (labels, scores, embeddings) for the reference


def model_outputs(predictor, files: Sequence[str]) -> dict[str, list]:
    """The predictor's label, score and (classifiers) embedding for each file, in the order of
    ``files`` (``"?"`` / None where it could not read one)."""
    from ..io import BatchReport

    by_source = {p.source: p for p in predictor.predict(list(files), report=BatchReport())}
    labels = [by_source[f].label if f in by_source else "?" for f in files]
    scores = [float(by_source[f].score) if f in by_source and by_source[f].score is not None else None
              for f in files]
    out = {"files": list(files), "labels": labels, "scores": scores}
    if any(p.embedding is not None for p in by_source.values()):
        out["embeddings"] = [None if f not in by_source or by_source[f].embedding is None
                             else [float(f"{v:.4g}") for v in by_source[f].embedding] for f in files]
    return out


def write_reference(bundle_dir: str | os.PathLike, files: Sequence[str | os.PathLike], seed: int = 0,
                    workers: int = 1) -> Profile:
    """Profile (a seeded sample of) the training images, predict some with the bundle, and write
    ``reference.json`` into the bundle folder (atomically)."""
    from ..predictor import Predictor

    chosen = sample_files([str(f) for f in files], MAX_REFERENCE_IMAGES, seed)
    profile = profile_images(chosen, workers=workers)
    predicted = sample_files(profile.files, MAX_PREDICTED, seed)
    profile.model = model_outputs(Predictor.load(bundle_dir), predicted)
    target = Path(bundle_dir) / REFERENCE
    tmp = target.with_name(f".{REFERENCE}.tmp")
    tmp.write_text(json.dumps(profile.to_dict()), encoding="utf-8")
    tmp.replace(target)
    return profile

