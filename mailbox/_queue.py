"""The mailbox queue: a bounded FIFO shaped like an anyio memory stream.

Per message it runs on ``asyncio.Queue`` (about ten times cheaper than an anyio
memory stream). ``send`` waits while the mailbox is full, so senders feel
backpressure; ``send_nowait`` raises instead. ``close`` lets the receiver drain
what was already queued and then ends iteration.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar, final

import attrs

from motadata_actors._errors import ConfigError, MailboxFull, TransportClosed

__all__ = ("Mailbox", "MailboxFull", "MailboxStatistics")

T = TypeVar("T")

_CLOSED = object()


@final
@attrs.frozen(slots=True)
class MailboxStatistics:
    """A snapshot of a mailbox.

    Attributes:
        queued: messages waiting to be received.
        capacity: the bound.
        received: messages taken out so far.
        dropped: messages lost before reaching the mailbox (slow consumer).
        closed: whether the mailbox was closed.
    """

    queued: int
    capacity: int
    received: int
    dropped: int
    closed: bool


@final
class Mailbox(Generic[T]):
    """A bounded, closeable FIFO of messages for one actor."""

    __slots__ = ("_capacity", "_closed", "_marker", "_queue", "dropped", "received")

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ConfigError(f"mailbox capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._queue: asyncio.Queue[object] = asyncio.Queue(capacity)
        self._closed = False
        self._marker = False
        self.received = 0
        self.dropped = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def full(self) -> bool:
        """Whether :meth:`send` would wait now."""
        return self._queue.full()

    async def send(self, item: T) -> None:
        """Queue ``item``, waiting while the mailbox is full.

        Raises:
            TransportClosed: the mailbox is closed.
        """
        if self._closed:
            raise TransportClosed("mailbox is closed")
        queue = self._queue
        if queue.full():
            await queue.put(item)
        else:  # one coroutine less when there is room (the usual case)
            queue.put_nowait(item)

    def send_nowait(self, item: T) -> None:
        """Queue ``item`` or raise :class:`MailboxFull` at once.

        Raises:
            TransportClosed: the mailbox is closed.
            MailboxFull: the mailbox holds ``capacity`` items.
        """
        if self._closed:
            raise TransportClosed("mailbox is closed")
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            raise MailboxFull(f"mailbox is full ({self._capacity} messages)") from None

    async def receive(self) -> T:
        """Take the next item, waiting for one.

        Raises:
            StopAsyncIteration: the mailbox is closed and empty.
        """
        queue = self._queue
        if queue.empty():
            if self._closed:
                raise StopAsyncIteration
            item = await queue.get()
        else:  # one coroutine less when messages are waiting (the busy case)
            item = queue.get_nowait()
        if item is _CLOSED:
            queue.put_nowait(item)  # every receiver (an actor may have several) sees the end
            raise StopAsyncIteration
        self.received += 1
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Refuse new items; the receiver still gets what is queued, then the end."""
        if self._closed:
            return
        self._closed = True
        # Wake a receiver blocked on an empty queue. When the queue is full the
        # receiver is not blocked, and `receive` sees closed-and-empty by itself.
        if not self._queue.full():
            self._queue.put_nowait(_CLOSED)
            self._marker = True

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox's counters."""
        queued = self._queue.qsize()
        if self._marker:
            queued -= 1
        return MailboxStatistics(queued, self._capacity, self.received, self.dropped, self._closed)

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        return await self.receive()
