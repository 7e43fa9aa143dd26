"""The in-process transport: NATS subject semantics inside one Python process.

A product feature, not a test double: single-process applications run on it, and
it is the fastest path. It matches nats-server where the contract tests look:
``*`` matches one token and ``>`` one or more at the end; a queue group gets each
message once (round-robin here, random on a server); a request nobody subscribes
to fails with no-responders at once; a message over ``max_payload`` (headers and
body) is refused. Bodies are bytes here too, so actors never share mutable objects;
only an immutable value the codec would give back unchanged (a str, a number, a frozen
typed message of such fields: ``Sealed.shared``) is handed over as itself
(:meth:`InProcessTransport.hand_over`), its size bounded instead of measured.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Mapping
from typing import final

import attrs

from motadata_actors._errors import AskTimeout, NoResponders, SubjectError, TransportClosed

from ._dead_letters import MemoryDeadLetters
from ._deadlines import Deadlines
from ._envelope import Sealed, SharedMessage, check_size
from ._kv import MemoryKeyValue
from ._objects import MemoryObjectStore
from ._queue import Mailbox
from ._reminders import MemoryReminders
from ._subjects import check_publish_subject, check_subscribe_subject
from ._transport import Incoming, Subscription

__all__ = ("InProcessMessage", "InProcessTransport")

_BAD_SUBJECT = re.compile(r"[\s\x00-\x1f\x7f]")
_ROUTE_CACHE_SIZE = 4096


@final
@attrs.frozen(slots=True)
class InProcessMessage:
    """A message delivered by the in-process transport."""

    subject: str
    reply: str
    data: bytes
    headers: dict[str, str] | None


@attrs.define(eq=False, slots=True)
class _Sub:
    tokens: tuple[str, ...]
    queue: str | None
    mailbox: Mailbox[Incoming]


_Route = tuple[list[_Sub], list[list[_Sub]], bool]
"""A subject's plain subscribers, its queue groups, and whether no mailbox is in it twice."""


def _matches(pattern: tuple[str, ...], subject: tuple[str, ...]) -> bool:
    for i, token in enumerate(pattern):
        if token == ">":
            return len(subject) > i
        if i >= len(subject) or (token != "*" and token != subject[i]):
            return False
    return len(pattern) == len(subject)


