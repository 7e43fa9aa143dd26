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

__all__ = ("Deadline", "Watchdog")


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
    """One timer for the deadlines of an actor whose handlings never overlap.

    A :class:`Deadline` per handling costs a timer each, and a cancelled timer stays in
    the event loop's heap until its time: at thousands of asks a second with seconds-long
    deadlines the heap holds thousands, and every push compares in Python. Handlings that
    run one after another need one timer: armed at the earliest deadline it must watch;
    when it fires it cancels the running handling if that one's deadline has passed, else
    re-arms at the running one's. Use it as :class:`Deadline` is used: ``with
    watchdog.at(when) as limit: ...``, then ``limit.expired``.
    """

    __slots__ = ("_armed_at", "_clock", "_next", "_task", "_timer", "_when", "expired")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._timer: Timer | None = None
        self._armed_at = 0.0
        self._task: asyncio.Task[object] | None = None
        self._when: float | None = None
        self._next: float | None = None
        self.expired = False
        """Whether the deadline of the current (or last) handling passed and cancelled it."""

    def at(self, when: float | None) -> Watchdog:
        """Watch the next handling until ``when`` (None: unbounded)."""
        self._next = when
        return self

    def __enter__(self) -> Watchdog:
        when = self._when = self._next
        self.expired = False
        if when is not None:
            self._task = asyncio.current_task()
            if self._timer is None or when < self._armed_at:
                if self._timer is not None:
                    self._timer.cancel()
                self._arm(when)
        return self

    def __exit__(self, *exc: object) -> None:
        self._task = None
        self._when = None

    def _arm(self, when: float) -> None:
        self._armed_at = when
        self._timer = self._clock.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        when, task = self._when, self._task
        if when is None or task is None:
            return  # nothing running: armed again by the next handling with a deadline
        if when <= self._clock.now():
            self.expired = True
            task.cancel()
        else:
            self._arm(when)
