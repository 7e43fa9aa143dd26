"""What every ref, context and actor cell of one system shares, and the current context.

Internal: the public face of this is :class:`~motadata_actors.ActorSystem`.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, final

import anyio.abc
import attrs

from motadata_actors._errors import ActorsError, ConfigError, SubjectError
from motadata_actors.codecs import Codecs, wire_name_of
from motadata_actors.mailbox import (
    DeadLetterStore,
    Durable,
    DurableConfig,
    DurableStore,
    InProcessTransport,
    Transport,
    dlq_subject,
    event_subject,
    new_message_id,
)
from motadata_actors.mailbox._envelope import (
    NOT_SHARED,
    Sealed,
    dead_letter_headers,
    seal,
    seal_error,
)
from motadata_actors.telemetry._instrument import Telemetry
from motadata_actors.telemetry._logging import get_logger

from ._clock import Clock
from ._events import EventLog
from ._policy import AskPolicy

if TYPE_CHECKING:
    from ._actor import Context
    from ._claims import Claims
    from ._keyed import Tap
    from ._leases import Leases
    from ._reminders import ReminderService
    from ._schemas import SchemaRegistry
    from ._status_events import StatusPublisher
    from ._streaming import AskStream
    from ._watch import WatchService

__all__ = (
    "AGENT_TEMPLATE",
    "EVENT_TEMPLATE",
    "MAILBOX_KINDS",
    "MailboxKind",
    "Runtime",
    "STATUS_TEMPLATE",
    "WORKFLOW_TEMPLATE",
    "current_context",
    "reason_line",
)

MailboxKind = Literal["core", "durable"]
MAILBOX_KINDS: tuple[MailboxKind, ...] = ("core", "durable")

AGENT_TEMPLATE = "sdk.agent.{from}.{to}.{tenant}"
EVENT_TEMPLATE = "sdk.events.{event_type}.{tenant}"
WORKFLOW_TEMPLATE = "sdk.workflow.{workflow_id}.{tenant}"
STATUS_TEMPLATE = "sdk.status.{kind}.{tenant}"


def reason_line(exc: BaseException) -> str:
    """``Type: message`` on one line, bounded, for dead reasons, logs and spans."""
    text = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
    return text[:512]


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
    durable_config: DurableConfig = attrs.field(factory=DurableConfig)
    max_header_size: int = 16 * 1024
    replay_window: float = 300.0
    stream_window: int = 256
    stream_window_bytes: int = 1024 * 1024
    dead_letter_store: DeadLetterStore | None = None
    """Where dead letters are kept; None: they are only published (nobody keeps them)."""
    task_group: anyio.abc.TaskGroup | None = None
    """The system's task group, for work no handler waits on (set while it runs)."""
    compress_above: int = 0
    """Bytes above which sent bodies are zstd-compressed (0: never)."""
    claims: Claims | None = None
    schemas: SchemaRegistry | None = None
    """The tenant's shared schema registry (set once the system has started)."""
    """Claim checks (``SDK_CLAIM_ABOVE``): large bodies through the object store; None: off."""
    lease_time: float = 10.0
    """Seconds a node lease of keyed agents lasts without renewal."""
    leases: Leases | None = None
    """This system's leases of keyed agents (made by the first ``spawn_keyed``)."""
    reminders: ReminderService | None = None
    """Hands fired reminders to agents (started by a keyed kind or the first reminder)."""
    tap: Tap | None = None
    """The one subscription the keyed kinds here share (made by the first)."""
    watches: WatchService | None = None
    """The watches of this system's agents (made by the first ``watch``)."""
    status: StatusPublisher | None = None
    """Publishes the tenant's status events (life cycles, progress); None: turned off."""
    local: InProcessTransport | None = None
    """The transport when it is the in-process one (which takes shared values)."""
    streams: weakref.WeakSet[AskStream] = attrs.field(factory=weakref.WeakSet)
    """The streaming replies being read here (each told when the system stops)."""
    share: int = 0
    """The largest encoded size (an upper bound) of an immutable tell, ask or reply handed
    over as itself, without a copy (``seal(share=)``). 0: every body is encoded (over NATS,
    with a key ring, or with telemetry, whose spans count the bytes)."""

    def durable(self, what: str) -> DurableStore:
        """The transport's durable side, or a ConfigError saying why ``what`` needs it."""
        # Asked for, not checked with isinstance() against the Protocol: that costs
        # microseconds a call (Python 3.11), and this runs for every durable tell and ask.
        transport = self.transport
        try:
            return cast(Durable, transport).durable
        except AttributeError as exc:
            if exc.name != "durable" or exc.obj is not transport:
                raise  # a fault inside the transport's own durable side, not a missing one
            raise ConfigError(
                f"{what} needs JetStream, so NATS: set ENABLE_NATS=true (nothing is kept in "
                "process)"
            ) from None

    def finish(self, sealed: Sealed) -> Sealed:
        """Compress (above ``SDK_COMPRESS_ABOVE``), then seal (with a key ring) a body to send."""
        if self.compress_above and len(sealed.data) > self.compress_above:
            sealed.compress()
        if self.codecs.keys is not None:
            sealed.seal_body(self.codecs.keys)
        return sealed

    def run_soon(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``work`` in the system's task group (dropped once the system stopped).

        Callable from a task, from an event loop callback (a timer firing) or from the
        garbage collector: anyio starts tasks only from a task (from a bare callback it
        raised, and every actor timer was dropped in a program run by ``asyncio.run``),
        so there a short task of asyncio's own hands ``work`` over.
        """
        group = self.task_group
        if group is None:
            return
        if asyncio.current_task() is None:
            try:
                hop = asyncio.get_running_loop().create_task(_start_soon(group, work))
            except RuntimeError:  # no loop any more (collected at exit): nothing to do
                return
            _HOPS.add(hop)
            hop.add_done_callback(_HOPS.discard)
            return
        with contextlib.suppress(RuntimeError):  # closing: nothing left to do it for
            group.start_soon(work)

    def publish(self, subject: str, sealed: Sealed, *, reply: str = "") -> Awaitable[None]:
        """Publish ``sealed`` on the transport (await it); a shared value goes as itself.

        Raises:
            ActorsError: what the transport's ``publish`` raises.
        """
        if sealed.value is not NOT_SHARED:
            assert self.local is not None
            return self.local.hand_over(subject, sealed, reply=reply)
        return self.transport.publish(subject, sealed.data, headers=sealed.headers, reply=reply)

    async def send(self, subject: str, sealed: Sealed) -> None:
        """Publish ``sealed`` (a reply, most often); a lost one is logged, never raised."""
        try:
            await self.publish(subject, sealed)
        except ActorsError as exc:
            log.warning("message to %s lost: %r", subject, exc)

    async def send_error(self, reply: str, type_name: str, message: str, origin: str) -> None:
        """Send an error reply; never raises.

        ``origin`` is ``handler`` when user code raised, ``sdk`` when the framework refused.
        """
        await self.send(reply, seal_error(type_name, message[:4096], origin, self.codecs.default))

    async def dead_letter(
        self, to: str, data: bytes, headers: dict[str, str] | None, reason: str
    ) -> bool:
        """Keep a message nobody will handle on ``sdk.dlq.<to>.<tenant>``, with ``reason``.

        Returns whether it went out (a lost one is logged).
        """
        subject = dlq_subject(to, self.tenant)
        letter_headers = dead_letter_headers(headers, reason)
        try:
            if self.dead_letter_store is not None:
                await self.dead_letter_store.put(subject, data, letter_headers)
            else:
                await self.transport.publish(subject, data, headers=letter_headers)
        except ActorsError as exc:
            log.error("dead letter for %s lost: %r", to, exc)
            return False
        return True

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

            async def send(sealed: Sealed) -> None:
                await self.transport.publish(subject, sealed.data, headers=sealed.headers)

        else:
            store = self.durable("publish(..., durable=True)")

            async def send(sealed: Sealed) -> None:
                await store.append(
                    "events", self.tenant, self.durable_config, subject, sealed.data,
                    headers=sealed.headers,
                )  # fmt: skip

        await self.send_to_many(subject, EVENT_TEMPLATE, event, send)

    async def send_to_many(
        self,
        subject: str,
        template: str,
        body: object,
        send: Callable[[Sealed], Awaitable[T]],
        message_id: str | None = None,
    ) -> T:
        """Send a message with no single recipient (an event, a workflow step) by ``send``.

        Seals it (message id, the conversation's correlation id; compressed and sealed as
        the system's settings say) and makes the send span
        when telemetry is on. ``sdk.agent.to`` is ``-``: event types and workflow ids must
        not use up the bounded agent label of the metrics (the span's destination name
        carries them).
        """
        ctx = current_context.get()
        sealed = self.finish(
            seal(
                body,
                self.codecs.default,
                message_id=message_id if message_id is not None else new_message_id(),
                correlation_id=ctx.correlation_id if ctx is not None else None,
            )
        )
        tel = self.telemetry
        if tel is None:
            return await send(sealed)
        sender = ctx.actor if ctx is not None else self.client_id
        span = tel.start_send(
            subject, template, sender, "-", sealed.headers, len(sealed.data),
            sealed.message_id, sealed.correlation_id,
        )  # fmt: skip
        return await tel.traced(span, send(sealed))


_HOPS: set[asyncio.Task[None]] = set()  # tasks handing work to a task group, kept alive


async def _start_soon(
    group: anyio.abc.TaskGroup, work: Callable[[], Coroutine[Any, Any, Any]]
) -> None:
    with contextlib.suppress(RuntimeError):  # closing: nothing left to do it for
        group.start_soon(work)
