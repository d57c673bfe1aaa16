"""Image drift: profiles of image sets, calibrated checks between them, reports.

    result = inspekt.check_drift("train_images/", "incoming/")      # or a bundle / saved profile as reference
    result.drift, [c.name for c in result.drifted]

``profile.py`` (what is measured), ``stats.py`` (permutation tests), ``domain.py`` (the classifier
check), ``engine.py`` (``DriftResult``), ``report.py`` (console, JSON, HTML).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from inspekt import storage
from inspekt.drift.engine import compare_profiles
from inspekt.drift.sources import Source, is_bundle, load_profile
from inspekt.drift.types import CHECKS, Check, DriftConfig, DriftResult
from inspekt.errors import ConfigError
from inspekt.profiling.profile import Profile, profile_images

__all__ = [
    "CHECKS",
    "Check",
    "DriftConfig",
    "DriftResult",
    "Profile",
    "check_drift",
    "compare_profiles",
    "load_profile",
    "profile_images",
]


def check_drift(
    reference: Source,
    current: Source,
    *,
    workers: int | None = None,
    sample: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[str, int], None] | None = None,
    dask: Any = None,
    **settings: Any,
) -> DriftResult:
    """Check whether ``current`` images differ from ``reference`` ones.

    Args:
        reference: folder, dataset, CSV, list of paths, saved profile, ``Profile`` or model bundle
            (its ``reference.json``; then the model also predicts the current images, for
            prediction and embedding drift).
        current: the same kinds, except a bundle.
        workers: processes for profiling (None: 1; 0: auto, see ``profile_images``); with ``dask="local"``: the
            local cluster's workers (None or 0: one per CPU core).
        sample: profile a seeded random sample of this many images per side.
        progress: called with the number of images finished, as profiling goes.
        on_start: called with ("reference" | "current", number of images) before each side is profiled.
        dask: profile and predict on a Dask cluster: "local", a scheduler address ("tcp://host:8786")
            or a ``distributed.Client`` (see ``inspekt.cluster``); the result equals the local run's.
        **settings: ``DriftConfig`` fields (alpha, permutations, checks, min_effect, kl_threshold ...).

    Returns:
        The ``DriftResult``; ``result.reference_profile`` / ``current_profile`` hold the profiles.
    """
    config = DriftConfig(**settings)
    if sample is not None and sample < 2:
        raise ConfigError(f"sample must be at least 2 images per side, not {sample}")
    if dask is None:
        alone = 1 if workers is None else workers
        return _check(
            reference, current, config, None, workers=alone, sample=sample, progress=progress, on_start=on_start
        )
    from inspekt.cluster import connect

    with connect(dask, workers or 0) as client:
        return _check(
            reference, current, config, client, workers=1, sample=sample, progress=progress, on_start=on_start
        )


def _check(
    reference: Source,
    current: Source,
    config: DriftConfig,
    client,
    *,
    workers: int,
    sample: int | None,
    progress,
    on_start,
) -> DriftResult:
    notes: list[str] = []
    common = {"workers": workers, "sample": sample, "seed": config.seed, "progress": progress, "client": client}
    ref = load_profile(reference, on_start=on_start and (lambda n: on_start("reference", n)), **common)
    cur = load_profile(
        current, min_side=ref.min_side, on_start=on_start and (lambda n: on_start("current", n)), **common
    )
    wants_model = {"predictions", "embeddings"} & set(config.checks)
    if (
        ref.model
        and not cur.model
        and wants_model
        and isinstance(reference, (str, os.PathLike))
        and is_bundle(storage.as_path(reference))
    ):
        from inspekt.profiling.profile import sample_files

        predicted = sample_files(cur.files, len(ref.model["files"]), config.seed)
        cur.model = _model_outputs(reference, predicted, client)
        if cur.model is None:
            notes.append("the model could not read any current image, so prediction and embedding checks were skipped")
    result = compare_profiles(ref, cur, config)
    result.notes += notes
    result.reference_profile, result.current_profile = ref, cur
    result.sources = {"reference": _described(reference), "current": _described(current)}
    return result


def _described(source: Source) -> str:
    """How a report names a side: its path (a bundle's with its graph's hash), or what was given."""
    if isinstance(source, Profile):
        return f"a profile of {len(source)} images"
    if not isinstance(source, (str, os.PathLike, storage.RemotePath)):
        return "a list of image files"
    path = storage.as_path(source)
    if is_bundle(path):
        from inspekt.bundle import model_version, open_bundle

        return f"{path} (model {model_version(open_bundle(path))})"
    return str(path)


def _model_outputs(bundle: str | os.PathLike, files: list[str], client) -> dict | None:
    """The bundle's predictions on ``files`` (on the cluster when there is one), as drift inputs."""
    from inspekt.engine.reference import model_outputs, outputs_of

    if client is None:
        from inspekt.engine.predictor import Predictor

        return model_outputs(Predictor.load(bundle), files)
    from inspekt.engine.distributed import predict_on

    return outputs_of([p for chunk, _ in predict_on(client, str(bundle), files) for p in chunk])
