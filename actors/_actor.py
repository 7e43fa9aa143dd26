"""Actor, the class agent code subclasses, and Context, what a handler knows of its message."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

from motadata_actors._errors import ConfigError, StreamError, SubjectError
from motadata_actors.mailbox import DurableMessage, StartAt, Subject, parse_subject
from motadata_actors.mailbox._envelope import JSON_CONTENT_TYPE, Letter
from motadata_actors.mailbox._subjects import RESERVED_EVENT_PREFIX

from ._pubsub import Subscribe, Workflow, check_start
from ._ref import ActorRef
from ._runtime import MailboxKind, Runtime
from ._status_events import report_progress
from ._streaming import ReplyStream

if TYPE_CHECKING:
    from motadata_actors.mailbox._reminders import ReminderInfo

    from ._cell import ActorCell
    from ._reminders import Timers
    from ._state import StateSlot

__all__ = ("Actor", "Context", "NotStreamed")


class NotStreamed(StreamError):
    """Internal: a handler streamed to a plain ask; refused without crashing the actor."""


class Actor:
    """Base class of agents: subclass it and override :meth:`on_message`.

    One instance handles one message at a time, in arrival order per sender.
    The system sets :attr:`name` and :attr:`ref` before :meth:`on_start` runs.

    Class attributes:
        events: event types (``sdk.events.<type>.<tenant>``) this actor receives in
            its mailbox, like any message: each a type name (``"*"``: every event of the
            tenant) or a :class:`Subscribe` for a queue group, broadcast, or a durable,
            replayable subscription. :meth:`subscribe` adds more at run time.
        state: not defined here. Define it on a subclass (the initial value: a
            ``@message`` instance or any value of the value model) and every instance
            starts with a copy of it or with what was saved before, and ``self.state`` is
            saved after each handled message that changed it (before the reply), in the
            tenant's key-value bucket: see :mod:`docs/stateful-agents.md` and
            :class:`~motadata_actors.StateConflict`.
        claimed_bodies: ``"value"`` (the default): a body that travelled through the
            object store (``SDK_CLAIM_ABOVE``) is fetched and decoded before the handler
            runs, which receives the value; ``"reader"``: the handler receives a
            :class:`~motadata_actors.actors.BodyReader` and reads it when and how it
            chooses (in chunks, never all in memory).

    Example::

        class Planner(Actor):
            async def on_message(self, msg, ctx):
                if isinstance(msg, Plan):
                    return f"{msg.steps} steps to {msg.goal}"
    """

    events: ClassVar[tuple[str | Subscribe, ...]] = ()
    claimed_bodies: ClassVar[Literal["value", "reader"]] = "value"

    name: str
    """The actor's name, the ``<to>`` token of its subject."""

    ref: ActorRef
    """This actor's own address."""

    key: str | None = None
    """The key of a keyed agent (``spawn_keyed``): one instance per key; None otherwise."""

    _sdk_cell: ActorCell  # set by the system with name and ref
    _sdk_state: StateSlot | None = None  # where its state is kept, when it declares one
    _sdk_timers: Timers | None = None  # its timers, made by the first start_timer

    def _cell(self) -> ActorCell:
        try:
            return self._sdk_cell
        except AttributeError:
            raise ConfigError(
                "subscriptions belong to a running actor: call this from on_start or a "
                "handler, after spawn"
            ) from None

    async def subscribe(self, events: str | Subscribe) -> None:
        """Receive ``events`` in this actor's mailbox from now on (idempotent).

        A bare string is an event type (``"*"``: all the tenant's events), shared by the
        actor's replicas; pass a :class:`Subscribe` for the other options. The
        subscription lasts until :meth:`unsubscribe` or the actor stops, across restarts.

        Raises:
            SubjectError: the event type is not one subject token.
            ConfigError: a durable subscription without JetStream.
            ConnectionLost: the server cannot be reached.
        """
        await self._cell().feeds.subscribe(Subscribe.of(events))

    async def unsubscribe(self, event_type: str) -> None:
        """Stop receiving ``event_type`` (every subscription of this actor to it).

        A durable subscription's consumer stays on the server, so subscribing again
        goes on from where it stopped.
        """
        await self._cell().feeds.remove("events", event_type)

    async def follow(self, workflow_id: str, *, start: StartAt = "all") -> None:
        """Receive the steps of workflow ``workflow_id`` in this actor's mailbox, in order.

        Steps come one at a time, in the order the workflow's stream stored them; each is
        acknowledged when the handler returns (a failure redelivers it, and nothing after
        it comes first). Following again after :meth:`unfollow` goes on from there.
        ``start`` applies the first time (``"all"``: from the first step).

        Raises:
            SubjectError: ``workflow_id`` is not one subject token.
            ConfigError: no JetStream (in process, say), or ``start`` is not "all", "new",
                a stream sequence or an aware datetime.
            ConnectionLost: the server cannot be reached.
        """
        await self._cell().feeds.follow(workflow_id, check_start(start))

    async def unfollow(self, workflow_id: str) -> None:
        """Stop receiving the workflow's steps (its position is kept for a day)."""
        await self._cell().feeds.remove("workflow", workflow_id)

    async def save_state(self) -> bool:
        """Save ``self.state`` now if it changed (it is also saved after each message).

        Returns whether it was written. For a long handler that wants its progress kept.

        Raises:
            ConfigError: the class declares no ``state``.
            StateConflict: another instance wrote it since (this one is stale).
        """
        slot = self._sdk_state
        if slot is None:
            raise ConfigError(
                f"{type(self).__name__} keeps no state: give the class a state attribute "
                "(its initial value)"
            )
        return await slot.save(self)

    def start_timer(self, name: str, delay: float, msg: object, *, repeat: bool = False) -> None:
        """Tell this agent ``msg`` after ``delay`` seconds (every ``delay`` with ``repeat``).

        In memory, on the system's clock: the message arrives through the mailbox like
        any other. Starting a timer under a running one's name replaces it. Every timer
        is cancelled when this instance ends (stopped, crashed, deactivated); use
        :meth:`remind` for what must survive that.

        Raises:
            ConfigError: a negative delay, or a repeating one of 0.
        """
        from ._reminders import Timers

        cell = self._cell()
        if self._sdk_timers is None:
            self._sdk_timers = Timers(cell.rt)
        ref, rt = self.ref, cell.rt
        self._sdk_timers.start(name, delay, lambda: rt.run_soon(lambda: ref.tell(msg)), repeat)

    def cancel_timer(self, name: str) -> bool:
        """Cancel timer ``name``; whether it was running."""
        return self._sdk_timers is not None and self._sdk_timers.cancel(name)

    async def remind(
        self,
        name: str,
        payload: object = None,
        *,
        after: float | None = None,
        at: datetime.datetime | None = None,
        every: float | None = None,
    ) -> None:
        """Have the server send this agent a :class:`~motadata_actors.Reminder` later.

        Durable: kept by the server (NATS: a JetStream message schedule), it survives
        this process and wakes a deactivated keyed agent; it fires at least once (once
        handled it is acknowledged; a failure brings it again). Give exactly one of
        ``after`` (seconds), ``at`` (an aware datetime) or ``every`` (whole seconds >= 1,
        periodic until cancelled). A reminder set again under its name replaces it.

        Args:
            name: its name (``[A-Za-z0-9_=-]``), unique per agent.
            payload: a value the reminder carries (``Reminder.payload``).
            after: fire once, this many seconds from now.
            at: fire once, at this time.
            every: fire every this many whole seconds.

        Raises:
            ConfigError: not exactly one of after, at and every, or bad values.
            SubjectError: a bad name.
            EncodeError: the payload cannot be encoded.
            ConnectionLost: the server cannot be reached.
        """
        from motadata_actors.mailbox._envelope import seal_reminder
        from motadata_actors.mailbox._reminders import fired_subject, schedule_text

        from ._reminders import reminder_service, reminder_store

        rt = self._cell().rt
        schedule = schedule_text(after=after, at=at, every=every)
        await reminder_service(rt)
        sealed = seal_reminder(payload, rt.codecs.default, schedule, fired_subject(rt.tenant))
        await reminder_store(rt).schedule(rt.tenant, self.name, name, sealed)

    async def reminders(self) -> list[ReminderInfo]:
        """The reminders of this agent still to fire: name and schedule."""
        from ._reminders import reminder_store

        rt = self._cell().rt
        return await reminder_store(rt).list(rt.tenant, self.name)

    async def cancel_reminder(self, name: str) -> bool:
        """Cancel reminder ``name``; whether there was one."""
        from ._reminders import reminder_store

        rt = self._cell().rt
        return await reminder_store(rt).cancel(rt.tenant, self.name, name)

    async def watch(self, target: ActorRef) -> None:
        """Receive a :class:`~motadata_actors.Terminated` when ``target`` ends.

        Once per watch (watch again to go on): when it stops, when a keyed instance
        crashes or stops itself (not when idle deactivation ends it: it comes back on
        demand), or when its process dies (seen within about half a lease).
        """
        from ._watch import watch_service

        await (await watch_service(self._cell().rt)).watch(self.ref, target.address)

    async def unwatch(self, target: ActorRef) -> bool:
        """Stop watching ``target``; whether this agent watched it."""
        watches = self._cell().rt.watches
        return watches is not None and await watches.unwatch(self.ref, target.address)

    async def on_start(self) -> None:
        """Run once before the first message. Raising here makes ``spawn`` fail."""

    def on_message(self, msg: Any, ctx: Context) -> Any:
        """Handle one message; the return value is the reply when it was an ask.

        Override it as ``async def`` (the usual case), as a plain ``def`` (run in a
        worker thread with ``spawn(..., offload=True)``), or as an async generator whose
        every ``yield`` is one part of a streaming reply (see :meth:`Context.stream` and
        :meth:`ActorRef.ask_stream`).

        An exception is logged, and for an ask travels back to the asker as a
        :class:`~motadata_actors.RemoteError`; the supervisor then decides what happens
        to the actor (restart it, by default).
        """
        return None

    async def on_stop(self) -> None:
        """Run when this instance ends: the actor stops, or crashed and is being replaced."""

    async def on_restart(self, exc: BaseException | None) -> None:
        """Run on a fresh instance that replaces a crashed (or exited) one.

        ``exc`` is what the old instance raised (None after a normal exit). The default
        runs :meth:`on_start`. Raising here is a failed restart, handled like a crash.
        """
        await self.on_start()


