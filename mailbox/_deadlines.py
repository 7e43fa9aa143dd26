"""The deadlines of requests waiting for their replies: one timer for them all.

A timer per request costs the event loop a handle, and a cancelled one stays in its heap
until its time, compared there in Python on every push. Requests' deadlines wait here in a
heap of tuples (compared in C) instead, with one timer armed at the earliest: when it fires,
every request past its deadline and still waiting gets :class:`AskTimeout`, and the timer
is armed again for the next. Each entry holds its request's future itself, not a key to look
it up by: a client that replaces its map of waiting requests (nats-py does when it makes
its reply inbox anew) cannot orphan one. An answered request's entry stays until its time
(nothing is searched on the way); the heap is rebuilt without them when it has doubled.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any, final

from motadata_actors._errors import AskTimeout

__all__ = ("Deadlines",)

_SLACK = 1024  # answered requests' entries kept before the heap is rebuilt


@final
class Deadlines:
    """The deadlines of one transport's requests."""

    __slots__ = ("_at", "_heap", "_limit", "_loop", "_numbers", "_timer")

    def __init__(self) -> None:
        # (when, number, future, subject, timeout); the unique number keeps the future
        # out of every comparison.
        self._heap: list[tuple[float, int, asyncio.Future[Any], str, float]] = []
        self._numbers = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limit = _SLACK  # the heap's length that has it rebuilt

    def __len__(self) -> int:
        return len(self._heap)

    def watch(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        subject: str,
        timeout: float,
    ) -> None:
        """Fail ``future`` (a request on ``subject``) with AskTimeout in ``timeout`` seconds.

        Unless it is done by then (answered, or abandoned by its asker).
        """
        when = loop.time() + timeout
        heap = self._heap
        heapq.heappush(heap, (when, next(self._numbers), future, subject, timeout))
        if self._timer is None or when < self._at or self._loop is not loop:
            self._arm(loop, when)  # a new event loop: the old one's timer is gone with it
        elif len(heap) > self._limit:
            heap[:] = [entry for entry in heap if not entry[2].done()]
            heapq.heapify(heap)
            self._limit = 2 * len(heap) + _SLACK

    def clear(self, error: BaseException | None = None) -> None:
        """Forget every deadline: the transport is closing.

        ``error``: what the requests still waiting fail with (None: the transport fails
        them itself).
        """
        if error is not None:
            for entry in self._heap:
                if not entry[2].done():
                    entry[2].set_exception(error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._limit = _SLACK

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
        heap = self._heap
        now = loop.time()
        while heap and heap[0][0] <= now:
            _, _, future, subject, timeout = heapq.heappop(heap)
            if not future.done():
                future.set_exception(AskTimeout(f"no reply on {subject!r} within {timeout:.3g}s"))
        if heap:
            self._arm(loop, heap[0][0])
