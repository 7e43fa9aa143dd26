"""The transport interface: what actors need from a message bus, and nothing more.

Two implementations ship: :class:`~motadata_actors.mailbox.NatsTransport` (nats-py on a
real nats-server) and :class:`~motadata_actors.mailbox.InProcessTransport`. Both pass
the same contract test suite: ``*``/``>`` wildcards, queue groups, headers,
request-reply, no-responders, per-sender ordering, and a size limit that counts
headers and body together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, final

import attrs

from ._queue import Mailbox

__all__ = ("DeadLetter", "Incoming", "Subscription", "Transport")


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


@final
@attrs.frozen(slots=True)
class DeadLetter:
    """A kept dead letter.

    Attributes:
        seq: its sequence number in the tenant's dead-letter store.
        subject: ``sdk.dlq.<to>.<tenant>``.
        headers: the original headers plus ``Sdk-Dead-Reason``.
        data: the original body.
        time: when it was kept (seconds since the epoch).
    """

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes
    time: float

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
        self._unsubscribe = unsubscribe

    async def unsubscribe(self) -> None:
        """Stop receiving. Idempotent.

        Messages the bus delivered before (this process's own earlier publishes
        included) still land in the mailbox; the mailbox itself stays open.
        """
        await self._unsubscribe()


class Transport(Protocol):
    """A message bus with NATS subject semantics."""

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

    async def capture_dead_letters(self, tenant: str, *, max_messages: int, max_age: float) -> bool:
        """Keep ``sdk.dlq.*.<tenant>`` messages (bounded), so none is lost when nobody listens.

        Returns False when the bus cannot keep them (a server without JetStream).
        """
        ...

    async def dead_letters(self, tenant: str, *, limit: int = 100) -> list[DeadLetter]:
        """The tenant's kept dead letters, oldest first."""
        ...

    async def drop_dead_letter(self, tenant: str, seq: int) -> None:
        """Remove one kept dead letter (after a replay, say)."""
        ...

    async def aclose(self) -> None:
        """Flush what was published and close. Idempotent."""
        ...