@final
class Context:
    """What a handler knows about the message it is handling, and how to talk back.

    Made by the system for each message; valid while the handler runs.
    """

    __slots__ = (
        "_alone",
        "_deadline",
        "_letter",
        "_rt",
        "_stream",
        "_subject",
        "actor",
        "stop_requested",
    )

    def __init__(
        self,
        runtime: Runtime,
        actor: str,
        letter: Letter,
        deadline: float | None,
        alone: bool = False,
    ) -> None:
        self._rt = runtime
        self._alone = alone  # the actor handles one message at a time: it cannot ask itself
        self.actor = actor
        """The name of the actor handling the message."""
        self._letter = letter
        self._deadline = deadline
        self._stream: ReplyStream | None = None
        self._subject: Subject | None = None
        self.stop_requested = False
        """Whether the handler asked the actor to stop after this message."""

    @property
    def subject(self) -> str:
        """The subject the message arrived on."""
        return self._letter.subject

    def _parsed(self) -> Subject | None:
        if self._subject is None:
            try:
                self._subject = parse_subject(self._letter.subject)
            except SubjectError:  # not one of ours (a foreign wildcard subscription's)
                return None
        return self._subject

    @property
    def sender(self) -> str | None:
        """The sending agent's name (the ``<from>`` token), None for events and steps."""
        parsed = self._parsed()
        return parsed.sender if parsed is not None else None

    @property
    def event_type(self) -> str | None:
        """The event type when the message is an event, else None.

        A status event's is ``sdk~lifecycle`` or ``sdk~progress``.
        """
        parsed = self._parsed()
        if parsed is None:
            return None
        if parsed.kind == "events":
            return parsed.target
        return f"{RESERVED_EVENT_PREFIX}{parsed.target}" if parsed.kind == "status" else None

    @property
    def workflow_id(self) -> str | None:
        """The workflow's id when the message is a step of a followed workflow, else None."""
        parsed = self._parsed()
        return parsed.target if parsed is not None and parsed.kind == "workflow" else None

    @property
    def attempt(self) -> int:
        """Which delivery this is, from 1.

        JetStream's count for a kept message (a redelivery after a failure or a crash is 2
        and up), ``Sdk-Attempt`` for a retried core ask.
        """
        message = self._letter.message
        if type(message) is DurableMessage:
            return message.delivered
        return self._letter.attempt

    @property
    def sequence(self) -> int | None:
        """The stream sequence of a kept message (durable event, step, durable mailbox)."""
        message = self._letter.message
        return message.stream_seq if type(message) is DurableMessage else None

    @property
    def headers(self) -> dict[str, str]:
        """The message's headers, names in their canonical case (read-only by convention)."""
        return self._letter.headers

    @property
    def content_type(self) -> str:
        """The body's codec as a media type (``application/json`` when none was sent)."""
        return self._letter.content_type or JSON_CONTENT_TYPE

    @property
    def message_id(self) -> str | None:
        """``Sdk-Message-Id``, when the sender set one.

        Every ask, event, workflow step and durable tell has one; a core tell has none
        unless its sender seals its bodies (it is never resent, so an id would identify
        nothing).
        """
        return self._letter.message_id

    @property
    def correlation_id(self) -> str:
        """The conversation this message belongs to; messages sent from here carry it on.

        The sender's conversation, else this message's id; ``""`` for a core tell sent
        from outside any handler (it starts no conversation: it has no id).
        """
        letter = self._letter
        return letter.correlation_id or letter.message_id or ""

    @property
    def is_ask(self) -> bool:
        """Whether the sender waits for a reply."""
        return bool(self._letter.reply)

    @property
    def deadline(self) -> float | None:
        """When the asker stops waiting, on the system's clock; None for tells.

        The clock is the event loop's time unless the system was given another one (a
        :class:`ManualClock` in tests: then deadlines are virtual too).
        """
        return self._deadline

    def time_left(self) -> float | None:
        """Seconds until :attr:`deadline` (negative once passed), None without a deadline."""
        if self._deadline is None:
            return None
        return self._deadline - self._rt.clock.now()

    def stop(self) -> None:
        """Stop this actor once the handler returns (a normal exit, not a crash).

        Its supervisor restarts a ``permanent`` child and removes a ``transient`` or
        ``temporary`` one; messages still queued are dead-lettered.
        """
        self.stop_requested = True

    @property
    def is_stream(self) -> bool:
        """Whether the asker reads a streaming reply (:meth:`ActorRef.ask_stream`)."""
        return self._stream is not None

    async def stream(self, part: object) -> None:
        """Send ``part`` of a streaming reply, waiting while the consumer is a window behind.

        The handler's return value (when not None) comes after the parts, as the last
        one. To a tell the parts go nowhere (nobody reads them) and this returns at once.

        Raises:
            StreamError: the message is a plain ask, which takes one reply: the asker
                should use ``ask_stream``.
            EncodeError: ``part`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``part`` exceeds the size limit (nothing was sent).
        """
        stream = self._stream
        if stream is not None:
            await stream.send(part)
        elif self._letter.reply:
            raise NotStreamed(
                "the handler streams its reply, but this ask takes one reply: ask it with "
                "ref.ask_stream(...)"
            )

    async def progress(
        self, value: object = None, *, done: float | None = None, total: float | None = None
    ) -> None:
        """Report how far the handler got, live, while it still runs.

        The report (a :class:`~motadata_actors.actors.Progress`: this agent, ``value``,
        ``done`` of ``total``, this message's correlation id) goes to the asker when it
        asked for it (``ask(..., on_progress=...)``), before the reply, and to whoever
        follows the tenant's status events (``sdk.status.progress.<tenant>``:
        :meth:`ActorSystem.follow_status`, actors subscribed to ``"sdk~progress"``, the
        CLI's ``status --follow``) unless ``SDK_STATUS_EVENTS=false``.

        Best effort, and it never waits for a follower: a report lost on the way is
        logged, not raised. With nobody asking and status events off it does nothing.

        Example::

            for i, chunk in enumerate(chunks, 1):
                await summarize(chunk)
                await ctx.progress(f"chunk {i}", done=i, total=len(chunks))

        Raises:
            ConfigError: ``done`` or ``total`` is not a finite number >= 0.
            EncodeError: ``value`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``value`` exceeds the size limit (nothing was sent).
        """
        await report_progress(self._rt, self, self._letter.progress_to, value, done, total)

    def ref(self, name: str, *, mailbox: MailboxKind = "core", key: str | None = None) -> ActorRef:
        """Return a ref to the actor called ``name`` in the same tenant.

        ``mailbox="durable"`` for an agent spawned with a durable mailbox: tells and asks
        to it are then stored by JetStream before they count as sent. ``key`` for the
        instance of keyed kind ``name`` for that key.
        """
        return ActorRef(self._rt, name, mailbox=mailbox, key=key)

    async def publish(
        self, event: object, *, event_type: str | None = None, durable: bool = False
    ) -> None:
        """Publish an event on ``sdk.events.<event_type>.<tenant>``.

        The event type defaults to the typed event's wire name with ``.`` as ``_``. A
        core event (the default) is not acknowledged: it reaches the subscribers of the
        moment, at most once. A ``durable`` one returns once the tenant's events stream
        stored it: durable subscribers get it at least once, also those that start later.
        (Once that stream exists it keeps core events too: it captures the subject.)

        Raises:
            SubjectError: no event type (an untyped event), or not one subject token.
            EncodeError: ``event`` cannot be encoded.
            ConfigError: ``durable`` without JetStream.
            ConnectionLost: the server cannot be reached (durable: no acknowledgement).
        """
        await self._rt.publish_event(event, event_type, durable=durable)

    def workflow(self, workflow_id: str) -> Workflow:
        """The workflow ``workflow_id`` of this tenant, to publish steps or read its history."""
        return Workflow(self._rt, workflow_id)
