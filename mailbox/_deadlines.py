"""The deadlines of requests waiting for their replies: one timer for them all.

A timer per request costs the event loop a handle, and a cancelled one stays in its heap
until its time, compared there in Python on every push. Requests' deadlines wait here in a
heap of tuples (compared in C) instead, with one timer armed at the earliest: when it fires,
every request past its deadline and still waiting gets :class:`AskTimeout`, and the timer
is armed again for the next. An answered request's entry stays until its time (nothing is
searched on the way); the heap is rebuilt when such entries outnumber the waiting ones.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Mapping
from typing import Any, final

from motadata_actors._errors import AskTimeout

__all__ = ("Deadlines",)

_SLACK = 1024  # answered requests' entries kept before the heap is rebuilt


@final
class Deadlines:
    """The deadlines of one transport's requests.

    Args:
        waiting: the transport's waiting requests now, by key: each a future its reply
            resolves. A request is taken out of it once answered (or abandoned).
    """

    __slots__ = ("_at", "_heap", "_loop", "_numbers", "_timer", "_waiting")

    def __init__(self, waiting: Callable[[], Mapping[str, asyncio.Future[Any]]]) -> None:
        self._waiting = waiting
        # (when, number, key, subject, timeout); the number breaks ties before the key.
        self._heap: list[tuple[float, int, str, str, float]] = []
        self._numbers = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def watch(
        self, loop: asyncio.AbstractEventLoop, key: str, subject: str, timeout: float
    ) -> None:
        """Fail request ``key`` (on ``subject``) with AskTimeout ``timeout`` seconds from now."""
        when = loop.time() + timeout
        heap = self._heap
        heapq.heappush(heap, (when, next(self._numbers), key, subject, timeout))
        if self._timer is None or when < self._at or self._loop is not loop:
            self._arm(loop, when)  # a new event loop: the old one's timer is gone with it
        elif len(heap) > 2 * len(self._waiting()) + _SLACK:
            waiting = self._waiting()
            heap[:] = [entry for entry in heap if entry[2] in waiting]
            heapq.heapify(heap)

    def clear(self) -> None:
        """Forget every deadline (the transport is closing; its requests fail by it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire)
        self._at = when
        self._loop = loop

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        heap, waiting = self._heap, self._waiting()
        now = loop.time()
        while heap and heap[0][0] <= now:
            _, _, key, subject, timeout = heapq.heappop(heap)
            future = waiting.get(key)
            if future is not None and not future.done():
                future.set_exception(AskTimeout(f"no reply on {subject!r} within {timeout:.3g}s"))
        if heap:
            self._arm(loop, heap[0][0])
