"""Clocks: the one time source for supervision, policies, asks and handler deadlines.

Injectable, so tests move time by hand instead of sleeping: under a :class:`ManualClock`
ask retries, restart backoff and a handler's deadline are all virtual.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol, final

import anyio

__all__ = ("Clock", "ManualClock", "SystemClock", "Timer")


class Timer(Protocol):
    """A callback scheduled on a clock."""

    def cancel(self) -> None:
        """Do not call it (a no-op once it ran)."""
        ...


class Clock(Protocol):
    """A monotonic time source that can wait and call back."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback()`` at ``when`` on this clock's scale (from the event loop)."""
        ...


@final
class SystemClock:
    """The event loop's monotonic clock."""

    def now(self) -> float:
        """The running event loop's time."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        await anyio.sleep(max(0.0, seconds))

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """A timer on the event loop: the cheapest a deadline can be."""
        return asyncio.get_running_loop().call_at(when, callback)


@final
class _ManualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@final
class ManualClock:
    """A clock that moves only when told: :meth:`advance` runs what is due, in time order.

    Args:
        start: the initial time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._due: list[tuple[float, int, _ManualTimer]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        """The current manual time."""
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback()`` once :meth:`advance` reaches ``when`` (soon, if it has)."""
        timer = _ManualTimer(callback)
        if when <= self._now:
            asyncio.get_running_loop().call_soon(self._run, timer)
        else:
            heapq.heappush(self._due, (when, next(self._ids), timer))
        return timer

    @staticmethod
    def _run(timer: _ManualTimer) -> None:
        if not timer.cancelled:
            timer.callback()

    async def sleep(self, seconds: float) -> None:
        """Wait until :meth:`advance` moves the time ``seconds`` on."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self.call_at(self._now + seconds, event.set)
        await event.wait()

    @property
    def sleepers(self) -> int:
        """How many sleeps and timers wait on this clock."""
        return sum(1 for _, _, timer in self._due if not timer.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` and run every timer now due."""
        self._now += seconds
        due = self._due
        while due and due[0][0] <= self._now:
            timer = heapq.heappop(due)[2]
            if not timer.cancelled:
                timer.callback()
