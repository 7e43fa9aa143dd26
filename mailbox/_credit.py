"""The credit window of a streaming reply, both ends (sans-io).

Rules:

* The producer may be at most ``window`` parts, and ``window_bytes`` bytes of bodies,
  ahead of what the consumer has *taken* (handed out of its iterator), as the consumer
  last reported.
* The consumer reports what it has taken every ``window // 2`` parts or
  ``window_bytes // 2`` bytes, whichever comes first.
* A part that does not fit in what is left of the byte window still goes while less
  than half the byte window is out: else, with the consumer waiting for half a window
  before it reports, neither end would move. So a slow reader holds at most ``window``
  parts and ``window_bytes`` bytes (half of it plus one part when parts are larger than
  what is left).
* A report never moves backwards, nor past what was sent.
* The first part, and one in every quarter window, asks the server to tell the producer
  when nobody receives it any more (the reply subject of the part): a gone consumer
  cannot report, so that is how the producer learns it.
"""

from __future__ import annotations

from collections import deque
from typing import final

__all__ = ("CreditWindow", "TakenReport")


@final
class CreditWindow:
    """The producer's end: what it may send, given what the consumer reported taken.

    Args:
        window: parts the producer may be ahead.
        window_bytes: bytes of bodies the producer may be ahead.
    """

    __slots__ = ("_bytes", "_half_bytes", "_probe_every", "_sizes", "acked", "sent", "window",
                 "window_bytes")  # fmt: skip

    def __init__(self, window: int, window_bytes: int) -> None:
        self.window = window
        self.window_bytes = window_bytes
        self._half_bytes = max(1, window_bytes // 2)  # the consumer reports at least this often
        self._probe_every = max(1, window // 4)
        self._sizes: deque[int] = deque()  # body sizes of the parts not yet taken
        self._bytes = 0
        self.sent = 0
        """Parts sent."""
        self.acked = 0
        """Parts the consumer reported taken."""

    @property
    def outstanding(self) -> int:
        """Parts sent and not yet taken (never above :attr:`window`)."""
        return self.sent - self.acked

    def has_room(self, size: int) -> bool:
        """Whether a part of ``size`` bytes may go now."""
        if self.sent - self.acked >= self.window:
            return False
        return self._bytes + size <= self.window_bytes or self._bytes < self._half_bytes

    def next_part(self) -> tuple[int, bool]:
        """The next part's number, and whether it probes; counted only by :meth:`sent_part`.

        A probing part asks the server to report a gone consumer (see the rules).
        """
        seq = self.sent + 1
        return seq, seq == 1 or seq % self._probe_every == 0

    def sent_part(self, size: int) -> None:
        """Count the next part, of ``size`` bytes, as sent."""
        self.sent += 1
        self._sizes.append(size)
        self._bytes += size

    def report(self, taken: int) -> bool:
        """The consumer took ``taken`` parts; return whether that made room."""
        taken = min(taken, self.sent)
        if taken <= self.acked:
            return False
        sizes = self._sizes
        for _ in range(taken - self.acked):
            self._bytes -= sizes.popleft()
        self.acked = taken
        return True


@final
class TakenReport:
    """The consumer's end: when to report what it has taken.

    Args:
        window: the window the consumer asked for, in parts.
        window_bytes: the same in bytes of bodies.
    """

    __slots__ = ("_every", "_every_bytes", "_reported", "_unreported_bytes", "taken")

    def __init__(self, window: int, window_bytes: int) -> None:
        self._every = max(1, window // 2)
        self._every_bytes = max(1, window_bytes // 2)
        self._reported = 0
        self._unreported_bytes = 0
        self.taken = 0
        """Parts handed out."""

    def take(self, size: int) -> int | None:
        """Count one part of ``size`` bytes as handed out; return the report due, if any."""
        self.taken += 1
        self._unreported_bytes += size
        due = self.taken - self._reported >= self._every
        if due or self._unreported_bytes >= self._every_bytes:
            self._reported = self.taken
            self._unreported_bytes = 0
            return self.taken
        return None
