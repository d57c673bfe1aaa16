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

from inspekt import progress
from inspekt.results import json_safe

STATE = {"debug": False}
console = Console(soft_wrap=True)  # a long line stays one line in a pipe or a log (tables keep their width)
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


class RichReporter(progress.Reporter):
    """The library's steps as Rich bars with ETA on the terminal (one per running step; a finished
    step's bar goes away), its announcements and warnings printed above them."""

    def __init__(self, out: Console):
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        # redirect_stdout off: JSON and CSV rows printed while a bar is live must reach stdout, not the bar's stderr
        self.bars = Progress(*columns, console=out, transient=True, redirect_stdout=False)

    def begin(self, name: str, total: int | None, announce: bool) -> Any:
        if not self.bars.live.is_started:
            self.bars.start()
        return self.bars.add_task(name, total=total)

    def advance(self, handle: Any, n: int) -> None:
        self.bars.advance(handle, n)

    def end(self, handle: Any) -> None:
        self.bars.remove_task(handle)

    def say(self, message: str, warning: bool = False) -> None:
        text = f"[bold yellow]warning:[/] {escape(message)}" if warning else escape(message)
        self.bars.console.print(text, highlight=False)


def _plain_line(text: str) -> None:
    err_console.print(text, highlight=False, markup=False)


def print_warning(text: str) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(text)}", highlight=False)


def warn_of_caveats(predictor: Any) -> None:
    """Say, before its results, what a user must hear about a model (``Predictor.caveats``: it failed the
    sanity check its training ran, an INT8 bundle run by torch); the workbench's picker says the first too."""
    for caveat in predictor.caveats():
        print_warning(caveat)


class _CliPlain(progress.PlainReporter):
    """Plain progress lines on stderr (the CLI's reporter when stderr is not a terminal)."""


@contextmanager
def showing_progress() -> Iterator[progress.Reporter]:
    """Show the library's progress on stderr for the block: Rich bars on a terminal, plain lines
    otherwise (logs, CI, the workbench's job log). JSON and CSV go to stdout, so they never silence
    it. Inside a block that already shows progress, the outer reporter is kept."""
    if isinstance(progress.current(), (RichReporter, _CliPlain)):
        yield progress.current()
        return
    reporter: progress.Reporter
    if err_console.is_terminal:
        reporter = RichReporter(err_console)
    else:
        reporter = _CliPlain(_plain_line, print_warning)
    try:
        with progress.reporting(reporter):
            yield reporter
    finally:
        if isinstance(reporter, RichReporter):
            reporter.bars.stop()


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator:
    """A progress step of the command on stderr (``showing_progress``); yields ``advance(n=1)``."""
    with showing_progress(), progress.step(description, total) as advance:
        yield advance


DASK_HELP = (
    "Run on a Dask cluster: 'local' (a cluster on this machine) or a scheduler address "
    "(tcp://HOST:8786); every worker must be able to read the files (shared disk or s3://)."
)


def maybe_cluster(address: str | None, workers: int = 0):
    """A context giving the Dask client for ``--dask ADDRESS`` (``inspekt.cluster.connect``), or None."""
    if not address:
        return nullcontext(None)
    from inspekt.cluster import connect

    return connect(address, workers)
