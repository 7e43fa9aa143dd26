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

__all__ = ("Deadline",)


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
