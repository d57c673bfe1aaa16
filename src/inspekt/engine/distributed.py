"""Predicting on a Dask cluster: each worker loads a bundle once (cached by its card digest) and
predicts its chunks of files through the same Predictor as everywhere else."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from inspekt.cluster import chunks_for, for_workers, map_ordered, slots
from inspekt.results import BatchReport


def predict_on(
    client,
    bundle: str,
    files: Sequence[str],
    *,
    options: dict[str, Any] | None = None,
    enhance: str | None = None,
    report: BatchReport | None = None,
    chunk_size: int | None = None,
) -> Iterator[tuple[list, int]]:
    """Predict ``files`` on the cluster; each worker loads the bundle once.

    Args:
        bundle: bundle path or URL every worker can read.
        files: image paths or URLs every worker can read.
        options: ``Predictor.load`` keywords (backend, threads, batch_size, thresholds).
        enhance: an enhancement pipeline spec, as ``Pipeline.parse`` reads it.
        report: collects the files the workers could not read (None: they are named in a warning at the end,
            as ``Predictor.predict`` does).
        chunk_size: files per task (default: about four tasks per worker slot).

    Yields:
        ``(predictions, files in the chunk)`` per chunk, in input order.
    """
    paths = [for_workers(str(f)) for f in files]
    names = {path: str(f) for path, f in zip(paths, files) if path != str(f)}  # back to the names as given
    chunks = (
        [paths[i : i + chunk_size] for i in range(0, len(paths), chunk_size)]
        if chunk_size
        else chunks_for(paths, slots(client))
    )
    key = (for_workers(str(bundle)), card_digest(bundle), tuple(sorted((options or {}).items())), enhance)
    mine, report = report is None, report if report is not None else BatchReport()
    for chunk, (predictions, tally) in zip(chunks, map_ordered(client, _predict_chunk, chunks, key)):
        for prediction in predictions:
            prediction.source = names.get(prediction.source, prediction.source)
        report.loaded += tally.loaded
        report.skipped.extend(replace(s, path=names.get(s.path, s.path)) for s in tally.skipped)
        yield predictions, len(chunk)
    if mine:
        report.warn_unkept()


def card_digest(bundle: Any) -> str:
    """A digest of the bundle's card, which changes whenever the bundle is written again (a new
    ``created_at``, threshold or metrics): part of the workers' cache key, so they never predict with a
    stale copy of a bundle replaced at the same path."""
    from inspekt.bundle import CARD, open_bundle

    return hashlib.sha256(open_bundle(bundle).read(CARD)).hexdigest()


_PREDICTORS: OrderedDict[tuple, Any] = OrderedDict()  # the most recently used last


_PREDICTORS_KEPT = 4  # a long-lived worker keeps this many loaded bundles, not every one it ever saw


_PREDICTORS_LOCK = threading.Lock()


def _predict_chunk(files: list[str], key: tuple) -> tuple[list, BatchReport]:
    """On a worker: predict a chunk with the (cached) predictor that ``key`` names."""
    from inspekt.engine.predictor import Predictor
    from inspekt.enhance import Pipeline

    bundle, _, options, enhance = key
    with _PREDICTORS_LOCK:  # one load per worker process, however many threads it runs
        if key not in _PREDICTORS:
            _PREDICTORS[key] = (Predictor.load(bundle, **dict(options)), Pipeline.parse(enhance) if enhance else None)
            while len(_PREDICTORS) > _PREDICTORS_KEPT:
                _PREDICTORS.popitem(last=False)
        _PREDICTORS.move_to_end(key)
        predictor, pipeline = _PREDICTORS[key]
    report = BatchReport()
    return predictor.predict(files, report=report, enhance=pipeline), report
