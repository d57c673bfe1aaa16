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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from inspekt.errors import ConfigError, InspektError, did_you_mean
from inspekt.progress import step

LOCAL = "local"
CONNECT_TIMEOUT_S = 20


@contextmanager
def connect(address: Any, workers: int = 0) -> Iterator[Any]:
    """A Dask client for ``address``, closed afterwards (a Client passed in is used and left open).

    Args:
        address: "local" (a LocalCluster on this machine), a scheduler address such as
            "tcp://10.0.0.5:8786", or a ``distributed.Client``.
        workers: worker processes of a local cluster (0: one per CPU core).

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
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"--workers {workers!r}: give a number of worker processes, or 0 for one per CPU core")
    if address.strip().lower() == LOCAL:
        n = workers or os.cpu_count() or 1
        with step(f"starting a local Dask cluster ({n} worker{'s' if n > 1 else ''})"):
            cluster = _local_cluster(workers)
        with cluster, Client(cluster) as client:
            yield client
        return
    if "://" not in address:
        hint = did_you_mean(address.strip().lower(), [LOCAL])
        raise ConfigError(
            f"--dask {address!r}: give 'local' or a scheduler address with its protocol, e.g. tcp://{address}.{hint}"
        )
    try:
        with step(f"connecting to the Dask scheduler at {address} (up to {CONNECT_TIMEOUT_S} s)"):
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
    """A LocalCluster of ``workers`` processes (one per CPU core when ``workers`` is 0), one thread each."""
    from distributed import LocalCluster

    try:
        # silence_logs CRITICAL: a task's error comes back to the client as one message (map_ordered), not
        # also as a worker's traceback on the terminal
        with _workers_ignore_ctrl_c():
            return LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
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


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start the worker processes with SIGINT ignored (a child keeps an ignored signal, and Python then
    installs no KeyboardInterrupt handler): Ctrl-C on the terminal reaches the whole process group, and
    each worker printed its traceback. The command itself still stops, and closing the cluster ends them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
