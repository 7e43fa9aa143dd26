"""SIGINT and SIGTERM stop running actor systems gracefully, unless the program handles them.

Rules:

* A system registers while it runs (from the end of its entry to its exit). The first
  registration installs one handler per signal on the event loop, but only for a signal
  whose handler is still the default: ``SIG_DFL`` for SIGTERM, Python's
  ``default_int_handler`` or ``asyncio.run``'s own for SIGINT. A handler the program
  installed itself is never replaced.
* The first signal stops every registered system: each cancels its ``async with`` block,
  which then exits the way it would at its end (handlers drain within the grace,
  ``on_stop`` runs, leftovers are dead-lettered) and without raising. The handlers that
  were there before are put back at once, so the same signal again does what it would
  have done without us (SIGTERM ends the process, SIGINT raises KeyboardInterrupt).
* The last system to exit puts the previous handlers back too.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import threading
from collections.abc import Callable
from typing import Any

from motadata_actors.telemetry._logging import get_logger

__all__ = ("watch_signals",)

log = get_logger("system")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _is_default(sig: int, handler: Any) -> bool:
    if sig == signal.SIGTERM:
        return handler is signal.SIG_DFL
    if handler is signal.default_int_handler:
        return True
    # asyncio.run installs a SIGINT handler of its own that cancels the main task.
    owner = getattr(getattr(handler, "func", None), "__self__", None)
    return isinstance(handler, functools.partial) and isinstance(owner, asyncio.Runner)


class _Watch:
    """The handlers installed on one event loop, and the systems they stop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stoppers: dict[int, Callable[[int], None]] = {}
        self.previous: dict[int, Any] = {}
        for sig in _SIGNALS:
            before = signal.getsignal(sig)
            if not _is_default(sig, before):
                continue
            try:
                loop.add_signal_handler(sig, self.fire, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # no signals here
                continue
            self.previous[sig] = before

    def fire(self, sig: int) -> None:
        name = signal.Signals(sig).name
        log.warning(
            "received %s: stopping gracefully (handlers finish within SDK_SHUTDOWN_GRACE); "
            "send it again to stop at once", name,
        )  # fmt: skip
        stoppers = list(self.stoppers.values())
        self.restore()
        for stop in stoppers:
            stop(sig)

    def restore(self) -> None:
        previous, self.previous = self.previous, {}
        for sig, before in previous.items():
            self.loop.remove_signal_handler(sig)
            signal.signal(sig, before)


_watch: _Watch | None = None


def watch_signals(stop: Callable[[int], None]) -> Callable[[], None]:
    """Call ``stop(signal)`` on the first SIGINT or SIGTERM; return the way to unregister.

    Does nothing (the returned function too) outside the main thread, where Python
    delivers no signals.
    """
    global _watch
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    if _watch is None or _watch.loop is not loop:
        _watch = _Watch(loop)
    watch = _watch
    key = id(stop)
    watch.stoppers[key] = stop

    def unregister() -> None:
        global _watch
        watch.stoppers.pop(key, None)
        if not watch.stoppers:
            watch.restore()
            if _watch is watch:
                _watch = None

    return unregister
