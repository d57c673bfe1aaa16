"""Scale-out on a Dask distributed cluster: drift profiling and prediction, partitioned by files.

    with connect("local") as client:                  # or "tcp://scheduler:8786", or a Client
        profile = profile_on(client, files)           # the same Profile as profile_images(files)

Workers receive file names and bundle paths, never pixels: each worker reads the images itself, so
the names must mean the same on every worker — a shared file system or URLs (``s3://...``, read with
the worker's own credentials). Results come back in input order, so a cluster run equals the
single-process run. Dask is optional (``pip install 'inspekt[dist]'``); nothing here imports it
until a cluster is asked for.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from inspekt.errors import ConfigError, InspektError
from inspekt.io import BatchReport

LOCAL = "local"
CONNECT_TIMEOUT_S = 20


@contextmanager
def connect(address: Any, workers: int = 1) -> Iterator[Any]:
    """A Dask client for ``address``, closed afterwards (a Client passed in is used and left open).

    Args:
        address: "local" (a LocalCluster on this machine), a scheduler address such as
            "tcp://10.0.0.5:8786", or a ``distributed.Client``.
        workers: worker processes of a local cluster when more than 1 (else one per CPU core).

    Raises:
        InspektError: Dask is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client
    except ImportError:
        raise InspektError("scale-out needs Dask: pip install 'inspekt[dist]'") from None
    if isinstance(address, Client):
        yield address
        return
    if not isinstance(address, str) or not address:
        raise ConfigError(f"--dask {address!r}: give 'local' or a scheduler address such as tcp://HOST:8786")
    if address.strip().lower() == LOCAL:
        with _local_cluster(workers) as cluster, Client(cluster) as client:
            yield client
        return
    if "://" not in address:
        raise ConfigError(
            f"--dask {address!r}: give 'local' or a scheduler address with its protocol, e.g. tcp://{address}"
        )
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise InspektError(
            f"--dask {address}: cannot reach the Dask scheduler ({exc}); check the address and that "
            "`dask scheduler` is running there"
        ) from None
    with client:
        _wait_for_a_worker(client, address)
        yield client


def _wait_for_a_worker(client, address: str) -> None:
    # A scheduler without workers accepts tasks and never runs them: the command would hang without a word.
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise InspektError(
            f"--dask {address}: the scheduler has no workers (none joined within {CONNECT_TIMEOUT_S} "
            f"s); start them with `dask worker {address}`"
        ) from None


def _local_cluster(workers: int):
    """A LocalCluster of ``workers`` processes (one per CPU core when ``workers`` is 1), one thread each."""
    from distributed import LocalCluster

    try:
        # silence_logs CRITICAL: a task's error comes back to the client as one message (map_ordered), not
        # also as a worker's traceback on the terminal
        return LocalCluster(
            n_workers=workers if workers > 1 else os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=50,
        )
    except RuntimeError as exc:  # the usual cause: a script whose top level runs again in each worker
        raise InspektError(
            f"--dask local: the worker processes failed to start ({exc}); in a Python script, "
            'call inspekt under `if __name__ == "__main__":`, because each worker process '
            "imports the script again"
        ) from None


def chunks_for(files: Sequence[Any], slots: int) -> list[list[Any]]:
    """Files cut into about four chunks per worker slot (8 to 256 files each): enough to balance
    uneven workers, few enough that scheduling costs nothing."""
    size = max(8, min(256, math.ceil(len(files) / (max(1, slots) * 4))))
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


def map_ordered(client, func: Callable, chunks: Sequence[Any], *args: Any) -> Iterator[Any]:
    """``func(chunk, *args)`` for every chunk on the cluster, yielded in chunk order (each as soon as it
    and every earlier one are done)."""
    futures = client.map(func, chunks, *[[a] * len(chunks) for a in args], pure=False)
    try:
        for future in futures:
            try:
                result = future.result()
            except InspektError as exc:  # the client could read it, so say where it failed, and the usual cause
                raise type(exc)(
                    f"on a Dask worker: {exc} (every worker must be able to read the bundle and the "
                    "images: a shared disk mounted at the same path, or s3:// URLs)"
                ) from None
            yield result
    finally:
        client.cancel(futures)


def for_workers(name: str) -> str:
    """``name`` as a worker opens it: a local path made absolute (a worker's working folder is not the
    client's), a URL unchanged."""
    from inspekt.storage import is_url

    return name if is_url(name) else os.path.abspath(name)


def slots(client) -> int:
    """Task slots in the cluster (threads over all workers)."""
    return max(1, sum(client.nthreads().values()))


def profile_on(client, files: Sequence[str], min_side: int, progress: Callable[[int], None] | None = None):
    """The drift profile of ``files``, computed on the cluster: equal to ``profile_images(files)``.

    Returns:
        The merged ``Profile``, files in the given order (minus the skipped ones).
    """
    from inspekt.drift.profile import Profile, profile_chunk

    # (name, path) pairs where the worker must open another spelling: the profile keeps the names as given
    items = [name if for_workers(name) == name else (name, for_workers(name)) for name in map(str, files)]
    chunks = chunks_for(items, slots(client))
    parts = []
    for chunk, part in zip(chunks, map_ordered(client, profile_chunk, chunks, min_side)):
        parts.append(part)
        if progress:
            progress(len(chunk))
    return Profile.concat(parts) if parts else Profile.empty(min_side)


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
        report: collects the files the workers could not read.
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
    for chunk, (predictions, tally) in zip(chunks, map_ordered(client, _predict_chunk, chunks, key)):
        for prediction in predictions:
            prediction.source = names.get(prediction.source, prediction.source)
        if report is not None:
            report.loaded += tally.loaded
            report.skipped.extend(replace(s, path=names.get(s.path, s.path)) for s in tally.skipped)
        yield predictions, len(chunk)


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
    from inspekt.enhance import Pipeline
    from inspekt.predictor import Predictor

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
