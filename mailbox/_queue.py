"""The mailbox queue: a bounded FIFO shaped like an anyio memory stream.

A deque and the futures of those waiting on it, no more: ``asyncio.Queue`` costs a dozen
calls per message for bookkeeping a mailbox never uses (``join``, ``task_done``), and an
anyio memory stream about ten times that. ``send`` waits while the mailbox is full, so
senders feel backpressure; ``send_nowait`` raises instead. ``close`` lets the receiver
drain what was already queued and then ends iteration.

nats-py's read loop puts messages straight in (the ``Subscription._pending_queue`` hook,
``_natspy.subscribe_into``): for it a mailbox has ``put_nowait`` raising
``asyncio.QueueFull``, ``qsize`` and ``empty``, the part of ``asyncio.Queue`` it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar, final

import attrs

from motadata_actors._errors import ConfigError, MailboxFull, TransportClosed

__all__ = ("Mailbox", "MailboxFull", "MailboxStatistics")

T = TypeVar("T")


def _wake(waiters: deque[asyncio.Future[None]]) -> None:
    """Wake the first of ``waiters`` still waiting."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


async def _wait(waiters: deque[asyncio.Future[None]]) -> None:
    """Wait in line in ``waiters`` until woken.

    Cancelled after being woken, it passes the wake-up on to the next in line, so no
    item (or room) is left with nobody told of it.
    """
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled():
            _wake(waiters)
        else:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
        raise


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

    __slots__ = ("_capacity", "_closed", "_getters", "_items", "_putters", "dropped", "received")

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ConfigError(f"mailbox capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()  # receivers waiting for items
        self._putters: deque[asyncio.Future[None]] = deque()  # senders waiting for room
        self._closed = False
        self.received = 0
        self.dropped = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def full(self) -> bool:
        """Whether :meth:`send` would wait now."""
        return len(self._items) >= self._capacity

    async def send(self, item: T) -> None:
        """Queue ``item``, waiting while the mailbox is full.

        Raises:
            TransportClosed: the mailbox is closed.
        """
        if self._closed:
            raise TransportClosed("mailbox is closed")
        items = self._items
        while len(items) >= self._capacity:
            await _wait(self._putters)
        items.append(item)
        if self._getters:
            _wake(self._getters)

    def send_nowait(self, item: T) -> None:
        """Queue ``item`` or raise :class:`MailboxFull` at once.

        Raises:
            TransportClosed: the mailbox is closed.
            MailboxFull: the mailbox holds ``capacity`` items.
        """
        if self._closed:
            raise TransportClosed("mailbox is closed")
        items = self._items
        if len(items) >= self._capacity:
            raise MailboxFull(f"mailbox is full ({self._capacity} messages)")
        items.append(item)
        if self._getters:
            _wake(self._getters)

    def put_nowait(self, item: T) -> None:
        """Queue ``item`` for nats-py's read loop, which counts a slow consumer on QueueFull.

        Raises:
            asyncio.QueueFull: the mailbox holds ``capacity`` items.
        """
        items = self._items
        if len(items) >= self._capacity:
            raise asyncio.QueueFull
        items.append(item)
        if self._getters:
            _wake(self._getters)

    def qsize(self) -> int:
        """How many items are queued (nats-py's ``pending_msgs``)."""
        return len(self._items)

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return not self._items

    async def receive(self) -> T:
        """Take the next item, waiting for one.

        Raises:
            StopAsyncIteration: the mailbox is closed and empty.
        """
        items = self._items
        while not items:
            if self._closed:
                raise StopAsyncIteration
            await _wait(self._getters)
        item = items.popleft()
        if self._putters:
            _wake(self._putters)
        self.received += 1
        return item

    def close(self) -> None:
        """Refuse new items; the receiver still gets what is queued, then the end."""
        if self._closed:
            return
        self._closed = True
        getters = self._getters
        while getters:  # every receiver (an actor may have several) sees the end
            _wake(getters)

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox's counters."""
        return MailboxStatistics(
            len(self._items), self._capacity, self.received, self.dropped, self._closed
        )

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        return await self.receive()
