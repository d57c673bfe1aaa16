"""Shared CLI helpers: consoles, the debug flag, JSON output and progress bars."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column

from inspekt.results import json_safe

STATE = {"debug": False}
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one line per message, whatever the width


def file_columns() -> tuple[Column, Column]:
    """A table's "file" column (the name, never cut or wrapped) and "folder" column (folded when long);
    fill them with ``file_cells``."""
    return Column("file", no_wrap=True, overflow="ignore"), Column("folder", overflow="fold")


def file_cells(source: str) -> tuple[str, str]:
    """The name and folder of ``source`` for ``file_columns`` (a URL keeps its scheme in the folder)."""
    head, _, name = source.rpartition("/")
    return escape(name or source), escape(head or ".")


def unique_name(source: str, suffix: str, taken: set[str]) -> str:
    """``<stem>_<suffix>.png`` for an output file, numbered (``a_gradcam_2.png``) when an earlier
    source with the same stem already took the name; ``taken`` collects the names given."""
    stem, n = f"{Path(source).stem}_{suffix}", 1
    name = f"{stem}.png"
    while name in taken:
        n += 1
        name = f"{stem}_{n}.png"
    taken.add(name)
    return name


def print_json(payload: Any) -> None:
    """Print one JSON document to stdout (plain, machine-readable, strict: ``results.json_safe``)."""
    print(json.dumps(json_safe(payload), default=str, allow_nan=False))


@contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool = True) -> Iterator:
    """A Rich progress bar on stderr; yields ``advance(n=1)``. Disabled for JSON output."""
    if not enabled:
        yield lambda n=1: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


DASK_HELP = (
    "Run on a Dask cluster: 'local' (a cluster on this machine) or a scheduler address "
    "(tcp://HOST:8786); every worker must be able to read the files (shared disk or s3://)."
)


def maybe_cluster(address: str | None, workers: int = 1):
    """A context giving the Dask client for ``--dask ADDRESS`` (``inspekt.cluster.connect``), or None."""
    if not address:
        return nullcontext(None)
    from inspekt.cluster import connect

    return connect(address, workers)
