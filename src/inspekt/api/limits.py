"""Server-wide bounds on the work in flight: a budget of decoded pixels shared by every request,
a cap on the enhancement work one request may ask for, and a deadline that ends with the request
(its timeout, or its client leaving).

A request's pixels are read from the image headers before anything is decoded, and charged against
the budget before the request is queued; requests that do not fit wait (in arrival order) until
earlier ones finish, so memory stays bounded however many clients send large images at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from inspekt.api.problems import Problem
from inspekt.deadline import Deadline
from inspekt.enhance import Pipeline

T = TypeVar("T")
POLL_S = 0.25  # how often a waiting request looks for its client having left
HEAVY_PIXELS = 8_000_000  # a request decoding more, or enhancing for longer than HEAVY_SECONDS, is heavy
HEAVY_SECONDS = 0.25


class PixelBudget:
    """Decoded pixels in flight across all requests, at most ``capacity``.

    Large requests wait in arrival order (one is not starved by a stream of others); a small one
    (at most ``capacity / 100``) that fits goes ahead at once, so a queue of large uploads does not
    hold up a 64x64 frame for seconds. Small requests cannot starve a large one for long: each holds
    little, briefly.
    """

    def __init__(self, capacity: int):
        self.capacity, self.used, self.peak = capacity, 0, 0  # peak: the most ever held at once
        self.small = capacity // 100
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    def try_acquire(self, amount: int) -> bool:
        """Take ``amount`` now if it may go ahead without waiting (as ``acquire`` would); False: await
        ``acquire``."""
        if (not self._waiters or amount <= self.small) and self.used + amount <= self.capacity:
            self._take(amount)
            return True
        return False

    async def acquire(self, amount: int) -> None:
        """Wait until ``amount`` fits (``amount`` ≤ ``capacity``: the caller checks)."""
        if self.try_acquire(amount):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, waiter))
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # granted just as the caller gave up
                self.release(amount)
            else:
                self._waiters.remove((amount, waiter))
                self._wake()
            raise

    def release(self, amount: int) -> None:
        self.used -= amount
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.capacity:
            amount, waiter = self._waiters.popleft()
            if not waiter.done():
                self._take(amount)
                waiter.set_result(None)

    def _take(self, amount: int) -> None:
        self.used += amount
        self.peak = max(self.peak, self.used)


def charge(
    pixels: list[int], enhance: Pipeline | None, *, budget: PixelBudget, request_cap: int, max_seconds: float
) -> int:
    """The pixels a request holds while it runs: its images' ``pixels`` (read from their headers; after
    enhancement, at most ``request_cap``, the files past it are skipped) times the working copies its
    enhancement makes, checked against the server's limits.

    Raises:
        Problem: 413 when the request alone exceeds the server-wide budget; 422 when its enhancement
            would take longer than ``max_seconds`` of CPU.
    """
    if enhance:
        seconds = sum(enhance.cost(p) for p in pixels)
        if seconds > max_seconds:
            raise Problem(
                422,
                "enhancement-too-costly",
                f"the enhancement {enhance.describe()} would take about {seconds:.0f} s of CPU on these images, "
                f"more than the server allows per request ({max_seconds:g} s, --max-enhance-seconds); "
                "use fewer or cheaper steps (nl_means is the slowest) or smaller images",
            )
    growth = enhance.growth() if enhance else 1.0
    copies = enhance.footprint() / growth if enhance else 1.0
    amount = int(min(sum(pixels) * growth, request_cap) * copies)
    if amount > budget.capacity:
        raise Problem(
            413,
            "request-too-large",
            f"the request needs {amount:,} pixels in memory at once (its images, times the enhancement's "
            f"working copies), more than the server's budget of {budget.capacity:,} "
            "(--max-inflight-pixels); send fewer or smaller images per request, or a lighter enhancement",
        )
    return amount


def is_heavy(pixels: list[int], enhance: Pipeline | None) -> bool:
    """Whether a request's decoding and enhancement would hold a worker for long (it then runs in the
    heavy lane, so small requests keep their latency)."""
    return sum(pixels) > HEAVY_PIXELS or bool(enhance and sum(enhance.cost(p) for p in pixels) > HEAVY_SECONDS)


class ClientGone(Exception):
    """The client closed the connection; nobody is waiting for an answer."""


async def within(work: Awaitable[T], request: Request, deadline: Deadline) -> T:
    """Await ``work`` until it ends, the request's deadline passes (503) or its client leaves
    (``ClientGone``); in the last two cases ``deadline`` is cancelled, so work running in a thread
    stops at its next check.

    ``work`` is cancelled when given up, unless it is shielded (``asyncio.shield``): shield work that
    must run to its end to release what it holds.
    """
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            left = deadline.left()
            if left is not None and left <= 0:
                deadline.cancel()
                raise Problem(
                    503,
                    "request-timeout",
                    f"the request did not finish within the server's limit of {deadline.seconds:g} s "
                    "(--request-timeout); the server is busy: retry later, or send fewer or smaller images",
                )
            await asyncio.wait({task}, timeout=min(POLL_S, left) if left is not None else POLL_S)
            if not task.done() and await request.is_disconnected():
                deadline.cancel()
                raise ClientGone()
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({task}, timeout=0)
