"""One way to hold work to a deadline on the system's clock.

A cancel scope per message costs more than the rest of dispatch, so a deadline here is a
bare timer on the clock that cancels the running task when it fires, and remembers that
it did: the caller's ``except CancelledError`` looks at :attr:`Deadline.expired` to tell
the deadline's cancellation (it then ``uncancel``s the task and handles it) from someone
else's (it re-raises). Used by handler deadlines, streaming handlers (whose consumer may
cancel them first) and asks under a clock other than the event loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import final

from ._clock import Clock, Timer

__all__ = ("Deadline", "Watch", "Watchdog")


@final
class Deadline:
    """Cancel the current task at ``when`` on ``clock`` (a context manager).

    Args:
        clock: the system's clock.
        when: the deadline on that clock; None for none (the block runs unbounded).
        cancel: how to cancel at the deadline, returning whether it did (a streaming
            handler's cancel is shared with its consumer's, which may come first);
            cancelling the current task by default.
    """

    __slots__ = ("_cancel", "_clock", "_task", "_timer", "_when", "expired")

    def __init__(
        self, clock: Clock, when: float | None, cancel: Callable[[], bool] | None = None
    ) -> None:
        self._clock = clock
        self._when = when
        self._cancel = cancel
        self._task: asyncio.Task[object] | None = None
        self._timer: Timer | None = None
        self.expired = False
        """Whether the deadline passed and cancelled the work."""

    def __enter__(self) -> Deadline:
        if self._when is not None:
            self._task = asyncio.current_task()
            self._timer = self._clock.call_at(self._when, self._fire)
        return self

    def _fire(self) -> None:
        if self._cancel is not None:
            self.expired = self._cancel()
        elif self._task is not None:
            self.expired = True
            self._task.cancel()

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


@final
class Watchdog:
    """One timer for the deadlines of an actor's handlings, however many run at once.

    A :class:`Deadline` per handling costs a timer each, and a cancelled timer stays in
    the event loop's heap until its time: at thousands of asks a second with seconds-long
    deadlines the heap holds thousands, and every push compares in Python. One timer does
    for all of an actor's handlings (a keyed kind's keys, the workers of one with
    ``concurrency``): armed at the earliest deadline it must watch; when it fires it cancels
    every running handling whose deadline has passed and re-arms at the earliest of the
    others'. On the per-message path, with no context manager: ``watch =
    watchdog.start(when)``, ``watchdog.stop(watch)`` in a ``finally``, then
    ``watch.expired`` (as :attr:`Deadline.expired`).
    """

    __slots__ = ("_armed_at", "_clock", "_running", "_timer")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._timer: Timer | None = None
        self._armed_at = 0.0
        self._running: set[Watch] = set()

    def start(self, when: float) -> Watch:
        """Watch the current task until ``when``, from now until :meth:`stop`."""
        task = asyncio.current_task()
        assert task is not None
        watch = Watch(task, when)
        self._running.add(watch)
        if self._timer is None or when < self._armed_at:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(when)
        return watch

    def stop(self, watch: Watch) -> None:
        """Stop watching: the handling ended (a deadline passing now cancels nothing)."""
        self._running.discard(watch)

    def _arm(self, when: float) -> None:
        self._armed_at = when
        self._timer = self._clock.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.now()
        earliest: float | None = None
        for watch in self._running:
            when = watch.when
            if watch.expired:
                continue  # cancelled already, and still ending
            if when <= now:
                watch.expired = True
                watch.task.cancel()
            elif earliest is None or when < earliest:
                earliest = when
        if earliest is not None:
            self._arm(earliest)  # else armed again by the next handling with a deadline


@final
class Watch:
    """One handling watched by a :class:`Watchdog`, from ``start`` to ``stop``."""

    __slots__ = ("expired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.expired = False
        """Whether the deadline passed and cancelled the handling."""
