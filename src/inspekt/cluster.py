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

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import ConfigError, InspektError
from .io import BatchReport

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
        from distributed import Client, LocalCluster
    except ImportError:
        raise InspektError("scale-out needs Dask: pip install 'inspekt[dist]'") from None
    if isinstance(address, Client):
        yield address
        return
    if not isinstance(address, str) or not address:
        raise ConfigError(f"--dask {address!r}: give 'local' or a scheduler address such as tcp://HOST:8786")
    if address == LOCAL:
        n = workers if workers > 1 else os.cpu_count() or 1
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            yield client
        return
    if "://" not in address:
        raise ConfigError(f"--dask {address!r}: give 'local' or a scheduler address with its protocol, "
                          f"e.g. tcp://{address}")
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise InspektError(f"--dask {address}: cannot reach the Dask scheduler ({exc}); check the address and that "
                           "`dask scheduler` is running there") from None
    with client:
        yield client


def chunks_for(files: Sequence[Any], slots: int) -> list[list[Any]]:
    """Files cut into about four chunks per worker slot (8 to 256 files each): enough to balance
    uneven workers, few enough that scheduling costs nothing."""
    size = max(8, min(256, math.ceil(len(files) / (max(1, slots) * 4))))
    return [list(files[i:i + size]) for i in range(0, len(files), size)]


def map_ordered(client, func: Callable, chunks: Sequence[Any], *args: Any) -> Iterator[Any]:
    """``func(chunk, *args)`` for every chunk on the cluster, yielded in chunk order (each as soon as it
    and every earlier one are done)."""
    futures = client.map(func, chunks, *[[a] * len(chunks) for a in args], pure=False)
    try:
        for future in futures:
            yield future.result()
    finally:
        client.cancel(futures)


def slots(client) -> int:
    """Task slots in the cluster (threads over all workers)."""
    return max(1, sum(client.nthreads().values()))


def profile_on(client, files: Sequence[str], min_side: int, progress: Callable[[int], None] | None = None):
    """The drift profile of ``files``, computed on the cluster: equal to ``profile_images(files)``.

    Returns:
        The merged ``Profile``, files in the given order (minus the skipped ones).
    """
    from .drift.profile import Profile, profile_chunk

    chunks = chunks_for([str(f) for f in files], slots(client))
    parts = []
    for chunk, part in zip(chunks, map_ordered(client, profile_chunk, chunks, min_side)):
        parts.append(part)
        if progress:
            progress(len(chunk))
    return Profile.concat(parts) if parts else Profile.empty(min_side)


def predict_on(client, bundle: str, files: Sequence[str], *, options: dict[str, Any] | None = None,
               enhance: str | None = None, report: BatchReport | None = None,
               chunk_size: int | None = None) -> Iterator[tuple[list, int]]:
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
    files = [str(f) for f in files]
    chunks = ([files[i:i + chunk_size] for i in range(0, len(files), chunk_size)] if chunk_size
              else chunks_for(files, slots(client)))
    key = (str(bundle), tuple(sorted((options or {}).items())), enhance)
    for chunk, (predictions, tally) in zip(chunks, map_ordered(client, _predict_chunk, chunks, key)):
        if report is not None:
            report.loaded += tally.loaded
            report.skipped.extend(tally.skipped)
        yield predictions, len(chunk)


_PREDICTORS: dict[tuple, Any] = {}
_PREDICTORS_LOCK = threading.Lock()


def _predict_chunk(files: list[str], key: tuple) -> tuple[list, BatchReport]:
    """On a worker: predict a chunk with the (cached) predictor that ``key`` names."""
    from .enhance import Pipeline
    from .predictor import Predictor

    bundle, options, enhance = key
    with _PREDICTORS_LOCK:  # one load per worker process, however many threads it runs
        if key not in _PREDICTORS:
            _PREDICTORS[key] = (Predictor.load(bundle, **dict(options)), Pipeline.parse(enhance) if enhance else None)
        predictor, pipeline = _PREDICTORS[key]
    report = BatchReport()
    return predictor.predict(files, report=report, enhance=pipeline), report
