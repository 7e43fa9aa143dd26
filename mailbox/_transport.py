"""The transport interface: what actors need from a message bus, and nothing more.

Two implementations ship: :class:`~motadata_actors.mailbox.NatsTransport` (nats-py on a
real nats-server) and :class:`~motadata_actors.mailbox.InProcessTransport`. Both pass
the same contract test suite: ``*``/``>`` wildcards, queue groups, headers,
request-reply, no-responders, per-sender ordering, and a size limit that counts
headers and body together.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal, Protocol, final, runtime_checkable

import attrs

from motadata_actors._settings import Retention

from ._queue import Mailbox

__all__ = (
    "DeadLetter",
    "DeadLetterStore",
    "Durable",
    "DurableConfig",
    "DurableMessage",
    "DurableStore",
    "KeepsDeadLetters",
    "Observed",
    "Incoming",
    "LogKind",
    "Retention",
    "Settler",
    "StartAt",
    "StoredMessage",
    "Subscription",
    "Transport",
)


class Incoming(Protocol):
    """A received message as a transport hands it over (nats-py's ``Msg`` fits as is)."""

    @property
    def subject(self) -> str:
        """The subject it was published on."""
        ...

    @property
    def reply(self) -> str:
        """The reply subject, or an empty string."""
        ...

    @property
    def data(self) -> bytes:
        """The body."""
        ...

    @property
    def headers(self) -> dict[str, str] | None:
        """The headers, or None when the message had none."""
        ...


LogKind = Literal["events", "workflows"]
"""The tenant's kept logs besides durable mailboxes: ``SDK_EVENTS_<t>``, ``SDK_WORKFLOWS_<t>``."""

StartAt = Literal["all", "new"] | int | datetime.datetime
"""Where a new durable feed starts: everything kept, only what comes next, a stream
sequence number, or a point in time."""


@attrs.frozen(slots=True)
class StoredMessage:
    """A message kept in a JetStream stream.

    Attributes:
        seq: its sequence number in the stream.
        subject: the subject it was published on.
        headers: its headers.
        data: its body.
        time: when it was stored (seconds since the epoch).
    """

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes
    time: float

    @property
    def reply(self) -> str:
        """Always "": a kept message has no one waiting on it (so it reads as :class:`Incoming`)."""
        return ""


@final
@attrs.frozen(slots=True)
class DeadLetter(StoredMessage):
    """A kept dead letter.

    Its ``subject`` is ``sdk.dlq.<to>.<tenant>``, its ``headers`` the original ones plus
    ``Sdk-Dead-Reason``, its ``data`` the original body.
    """

    @property
    def reason(self) -> str:
        """Why it was dead-lettered."""
        return self.headers.get("Sdk-Dead-Reason", "")

    @property
    def to(self) -> str:
        """The agent it was addressed to."""
        return self.subject.split(".")[2]


@final
class Subscription:
    """Interest in a subject; messages arrive in :attr:`mailbox`.

    Made by :meth:`Transport.subscribe`; several subscriptions may share one mailbox
    (an actor's inbox and its event subscriptions, say).
    """

    __slots__ = ("_unsubscribe", "mailbox", "queue", "subject")

    def __init__(
        self,
        subject: str,
        queue: str | None,
        mailbox: Mailbox[Incoming],
        unsubscribe: Callable[[], Awaitable[None]],
    ) -> None:
        self.subject = subject
        self.queue = queue
        self.mailbox = mailbox
        self._unsubscribe: Callable[[], Awaitable[None]] | None = unsubscribe

    async def unsubscribe(self) -> None:
        """Stop receiving. Idempotent (the transport's own step runs once).

        Messages the bus delivered before (this process's own earlier publishes
        included) still land in the mailbox; the mailbox itself stays open.
        """
        step, self._unsubscribe = self._unsubscribe, None
        if step is not None:
            await step()


@final
@attrs.frozen(slots=True)
class DurableConfig:
    """How durable mailboxes keep and redeliver messages (the ``SDK_DURABLE_*`` settings).

    Attributes:
        max_deliver: deliveries of one message before it is dead-lettered.
        ack_wait: seconds a delivered, unsettled message waits before it is redelivered
            (a running handler keeps extending it with in-progress acks).
        backoff: seconds before the first redelivery after a handler failure; doubles
            with every further delivery.
        backoff_max: the longest pause between redeliveries.
        prefetch: messages pulled ahead into an actor's local mailbox (at most its
            capacity); the rest wait in the stream.
        retention: the tenant stream's retention (``workqueue``: gone once handled).
        max_age: seconds the stream keeps a message.
        max_bytes: bytes the stream keeps (-1: no limit).
        replicas: copies of the stream in a cluster (1, 3 or 5).
        duplicate_window: seconds during which a repeated ``Nats-Msg-Id`` is dropped.
    """

    max_deliver: int = 5
    ack_wait: float = 30.0
    backoff: float = 0.5
    backoff_max: float = 30.0
    prefetch: int = 64
    retention: Retention = "workqueue"
    max_age: float = 7 * 24 * 3600.0
    max_bytes: int = -1
    replicas: int = 1
    duplicate_window: float = 120.0

    def redelivery_delay(self, delivered: int) -> float:
        """Seconds to wait before redelivering after failed delivery number ``delivered``."""
        return min(self.backoff_max, self.backoff * 2.0 ** max(0, delivered - 1))


class Settler(Protocol):
    """Where a :class:`DurableMessage`'s verdict goes: the pull loop that delivered it."""

    async def settle(
        self, msg: DurableMessage, verdict: Literal["ack", "nak", "term"], delay: float
    ) -> None:
        """Send ``msg``'s verdict (``delay``: seconds before a nak'd message comes again).

        Raises:
            ConnectionLost: the verdict could not be sent (the message comes again later).
        """
        ...

    async def in_progress(self, msg: DurableMessage) -> None:
        """Restart ``msg``'s ack-wait timer.

        Raises:
            ConnectionLost: it could not be sent.
        """
        ...


@final
class DurableMessage:
    """A message from a durable mailbox, to settle exactly once: ack, nak or term.

    ``reply`` is the asker's inbox from ``Sdk-Reply-To`` (never JetStream's ack subject);
    ``deadline`` is when an ask's asker stops waiting (epoch seconds: the stream's stored
    time plus ``Sdk-Timeout-Ms``), None for tells. Until it is settled, the pull loop that
    delivered it keeps it from being redelivered (in-progress acks every half ack-wait),
    while it waits in the mailbox and while a handler runs: a worker only sets ``started``
    when it takes it and settles it when done.
    """

    __slots__ = (
        "data",
        "deadline",
        "delivered",
        "handle",
        "headers",
        "max_deliver",
        "reply",
        "settled",
        "settler",
        "started",
        "stored_at",
        "stream_seq",
        "subject",
    )

    def __init__(
        self,
        *,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        reply: str,
        delivered: int,
        max_deliver: int,
        stream_seq: int,
        stored_at: float,
        deadline: float | None,
        handle: Incoming,
        settler: Settler,
    ) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers
        self.reply = reply
        self.delivered = delivered
        self.max_deliver = max_deliver
        self.stream_seq = stream_seq
        self.stored_at = stored_at
        """When the stream stored it (seconds since the epoch)."""
        self.deadline = deadline
        self.handle = handle
        """The transport's own message it was read from."""
        self.settler = settler
        """The pull loop that delivered it."""
        self.started = False
        """A worker took it (it no longer counts as waiting in the mailbox)."""
        self.settled = False
        """A verdict was given (sent or lost: either way it is no longer kept alive)."""

    @property
    def last_delivery(self) -> bool:
        """Whether a failure now means no redelivery."""
        return self.delivered >= self.max_deliver

    async def ack(self) -> None:
        """Handled: remove it from the mailbox (a no-op once settled).

        Raises:
            ConnectionLost: the ack was lost (it comes again after its ack-wait).
        """
        if not self.settled:
            self.settled = True
            await self.settler.settle(self, "ack", 0.0)

    async def nak(self, delay: float = 0.0) -> None:
        """Not handled: deliver it again after ``delay`` seconds (a no-op once settled).

        Raises:
            ConnectionLost: the nak was lost (it comes again after its ack-wait).
        """
        if not self.settled:
            self.settled = True
            await self.settler.settle(self, "nak", delay)

    async def in_progress(self) -> None:
        """Still being handled: restart its ack-wait timer (the pull loop does it anyway).

        Raises:
            ConnectionLost: it could not be sent.
        """
        if not self.settled:
            await self.settler.in_progress(self)

    async def term(self) -> None:
        """Never deliver it again: dead-lettered, or past its time (a no-op once settled).

        Raises:
            ConnectionLost: the term was lost (it comes again after its ack-wait).
        """
        if not self.settled:
            self.settled = True
            await self.settler.settle(self, "term", 0.0)

    def __repr__(self) -> str:
        return f"<DurableMessage {self.subject} seq={self.stream_seq} delivery={self.delivered}>"


class DurableStore(Protocol):
    """Durable mailboxes: a stream per tenant, a shared consumer per agent name."""

    async def open_mailbox(
        self, tenant: str, agent: str, mailbox: Mailbox[Incoming], config: DurableConfig
    ) -> Subscription:
        """Capture ``sdk.agent.*.<agent>.<tenant>`` and pull its messages into ``mailbox``.

        Every process opening the same agent shares one consumer (the replicas split the
        load). Messages arrive as :class:`DurableMessage`. Stream and consumer settings
        that differ from ``config`` are reported, not changed.

        Raises:
            ConfigError: the server has no JetStream.
            ConnectionLost: the server cannot be reached.
        """
        ...

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str],
        expect_last_seq: int | None = None,
    ) -> int:
        """Store a message in the stream; return its stream sequence once acknowledged.

        ``Sdk-Message-Id`` is sent as ``Nats-Msg-Id``: a repeat within the duplicate
        window is stored once.

        Args:
            subject: where to publish (a stream must capture it).
            data: the body.
            headers: the headers.
            expect_last_seq: store it only if the last message on ``subject`` has this
                stream sequence (0: none yet).

        Raises:
            NoResponders: no stream captures ``subject``.
            SequenceConflict: ``expect_last_seq`` was given and is not the last one.
            ConnectionLost: no acknowledgement (the message may or may not be stored).
        """
        ...

    async def append(
        self,
        kind: LogKind,
        tenant: str,
        config: DurableConfig,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str],
        expect_last_seq: int | None = None,
    ) -> int:
        """Store a message in the tenant's events or workflows stream; return its sequence.

        The stream (``limits`` retention, ``config``'s age, size and replicas) is made on
        first use, and made again if it was deleted.

        Raises:
            SequenceConflict: ``expect_last_seq`` was given and is not the last one.
            ConfigError: the server has no JetStream, or refused the stream.
            NoResponders: the stream, made again, still does not capture ``subject``.
            ConnectionLost: no acknowledgement (the message may or may not be stored).
        """
        ...

    async def open_feed(
        self,
        kind: LogKind,
        tenant: str,
        subject: str,
        consumer: str,
        mailbox: Mailbox[Incoming],
        config: DurableConfig,
        *,
        start: StartAt = "all",
        ordered: bool = False,
        agent: str,
    ) -> Subscription:
        """Pull what the tenant's ``kind`` stream keeps on ``subject`` into ``mailbox``.

        Every reader opening the same ``consumer`` shares it (each message goes to one of
        them). ``start`` applies when the consumer is made; an existing one goes on from
        where it was. ``ordered`` hands out one message at a time (the next only after
        the previous one was settled), so even redeliveries keep the stream's order.
        Messages arrive as :class:`DurableMessage`; one whose last delivery fails is
        dead-lettered to ``sdk.dlq.<agent>.<tenant>``.

        Raises:
            ConfigError: the server has no JetStream.
            ConnectionLost: the server cannot be reached.
        """
        ...

    async def read(
        self, kind: LogKind, tenant: str, subject: str, *, after: int = 0, limit: int = 10_000
    ) -> list[StoredMessage]:
        """What the ``kind`` stream keeps on ``subject`` past sequence ``after``, in order.

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        ...

    async def request(
        self, subject: str, data: bytes, *, headers: dict[str, str], timeout: float
    ) -> Incoming:
        """Store a request naming this process's inbox in ``Sdk-Reply-To``; await the reply.

        Never resends: a redelivered request is answered by whichever delivery succeeds.

        Raises:
            NoResponders: no durable mailbox captures ``subject``.
            AskTimeout: no reply within ``timeout``.
        """
        ...


class Transport(Protocol):
    """A message bus with NATS subject semantics.

    What a transport can do beyond this, it declares by type: :class:`Durable` (JetStream:
    durable mailboxes, kept events and workflows) and :class:`KeepsDeadLetters`.
    """

    @property
    def max_payload(self) -> int:
        """The largest message (headers and body) the bus accepts, in bytes."""
        ...

    @property
    def description(self) -> str:
        """Where messages go, for logs and error messages (``nats://127.0.0.1:...``)."""
        ...

    async def start(self) -> None:
        """Connect, before any other method; a no-op when already started."""
        ...

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Publish a message.

        Raises:
            SubjectError: the subject is empty, has wildcards or whitespace.
            MessageTooLarge: headers and body exceed :attr:`max_payload`.
            TransportClosed: the transport was closed.
            ConnectionLost: the connection is broken and cannot buffer.
        """
        ...

    async def subscribe(
        self, subject: str, *, queue: str | None = None, mailbox: Mailbox[Incoming]
    ) -> Subscription:
        """Deliver messages matching ``subject`` (wildcards allowed) into ``mailbox``.

        Subscribers sharing a ``queue`` name split the messages: each goes to one of them.
        """
        ...

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> Incoming:
        """Publish with a fresh reply subject and wait for the first reply.

        Raises:
            NoResponders: nobody subscribes to ``subject``.
            AskTimeout: no reply within ``timeout`` seconds.
        """
        ...

    async def aclose(self) -> None:
        """Flush what was published and close. Idempotent."""
        ...


class DeadLetterStore(Protocol):
    """Where a tenant's dead letters (``sdk.dlq.<to>.<tenant>``) are kept, listed and dropped."""

    async def keep(
        self, tenant: str, *, max_messages: int, max_age: float, replicas: int = 1
    ) -> bool:
        """Keep the tenant's dead letters from now on (bounded), even when nobody listens.

        ``replicas``: copies kept in a cluster, when the store is made. Returns False when
        they cannot be kept (a server without JetStream): they are then published only.
        """
        ...

    async def put(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Dead-letter one message on ``subject``, kept before this returns when it can be.

        Raises:
            ConnectionLost: it could not be sent.
        """
        ...

    async def read(self, tenant: str, *, limit: int = 100) -> list[DeadLetter]:
        """The tenant's kept dead letters, oldest first.

        Raises:
            ConfigError: the server keeps none (no JetStream).
        """
        ...

    async def drop(self, tenant: str, seq: int) -> None:
        """Remove one kept dead letter (after a replay, say)."""
        ...


@runtime_checkable
class Durable(Protocol):
    """A transport with durable mailboxes and kept logs (JetStream)."""

    @property
    def durable(self) -> DurableStore:
        """Its durable mailboxes, events and workflows."""
        ...


@runtime_checkable
class Observed(Protocol):
    """A transport that reports what happens to its connection."""

    listener: Callable[[str, str, str], None] | None
    """Told ``(kind, detail, reply)``: ``dropped`` (a slow consumer lost a message on
    ``detail``; an ask when ``reply`` is set), ``refused`` (the server refused a publish or
    subscription on ``detail``), ``disconnected`` and ``reconnected``."""


@runtime_checkable
class KeepsDeadLetters(Protocol):
    """A transport that keeps a tenant's dead letters."""

    @property
    def dead_letters(self) -> DeadLetterStore:
        """Its dead-letter store."""
        ...
