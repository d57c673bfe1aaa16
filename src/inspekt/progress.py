"""Progress of the library's long steps, shown by whichever front runs them.

The library says what it is doing and never prints::

    with step("caching training images", total=len(files)) as advance:
        for ...:
            advance()
    say("sampler: balanced (imbalance 30:1)")      # an announcement (automatic choices, summaries)
    warn("validation predicts one class only")     # something the user must not miss

The *reporter* of the current context shows it (``reporting(reporter)`` installs one). The CLI's draws
a Rich bar with ETA on a terminal and writes plain lines (``PlainReporter``) elsewhere: logs, CI, the
workbench's job log. Without one (the Python API), steps go to the ``inspekt`` logger once logging is
configured (a handler on it or the root logger), steps and announcements at INFO, warnings at WARNING,
or when its level is set above INFO (muted on purpose). Otherwise they are plain lines on stderr, so
that ``inspekt.train`` in a script or notebook is not silent for minutes.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

EVERY = 3.0  # seconds between two plain progress lines of one step

Advance = Callable[..., None]


class Reporter:
    """Shows steps and messages; this base shows nothing (``--json`` output, tests)."""

    def begin(self, name: str, total: int | None, announce: bool) -> Any:
        """A step starts; returns the handle ``advance`` and ``end`` receive."""

    def advance(self, handle: Any, n: int) -> None:
        """``n`` more units of the step are done."""

    def end(self, handle: Any) -> None:
        """The step finished (or failed)."""

    def say(self, message: str, warning: bool = False) -> None:
        """An announcement, or (``warning``) something the user must not miss."""


@dataclass
class _Step:
    name: str
    total: int | None
    announce: bool
    start: float = field(default_factory=time.monotonic)
    done: int = 0
    last: float = 0.0
    printed: bool = False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PlainReporter(Reporter):
    """Progress as plain lines, for outputs that are not a terminal: a line when a step starts (unless it
    is not ``announce``d, like the batches of one epoch), then at most one every ``every`` seconds
    ("caching training images 120/480 (25%), 40s left"), and one when a long step ends.

    Args:
        write: where lines go (a console, a logger's ``info``).
        warn: where warnings go (default: ``write``, prefixed with "warning: ").
        every: seconds between two progress lines of one step.
    """

    def __init__(self, write: Callable[[str], None], warn: Callable[[str], None] | None = None, every: float = EVERY):
        self.write, self.every = write, every
        self.warn = warn or (lambda message: write(f"warning: {message}"))

    def begin(self, name: str, total: int | None, announce: bool) -> _Step:
        handle = _Step(name, total, announce)
        handle.last = handle.start
        if announce:
            self.write(f"{name} 0/{total} (0%)" if total else f"{name} ...")
        return handle

    def advance(self, handle: _Step, n: int) -> None:
        handle.done += n
        now = time.monotonic()
        if now - handle.last < self.every:
            return
        handle.last, handle.printed = now, True
        if not handle.total:
            self.write(f"{handle.name} {handle.done}")
            return
        share = handle.done / handle.total
        left = (now - handle.start) * (1 - share) / share if share else None
        eta = f", {_duration(left)} left" if left is not None and handle.done < handle.total else ""
        self.write(f"{handle.name} {handle.done}/{handle.total} ({share:.0%}){eta}")

    def end(self, handle: _Step) -> None:
        seconds = time.monotonic() - handle.start
        if handle.announce and seconds >= self.every:
            self.write(f"{handle.name} done in {_duration(seconds)}")

    def say(self, message: str, warning: bool = False) -> None:
        (self.warn if warning else self.write)(message)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_log = logging.getLogger("inspekt")
_LOGGED = PlainReporter(_log.info, _log.warning)
_STDERR = PlainReporter(_stderr)
_CURRENT: ContextVar[Reporter | None] = ContextVar("inspekt_progress", default=None)


def current() -> Reporter:
    """The reporter of this context; when no front installed one, the ``inspekt`` logger if logging is
    configured for it, else plain lines on stderr."""
    installed = _CURRENT.get()
    if installed is not None:
        return installed
    # a handler somewhere up the tree shows INFO as the user configured it; a level above INFO mutes on purpose
    return _LOGGED if _log.hasHandlers() or _log.level > logging.INFO else _STDERR


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Show this context's steps and messages with ``reporter`` (what a front does around its work)."""
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    finally:
        _CURRENT.reset(token)


@contextmanager
def step(name: str, total: int | None = None, *, announce: bool = True) -> Iterator[Advance]:
    """One long step of the library: yields ``advance(n=1)``.

    Args:
        name: what is being done, in a few words ("caching training images").
        total: units of work (images, batches), or None when unknown.
        announce: say that the step starts (False for steps whose result the caller reports anyway,
            such as the batches of one epoch: they show a bar, and plain lines only when slow).
    """
    reporter = current()
    handle = reporter.begin(name, total, announce)
    try:
        yield lambda n=1: reporter.advance(handle, n)
    except BaseException:
        if isinstance(handle, _Step):  # a failed step is not "done": its error follows
            handle.announce = False
        reporter.end(handle)
        raise
    reporter.end(handle)


def say(message: str) -> None:
    """Announce something (an automatic choice, a summary of the data) to the current reporter."""
    current().say(message)


def warn(message: str) -> None:
    """Warn about something the user must not miss (a model that learned nothing)."""
    current().say(message, warning=True)
