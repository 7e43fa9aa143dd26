"""What every ref, context and actor cell of one system shares, and the current context.

Internal: the public face of this is :class:`~motadata_actors.ActorSystem`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Literal, TypeVar, final

import attrs

from motadata_actors._errors import ActorsError, ConfigError, SubjectError
from motadata_actors.codecs import Codecs, wire_name_of
from motadata_actors.mailbox import (
    CORRELATION_ID,
    MESSAGE_ID,
    DurableConfig,
    DurableTransport,
    Transport,
    encode_body,
    encode_error,
    event_subject,
    new_message_id,
)
from motadata_actors.telemetry import Telemetry, get_logger

from ._clock import Clock
from ._events import EventLog
from ._policy import AskPolicy

if TYPE_CHECKING:
    from ._actor import Context

__all__ = (
    "AGENT_TEMPLATE",
    "EVENT_TEMPLATE",
    "MAILBOX_KINDS",
    "MailboxKind",
    "Runtime",
    "WORKFLOW_TEMPLATE",
    "current_context",
    "needs_durable",
    "reason_line",
)

MailboxKind = Literal["core", "durable"]
MAILBOX_KINDS: tuple[MailboxKind, ...] = ("core", "durable")

AGENT_TEMPLATE = "sdk.agent.{from}.{to}.{tenant}"
EVENT_TEMPLATE = "sdk.events.{event_type}.{tenant}"
WORKFLOW_TEMPLATE = "sdk.workflow.{workflow_id}.{tenant}"


def reason_line(exc: BaseException) -> str:
    """``Type: message`` on one line, bounded, for ``Sdk-Dead-Reason``, logs and spans."""
    text = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
    return text[:512]


def needs_durable(rt: Runtime, what: str) -> DurableTransport:
    """The runtime's JetStream side, or a ConfigError saying why ``what`` needs it."""
    # getattr: a transport of the application's own may predate durable mailboxes.
    durable: DurableTransport | None = getattr(rt.transport, "durable", None)
    if durable is None:
        raise ConfigError(
            f"{what} needs JetStream, so NATS: set ENABLE_NATS=true (nothing is kept in process)"
        )
    return durable


T = TypeVar("T")
log = get_logger("actors")

current_context: ContextVar[Context | None] = ContextVar("motadata_actors_context", default=None)
"""The context of the message the running task is handling, if any."""


@final
@attrs.define(slots=True, eq=False)
class Runtime:
    """The shared state of one actor system."""

    tenant: str
    transport: Transport
    codecs: Codecs
    max_size: int
    ask_policy: AskPolicy
    mailbox_capacity: int
    client_id: str
    clock: Clock
    events: EventLog
    no_responders_hint: str = ""
    telemetry: Telemetry | None = None
    durable: DurableConfig = attrs.field(factory=DurableConfig)
    max_header_size: int = 16 * 1024
    replay_window: float = 300.0
    stream_window: int = 256
    stream_window_bytes: int = 1024 * 1024

    async def publish_event(
        self, event: object, event_type: str | None, *, durable: bool = False
    ) -> None:
        """Publish ``event`` on ``sdk.events.<event_type>.<tenant>``.

        ``durable``: through JetStream, returning once the tenant's events stream stored
        it (the stream is made on first use).
        """
        if event_type is None:
            wire_name = wire_name_of(event)
            if wire_name is None:
                raise SubjectError(
                    "an untyped event needs event_type=...; typed events (@message) "
                    "take it from their wire name"
                )
            event_type = wire_name.replace(".", "_")
            try:
                subject = event_subject(event_type, self.tenant)
            except SubjectError as exc:
                raise SubjectError(
                    f"{exc}: the event type comes from the wire name {wire_name!r}; pass "
                    "event_type=... (one token of at most 64 characters)"
                ) from None
        else:
            subject = event_subject(event_type, self.tenant)
        if not durable:

            async def send(data: bytes, headers: dict[str, str]) -> None:
                await self.transport.publish(subject, data, headers=headers)

        else:
            store = needs_durable(self, "publish(..., durable=True)")

            async def send(data: bytes, headers: dict[str, str]) -> None:
                await store.append(
                    "events", self.tenant, self.durable, subject, data, headers=headers
                )

        await self.send_to_many(subject, EVENT_TEMPLATE, event, send)

    async def send_error(
        self,
        reply: str,
        type_name: str,
        message: str,
        origin: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Send an error reply (``Sdk-Error``, plus ``extra`` headers); never raises.

        ``origin`` is ``handler`` when user code raised, ``sdk`` when the framework refused.
        """
        data, headers = encode_error(type_name, message[:4096], self.codecs.default, origin=origin)
        if extra:
            headers.update(extra)
        try:
            await self.transport.publish(reply, data, headers=headers)
        except ActorsError as exc:
            log.warning("error reply to %s lost: %r", reply, exc)

    async def send_to_many(
        self,
        subject: str,
        template: str,
        body: object,
        send: Callable[[bytes, dict[str, str]], Awaitable[T]],
        message_id: str | None = None,
    ) -> T:
        """Send a message with no single recipient (an event, a workflow step) by ``send``.

        Makes the headers (message id, the conversation's correlation id) and the body, and
        the send span when telemetry is on. ``sdk.agent.to`` is ``-``: event types and
        workflow ids must not use up the bounded agent label of the metrics (the span's
        destination name carries them).
        """
        headers = {MESSAGE_ID: message_id if message_id is not None else new_message_id()}
        ctx = current_context.get()
        if ctx is not None:
            headers[CORRELATION_ID] = ctx.correlation_id
        data = encode_body(body, self.codecs.default, headers)
        tel = self.telemetry
        if tel is None:
            return await send(data, headers)
        sender = ctx.actor if ctx is not None else self.client_id
        span = tel.start_send(subject, template, sender, "-", headers, len(data))
        try:
            return await send(data, headers)
        except BaseException as exc:
            if span is not None:
                tel.fail(span, exc)
            raise
        finally:
            if span is not None:
                span.end()
