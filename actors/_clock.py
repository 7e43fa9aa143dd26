"""Clocks: the time source supervision and policies read, injectable so tests need not sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol, final

import anyio

__all__ = ("Clock", "ManualClock", "SystemClock")


class Clock(Protocol):
    """A monotonic time source that can also wait."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...


@final
class SystemClock:
    """The event loop's monotonic clock."""

    def now(self) -> float:
        """The running event loop's time (the scale handler deadlines use)."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        await anyio.sleep(max(0.0, seconds))


@final
class ManualClock:
    """A clock that moves only when told: :meth:`advance` wakes the sleepers that are due.

    Args:
        start: the initial time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        """The current manual time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until :meth:`advance` moves the time ``seconds`` on."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._ids), event))
        await event.wait()

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock."""
        return len(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` and wake every sleeper now due."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()
