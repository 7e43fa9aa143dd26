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

from ._queue import Mailbox

__all__ = ("Incoming", "Subscription", "Transport")


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

    async def aclose(self) -> None:
        """Flush what was published and close. Idempotent."""
        ...
