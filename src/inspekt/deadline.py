"""A deadline that long work checks between its steps, and that a front door can cancel (the API,
when its client disconnects): Python cannot stop a thread, so the work stops itself at the next
check and frees its memory and its core."""

from __future__ import annotations

import threading
import time

from inspekt.errors import InspektError


class Cancelled(InspektError):
    """The work passed its deadline or its requester went away; the message says which."""


class Deadline:
    """``seconds`` from now (None: never), or until ``cancel()``.

    Args:
        seconds: the time allowed.
        what: how messages name the limit (e.g. "the server's request timeout of 30 s").
    """

    def __init__(self, seconds: float | None, what: str = "the time limit"):
        self._end = None if seconds is None else time.monotonic() + seconds
        self._cancelled, self.what, self.seconds = threading.Event(), what, seconds

    def cancel(self) -> None:
        """Stop the work at its next ``check`` (thread-safe)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def left(self) -> float | None:
        """Seconds left (None: no limit)."""
        return None if self._end is None else max(0.0, self._end - time.monotonic())

    def check(self, doing: str) -> None:
        """Raise ``Cancelled`` when cancelled or past the deadline; ``doing`` names the step reached."""
        if self._cancelled.is_set():
            raise Cancelled(f"stopped while {doing}: the request was cancelled")
        if self._end is not None and time.monotonic() > self._end:
            raise Cancelled(f"stopped while {doing}: {self.what} ({self.seconds:g} s) ran out")