@final
class InProcessTransport:
    """A :class:`~motadata_actors.mailbox.Transport` inside one process.

    Args:
        max_payload: the largest message, headers and body together (NATS's default).
        inbox_prefix: prefix of reply subjects made by :meth:`request`.
    """

    def __init__(self, *, max_payload: int = 1024 * 1024, inbox_prefix: str = "_INBOX") -> None:
        self._dead = MemoryDeadLetters(self.publish)
        self._max_payload = max_payload
        self._inbox_prefix = inbox_prefix
        self._subs: list[_Sub] = []
        self._routes: dict[str, _Route] = {}
        self._replies: dict[str, asyncio.Future[Incoming]] = {}
        self._round_robin = itertools.count()
        self._inbox_ids = itertools.count(1)
        self._buckets: dict[str, MemoryKeyValue] = {}
        self._objects: dict[str, MemoryObjectStore] = {}
        self._reminders = MemoryReminders()
        self._closed = False
        self._deadlines = Deadlines()

    @property
    def reminders(self) -> MemoryReminders:
        """Reminders on the event loop's timers (gone with the process)."""
        return self._reminders

    async def key_value(
        self, bucket: str, *, ttl: float | None = None, max_value_size: int = -1
    ) -> MemoryKeyValue:
        """The bucket ``bucket`` in this process's memory, made when missing.

        Every system on this transport shares it, as processes share a JetStream bucket.
        """
        found = self._buckets.get(bucket)
        if found is None:
            found = self._buckets[bucket] = MemoryKeyValue(
                bucket, ttl=ttl, max_value_size=max_value_size
            )
        return found

    async def object_store(self, bucket: str, *, ttl: float) -> MemoryObjectStore:
        """The object bucket ``bucket`` in this process's memory, made when missing."""
        found = self._objects.get(bucket)
        if found is None:
            found = self._objects[bucket] = MemoryObjectStore(bucket, ttl=ttl)
        return found

    @property
    def dead_letters(self) -> MemoryDeadLetters:
        """Dead letters kept in a bounded list per tenant (durable mailboxes need NATS)."""
        return self._dead

    @property
    def max_payload(self) -> int:
        """The largest message, headers and body together."""
        return self._max_payload

    @property
    def description(self) -> str:
        """Always ``in-process``."""
        return "in-process"

    async def start(self) -> None:
        """Nothing to connect to; present for the interface."""

    def _route(self, subject: str) -> _Route:
        route = self._routes.get(subject)
        if route is None:
            tokens = tuple(subject.split("."))
            plain: list[_Sub] = []
            groups: dict[str, list[_Sub]] = {}
            for sub in self._subs:
                if _matches(sub.tokens, tokens):
                    if sub.queue is None:
                        plain.append(sub)
                    else:
                        groups.setdefault(sub.queue, []).append(sub)
            boxes = [id(sub.mailbox) for sub in plain]
            boxes += [id(sub.mailbox) for group in groups.values() for sub in group]
            route = (plain, list(groups.values()), len(set(boxes)) == len(boxes))
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[subject] = route
        return route

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Deliver to every matching subscriber (one per queue group); waits on full mailboxes."""
        if self._closed:
            raise TransportClosed("in-process transport is closed")
        check_size(data, headers, self._max_payload)
        await self._publish(subject, data, headers, reply, None)

    async def hand_over(self, subject: str, sealed: Sealed, *, reply: str = "") -> None:
        """Deliver a shared message: its value itself, as :meth:`publish` delivers bytes.

        Its size was bounded when it was sealed (``share``); a receiver that needs the
        bytes (a dead letter, say) makes them.
        """
        if self._closed:
            raise TransportClosed("in-process transport is closed")
        if sealed.headers:
            check_size(b"", sealed.headers, self._max_payload - sealed.bound)
        await self._publish(subject, b"", sealed.headers, reply, sealed)

    async def _publish(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
        reply: str,
        shared: Sealed | None,
    ) -> None:
        future = self._replies.get(subject)
        if future is not None:  # a reply: the subject is one of our own inboxes
            if not future.done():
                future.set_result(_message(subject, reply, data, headers, shared))
            return
        check_publish_subject(subject)
        if self._dead.keeping and subject.startswith("sdk.dlq."):
            if shared is not None:
                data = shared.encoded()
            self._dead.capture(subject, data, headers)  # as a stream captures the subject
        delivered = self._deliver_now(subject, data, headers, reply, shared)
        if delivered is None:  # a mailbox is full: wait for room (backpressure)
            delivered = await self._deliver(subject, data, headers, reply, shared)
        if not delivered and reply:
            # As nats-server does for a client that asked for it (nats-py does): a
            # message with a reply subject that nobody received gets a 503 status there.
            await self._deliver(reply, b"", {"Status": "503"}, "", None)

    async def _deliver(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
        reply: str,
        shared: Sealed | None,
    ) -> int:
        plain, groups, _ = self._route(subject)
        delivered = 0
        for sub in plain:
            if not sub.mailbox.closed:
                await sub.mailbox.send(_message(subject, reply, data, headers, shared))
            delivered += 1
        for group in groups:
            sub = group[next(self._round_robin) % len(group)]
            if not sub.mailbox.closed:
                await sub.mailbox.send(_message(subject, reply, data, headers, shared))
            delivered += 1
        return delivered

    async def subscribe(
        self, subject: str, *, queue: str | None = None, mailbox: Mailbox[Incoming]
    ) -> Subscription:
        """Deliver messages matching ``subject`` into ``mailbox``."""
        if self._closed:
            raise TransportClosed("in-process transport is closed")
        tokens = check_subscribe_subject(subject)
        if queue is not None and (not queue or _BAD_SUBJECT.search(queue)):
            raise SubjectError(f"invalid queue group {queue!r}")
        sub = _Sub(tokens, queue, mailbox)
        self._subs.append(sub)
        self._routes.clear()

        async def unsubscribe() -> None:
            if sub in self._subs:
                self._subs.remove(sub)
                self._routes.clear()

        return Subscription(subject, queue, mailbox, unsubscribe)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> Incoming:
        """Publish with a fresh reply subject and wait for the first reply."""
        if self._closed:
            raise TransportClosed("in-process transport is closed")
        check_publish_subject(subject)
        check_size(data, headers, self._max_payload)
        return await self._request(subject, data, headers, timeout, None)

    async def request_shared(self, subject: str, sealed: Sealed, *, timeout: float) -> Incoming:
        """:meth:`request` for a shared message (see :meth:`hand_over`)."""
        if self._closed:
            raise TransportClosed("in-process transport is closed")
        check_publish_subject(subject)
        if sealed.headers:
            check_size(b"", sealed.headers, self._max_payload - sealed.bound)
        return await self._request(subject, b"", sealed.headers, timeout, sealed)

    async def _request(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
        timeout: float,
        shared: Sealed | None,
    ) -> Incoming:
        inbox = f"{self._inbox_prefix}.{next(self._inbox_ids)}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Incoming] = loop.create_future()
        self._replies[inbox] = future
        try:
            delivered = self._deliver_now(subject, data, headers, inbox, shared)
            if delivered is not None:
                if not delivered:
                    raise NoResponders(f"no responders on {subject!r}")
                # Delivery did not wait: a deadline failing the reply's future is all the
                # timeout needs (a cancel scope costs several times more).
                self._deadlines.watch(loop, future, subject, timeout)
                return await future
            try:  # a full mailbox: waiting for room counts against the deadline too
                async with asyncio.timeout(timeout):
                    if not await self._deliver(subject, data, headers, inbox, shared):
                        raise NoResponders(f"no responders on {subject!r}")
                    return await future
            except TimeoutError:
                raise AskTimeout(f"no reply on {subject!r} within {timeout:.3g}s") from None
        finally:
            del self._replies[inbox]

    def _deliver_now(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
        reply: str,
        shared: Sealed | None,
    ) -> int | None:
        """:meth:`_deliver` when no mailbox it goes to is full; None (nothing sent) if one is.

        Also None when one mailbox is reached twice (two subscriptions into it): one free
        slot would not be room for both.
        """
        plain, groups, distinct = self._route(subject)
        if not distinct:
            return None
        for sub in plain:
            if sub.mailbox.full:
                return None
        for group in groups:
            for sub in group:
                if sub.mailbox.full:
                    return None
        for sub in plain:
            if not sub.mailbox.closed:
                sub.mailbox.send_nowait(_message(subject, reply, data, headers, shared))
        for group in groups:
            sub = group[next(self._round_robin) % len(group)]
            if not sub.mailbox.closed:
                sub.mailbox.send_nowait(_message(subject, reply, data, headers, shared))
        return len(plain) + len(groups)

    async def aclose(self) -> None:
        """Refuse further operations; pending requests fail."""
        self._closed = True
        self._deadlines.clear()
        for future in self._replies.values():
            if not future.done():
                future.set_exception(TransportClosed("in-process transport is closed"))
        self._subs.clear()
        self._routes.clear()


def _message(
    subject: str, reply: str, data: bytes, headers: Mapping[str, str] | None, shared: Sealed | None
) -> Incoming:
    if shared is not None:
        return SharedMessage(subject, reply, shared)
    return InProcessMessage(subject, reply, data, dict(headers) if headers else None)
