"""The actor cell: one supervised actor, its mailbox, and the workers that feed it.

Theory of operation:

* The cell outlives its instances. At spawn it subscribes the actor's inbox
  ``sdk.agent.*.<name>.<tenant>`` (queue group ``<name>``, so replicas share the load)
  and its event subjects into one bounded mailbox, makes the first instance, runs
  ``on_start``, then starts ``concurrency`` workers; ``spawn`` returns after that.
* Workers take messages one at a time (per worker) in mailbox order. A message that
  cannot be accepted (undecodable, unknown type, forged tenant, too large) is
  *rejected*: answered with a typed error if it was an ask, and dead-lettered.
* A handler that raises *crashes* the instance: the asker gets the error (a tell is
  dead-lettered with the reason), the worker stops taking messages, and the cell's
  supervisor decides (restart it, restart siblings, escalate). Messages that arrive
  meanwhile wait in the mailbox; a restart brings a fresh instance (``on_restart``)
  under the same name and subject.
* An ask's handler runs under the asker's deadline (``Sdk-Timeout-Ms``); past it the
  handler is cancelled and reported once (``overran``), not counted as a crash.
* Replies to recent asks are cached by ``Sdk-Message-Id``: a retried ask that was
  already answered gets the same reply again instead of a second execution.
* ``shutdown`` unsubscribes (what the server already sent still lands), lets the
  workers finish the queue until the grace deadline, then cancels them and
  dead-letters whatever is left; ``on_stop`` runs last. Nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, final

import anyio
import anyio.abc
import attrs

from motadata_actors._errors import (
    ActorsError,
    CodecError,
    ConfigError,
    MessageTooLarge,
    ReplayError,
    StreamError,
    TenantError,
    TransportClosed,
)
from motadata_actors.mailbox import (
    MESSAGE_ID,
    STREAM_WINDOW,
    TENANT_ID,
    TIMEOUT_MS,
    DurableMessage,
    Incoming,
    InProcessMessage,
    Mailbox,
    StartAt,
    Subscription,
    agent_inbox,
    dead_letter_headers,
    decode_body,
    dlq_subject,
    encode_body,
    message_id_time,
    message_size,
    received_headers,
    workflow_subject,
)
from motadata_actors.telemetry import get_logger, log_fields

from ._actor import Actor, Context, NotStreamed
from ._pubsub import Subscribe, feed_consumer
from ._ref import ActorRef
from ._runtime import (
    AGENT_TEMPLATE,
    EVENT_TEMPLATE,
    WORKFLOW_TEMPLATE,
    MailboxKind,
    Runtime,
    current_context,
    needs_durable,
    reason_line,
)
from ._stream import ReplyStream, parse_window

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ("ActorCell", "ActorStatistics")

log = get_logger("actors")

_SEEN = 4096  # message ids remembered per actor, twice over (replay and duplicate checks)
_REPLY_CACHE = 1024  # replies kept for retried asks


@final
@attrs.frozen(slots=True)
class ActorStatistics:
    """A snapshot of one running actor.

    Attributes:
        name: the actor's name.
        handled: messages its handler returned from.
        failed: messages its handler raised on (or overran the asker's deadline).
        rejected: messages refused before the handler (undecodable, unknown type,
            forged tenant), each dead-lettered.
        restarts: how many times a fresh instance took over.
        queued: messages waiting in its mailbox.
        capacity: the mailbox's bound.
        dropped: messages the NATS client dropped because the mailbox and the
            client's pending queue were full (a slow consumer).
        dead_lettered: messages this cell sent to the dead-letter subject.
        mailbox: ``core`` or ``durable``.
        streams: streaming replies being sent now.
        stream_outstanding: parts of those sent and not yet taken by their consumers
            (each stream's share is bounded by its window).
        path: where it sits in the supervision tree (``/workers/writer``): the name
            :meth:`ActorSystem.events` uses for it.
    """

    name: str
    handled: int
    failed: int
    rejected: int
    restarts: int
    queued: int
    capacity: int
    dropped: int
    dead_lettered: int
    mailbox: str = "core"
    streams: int = 0
    stream_outstanding: int = 0
    path: str = ""


def _without_reply(msg: Incoming) -> Incoming:
    """``msg`` as a message nobody waits on: events and workflow steps are never asks.

    A durable publish is a request whose reply subject is JetStream's acknowledgement
    inbox, and core subscribers of the subject see that reply subject too: answering it
    would race the acknowledgement (and the publisher would take the answer for it).
    """
    if type(msg) is InProcessMessage:
        return InProcessMessage(msg.subject, "", msg.data, msg.headers)
    msg.reply = ""  # type: ignore[misc]  # nats-py's Msg and DurableMessage are mutable
    return msg


class _Overran(Exception):
    """Internal: a streaming handler was cancelled at its asker's deadline."""


class _Closed(Exception):
    """Internal: a streaming handler was cancelled because its consumer closed the stream."""


class _Crash(Exception):
    """Internal: the instance crashed; the worker reports it to the supervisor."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


@final
class ActorCell:
    """One supervised actor: the part that survives restarts.

    The supervisor drives the life cycle (``halt``, ``revive``, ``shutdown``) from its
    own task; workers only handle messages and report crashes and exits to it.
    """

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        factory: Callable[[], Actor],
        supervisor: Supervisor,
        *,
        concurrency: int = 1,
        offload: bool = False,
        ref: ActorRef,
        mailbox: MailboxKind = "core",
    ) -> None:
        if type(concurrency) is not int or concurrency < 1:
            raise ConfigError(f"concurrency must be a whole number >= 1, not {concurrency!r}")
        self._rt = runtime
        self.name = name
        self.path: str = f"{supervisor.path}/{name}"
        self._factory = factory
        self.supervisor = supervisor
        self.concurrency = concurrency
        self.offload = offload
        self.ref = ref
        self.mailbox_kind = mailbox
        self.generation = 0
        self._mailbox: Mailbox[Incoming] = Mailbox(runtime.mailbox_capacity)
        self._subs: list[Subscription] = []
        self._instance: Actor | None = None
        self._sync_handler = False
        self._running = anyio.Event()  # set while workers may take messages
        self._in_flight = 0  # handlers running now
        self._idle_waiter: anyio.Event | None = None  # set when _in_flight drops to 0
        self._workers_left = 0
        self._workers_done = anyio.Event()
        self._handling: set[asyncio.Task[Any]] = set()  # workers inside a handler
        self._stopping = False
        self._expired = False  # the shutdown grace ran out: refuse instead of handling
        # Message id -> hash of the body: drops a repeated core tell, refuses a known id
        # with another body. Two generations of plain dicts (the newest _SEEN ids at
        # least): O(1) per message, cheaper than an OrderedDict's move and pop.
        self._seen: dict[str, int] = {}
        self._seen_before: dict[str, int] = {}
        # Message id -> the reply sent: a retried ask is answered from here.
        self._replies: OrderedDict[str, tuple[bytes, dict[str, str]]] = OrderedDict()
        self._replay_window = runtime.replay_window
        self._streams: set[ReplyStream] = set()
        # Event subscriptions and followed workflows, made at start or at run time.
        self._feeds: dict[tuple[str, str, str | None, bool], Subscription] = {}
        self._feeds_lock = asyncio.Lock()
        self._agen_handler = False
        self.handled = 0
        self.failed = 0
        self.rejected = 0
        self.restarts = 0
        self.dead_lettered = 0

    def statistics(self) -> ActorStatistics:
        """Return a snapshot of the actor's counters."""
        box = self._mailbox.statistics()
        return ActorStatistics(
            self.name,
            self.handled,
            self.failed,
            self.rejected,
            self.restarts,
            box.queued,
            box.capacity,
            box.dropped,
            self.dead_lettered,
            self.mailbox_kind,
            len(self._streams),
            sum(stream.outstanding for stream in self._streams),
            self.path,
        )

    @property
    def alive(self) -> bool:
        """Whether an instance is in place (not crashed, halted or stopped)."""
        return self._instance is not None

    # -- life cycle (driven by the supervisor) ------------------------------------------

    def _new_instance(self) -> Actor:
        actor = self._factory()
        if not isinstance(actor, Actor):
            raise ConfigError(f"spawn needs an Actor subclass or factory, got {actor!r}")
        actor.name = self.name
        actor.ref = self.ref
        actor._sdk_cell = self
        handler = type(actor).on_message
        agen = inspect.isasyncgenfunction(handler)
        sync = not agen and not inspect.iscoroutinefunction(handler)
        if self.offload and not sync:
            raise ConfigError(
                "offload=True runs a synchronous on_message in a worker thread; "
                f"{type(actor).__name__}.on_message is async"
            )
        self._sync_handler = sync or agen  # not a plain coroutine: see _call
        self._agen_handler = agen
        return actor

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Subscribe, make the first instance, run ``on_start``, start the workers.

        Raises:
            Exception: whatever the factory or ``on_start`` raised (nothing stays subscribed).
        """
        rt = self._rt
        try:
            actor = self._new_instance()
            subjects = [] if self.mailbox_kind == "durable" else [agent_inbox(self.name, rt.tenant)]
            if self.mailbox_kind == "durable":
                durable = needs_durable(rt, f"actor {self.name!r}: mailbox='durable'")
                self._subs.append(
                    await durable.open_mailbox(rt.tenant, self.name, self._mailbox, rt.durable)
                )
            for subject in subjects:
                self._subs.append(
                    await rt.transport.subscribe(subject, queue=self.name, mailbox=self._mailbox)
                )
            for spec in type(actor).events:
                await self.subscribe(Subscribe.of(spec))
            await actor.on_start()
        except BaseException:
            await self._unsubscribe()
            raise
        self._instance = actor
        self._running.set()
        self._workers_left = self.concurrency
        for i in range(self.concurrency):
            task_group.start_soon(self._work, name=f"actor:{self.path}#{i}")
        rt.events.record("started", self.path)
        log.debug("actor %s started on %s", self.path, self._subs[0].subject)

    async def halt(self) -> None:
        """Stop taking messages, wait for running handlers, run ``on_stop``.

        Messages keep arriving and wait in the mailbox until :meth:`revive`.
        """
        self._pause()
        while self._in_flight:
            if self._idle_waiter is None:
                self._idle_waiter = anyio.Event()
            await self._idle_waiter.wait()
        await self._stop_instance()

    async def _stop_instance(self) -> None:
        actor, self._instance = self._instance, None
        if actor is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await actor.on_stop()
            except Exception:
                log.exception("actor %s: on_stop raised", self.path)

    async def revive(self, exc: BaseException | None, cause: str = "") -> None:
        """Make a fresh instance, run its ``on_restart(exc)``, resume taking messages.

        ``cause`` says why when ``exc`` is not this actor's own failure (a sibling's, say).

        Raises:
            Exception: whatever the factory or ``on_restart`` raised (a failed restart).
        """
        if self._stopping:
            return
        await self.halt()
        actor = self._new_instance()
        await actor.on_restart(exc)
        self._instance = actor
        self.generation += 1
        self.restarts += 1
        detail = reason_line(exc) if exc else cause or "exited"
        self._rt.events.record("restarted", self.path, detail)
        log.info("actor %s restarted%s", self.path, f" after {reason_line(exc)}" if exc else "")
        self._running.set()

    async def stop_accepting(self) -> None:
        """Unsubscribe: no new messages; what the server already sent still lands."""
        await self._unsubscribe()

    async def shutdown(self, deadline: float) -> None:
        """Stop for good.

        Unsubscribes, lets the workers finish the queue until ``deadline`` (loop time),
        cancels the handlers still running then (their messages are dead-lettered),
        dead-letters what is left, and runs ``on_stop``.
        """
        if self._stopping:
            await self._workers_done.wait()
            return
        self._stopping = True
        await self._unsubscribe()
        self._mailbox.close()
        self._running.set()  # a halted or crashed cell drains to dead letters
        if self._workers_left:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await self._workers_done.wait()
            self._expired = True
            for task in list(self._handling):
                task.cancel()
            await self._workers_done.wait()
        await self._dead_letter_rest("shutdown: the actor stopped before handling it")
        await self._stop_instance()
        self._rt.events.record("stopped", self.path)
        log.debug("actor %s stopped", self.path)

    async def _unsubscribe(self) -> None:
        subs, self._subs = [*self._subs, *self._feeds.values()], []
        self._feeds = {}
        for sub in subs:
            try:
                await sub.unsubscribe()
            except ActorsError as exc:
                log.debug("actor %s: unsubscribe %s: %r", self.path, sub.subject, exc)

    async def _dead_letter_rest(self, reason: str) -> None:
        box = self._mailbox
        while box.statistics().queued:
            try:
                msg = await box.receive()
            except StopAsyncIteration:
                break
            await self._refuse(msg, reason)

    # -- workers ------------------------------------------------------------------

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        handling = self._handling
        try:
            while True:
                try:
                    msg = await self._mailbox.receive()
                except StopAsyncIteration:
                    return
                if not self._running.is_set():
                    await self._running.wait()  # after a crash: until the restart (or shutdown)
                if self._instance is None or self._expired:
                    await self._refuse(msg, "shutdown: the actor stopped before handling it")
                    continue
                # No cancel scope per message (it costs more than the rest of dispatch):
                # shutdown cancels the worker task itself, and only while it is in here.
                handling.add(task)
                durable = msg if type(msg) is DurableMessage else None
                keep_alive = None
                try:
                    if durable is None:
                        await self._handle(msg)
                    elif not self._time_left(durable):
                        await self._expire(durable)
                    else:
                        keep_alive = asyncio.create_task(self._keep_alive(durable))
                        verdict = await self._handle(msg)
                        await self._settle(
                            durable, durable.ack if verdict == "ack" else durable.term
                        )
                except _Crash as crash:
                    if durable is not None:
                        await self._durable_failed(durable, crash.exc)
                    self._pause()  # take nothing until the supervisor acts
                    self._rt.events.record("crashed", self.path, reason_line(crash.exc))
                    self.supervisor.child_failed(self, crash.exc, self.generation)
                except asyncio.CancelledError:
                    if not self.grace_expired():
                        raise  # not ours: the system is being torn down
                    task.uncancel()
                    handling.discard(task)
                    await self._refuse(msg, "shutdown: handler cancelled at the grace deadline")
                finally:
                    if keep_alive is not None:
                        keep_alive.cancel()
                    handling.discard(task)
        finally:
            self._workers_left -= 1
            if self._workers_left <= 0:
                self._workers_done.set()

    def grace_expired(self) -> bool:
        """Whether shutdown's grace ran out (set while handlers may be running)."""
        return self._expired

    def _pause(self) -> None:
        # Replace the event only when set: a task waiting on an unset one must be woken
        # by the next set(), so that one stays in place.
        if self._running.is_set():
            self._running = anyio.Event()

    def _enter(self) -> None:
        self._in_flight += 1

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle_waiter is not None:
            self._idle_waiter.set()
            self._idle_waiter = None

    async def _handle(self, msg: Incoming) -> Literal["ack", "term"]:
        """Handle one message; return what a durable mailbox should do with it.

        ``ack``: handled (or answered from the reply cache); ``term``: refused and
        dead-lettered, or past its time. A crash raises :class:`_Crash`.
        """
        rt = self._rt
        if msg.reply and not msg.subject.startswith("sdk.agent."):
            msg = _without_reply(msg)
        try:
            headers = received_headers(msg.headers)
            if headers is not None:
                tenant = headers.get(TENANT_ID)
                if tenant is not None and tenant != rt.tenant:
                    raise TenantError(
                        f"Sdk-Tenant-Id {tenant!r} does not match the subject's tenant "
                        f"{rt.tenant!r}"
                    )
            size = message_size(msg.data, headers)
            if size > rt.max_size:
                raise MessageTooLarge(size, rt.max_size)
            if size - len(msg.data) > rt.max_header_size:
                raise MessageTooLarge(size - len(msg.data), rt.max_header_size, part="headers")
            message_id = headers.get(MESSAGE_ID) if headers is not None else None
            if message_id is not None and self._repeated(msg, message_id):
                return "ack"
            payload = decode_body(msg.data, headers, rt.codecs)
        except (CodecError, TenantError, ReplayError) as exc:
            await self._reject(msg, exc)
            return "term"
        except Exception as exc:  # a message class's own validator, say
            await self._reject(msg, CodecError(f"cannot build the message: {exc!r}"))
            return "term"
        if message_id is not None and msg.reply:
            cached = self._replies.get(message_id)
            if cached is not None:
                rt.events.record("duplicate", self.path, message_id)
                await self._publish_reply(msg.reply, *cached)
                return "ack"
        ctx = Context(rt, self.name, msg, headers, self.concurrency == 1)
        actor = self._instance
        assert actor is not None
        stream: ReplyStream | None = None
        if msg.reply and headers is not None and STREAM_WINDOW in headers:
            stream = await self._open_stream(msg.reply, headers[STREAM_WINDOW])
            if stream is None:
                return "term"
            ctx._stream = stream
        tel = rt.telemetry
        span: Any = None
        otel_token: object = None
        started = 0.0
        if tel is not None:
            template = (
                AGENT_TEMPLATE
                if msg.subject.startswith("sdk.agent.")
                else EVENT_TEMPLATE
                if msg.subject.startswith("sdk.events.")
                else WORKFLOW_TEMPLATE
            )
            span, otel_token, started = tel.start_process(
                headers, msg.subject, template, ctx.sender or "-", self.name, len(msg.data)
            )
        self._enter()
        token = current_context.set(ctx)
        log_token = log_fields.set((rt.tenant, self.name))
        error: BaseException | None = None
        try:
            if stream is not None:
                result = await self._call_streaming(actor, payload, ctx, stream, msg)
            elif ctx.deadline is None:
                result = await self._call(actor, payload, ctx)
            else:
                # A bare timer that cancels this task at the deadline: the same as
                # asyncio.timeout_at, at a third of its cost on this per-ask path.
                task = asyncio.current_task()
                assert task is not None
                expired: list[bool] = []

                def expire() -> None:
                    expired.append(True)
                    task.cancel()

                timer = asyncio.get_running_loop().call_at(ctx.deadline, expire)
                try:
                    result = await self._call(actor, payload, ctx)
                except asyncio.CancelledError:
                    if not expired or self.grace_expired():
                        raise
                    task.uncancel()
                    error = TimeoutError("the handler outlived the asker's deadline")
                    self.failed += 1
                    rt.events.record("overran", self.path, f"on {msg.subject}")
                    log.warning(
                        "actor %s: handler outlived the asker's deadline on %s; cancelled",
                        self.path, msg.subject,
                    )  # fmt: skip
                    if type(msg) is DurableMessage:
                        await self.dead_letter(msg, "the handler outlived the asker's deadline")
                    return "term"
                finally:
                    timer.cancel()
        except _Closed:
            return "ack"  # the consumer closed the stream: the handler was cancelled
        except _Overran:
            error = TimeoutError("the streaming handler outlived the asker's deadline")
            self.failed += 1  # the asker times out by itself at the same deadline
            if type(msg) is DurableMessage:
                await self.dead_letter(msg, "the streaming handler outlived the asker's deadline")
            return "term"
        except NotStreamed as exc:
            await self._reject(msg, StreamError(str(exc)))
            return "term"
        except Exception as exc:
            error = exc
            self.failed += 1
            log.error("actor %s: handler raised on %s", self.path, msg.subject, exc_info=exc)
            if stream is not None:
                await stream.fail(type(exc).__name__, str(exc), "handler")
            elif type(msg) is DurableMessage:
                pass  # redelivered, or dead-lettered after its last delivery: see _work
            elif msg.reply:
                await self._send_error(msg.reply, type(exc).__name__, str(exc), "handler")
            else:
                await self._refuse(msg, f"handler crashed: {reason_line(exc)}")
            raise _Crash(exc) from exc
        else:
            self.handled += 1
            if stream is not None:
                await self._end_stream(stream, result)
            elif msg.reply:
                await self._send_reply(msg.reply, result, message_id)
        finally:
            if stream is not None:
                self._streams.discard(stream)
                await stream.close()
            log_fields.reset(log_token)
            current_context.reset(token)
            self._leave()
            if tel is not None:
                tel.end_process(span, otel_token, started, self.name, error)
        if ctx.stop_requested:
            self._pause()
            self.supervisor.child_exited(self, self.generation)
        return "ack"

    async def _call(self, actor: Actor, payload: Any, ctx: Context) -> Any:
        if not self._sync_handler:
            return await actor.on_message(payload, ctx)
        if self._agen_handler:
            parts = actor.on_message(payload, ctx)
            try:
                async for part in parts:
                    await ctx.stream(part)
            finally:
                await parts.aclose()
            return None
        if self.offload:
            return await anyio.to_thread.run_sync(actor.on_message, payload, ctx)
        return actor.on_message(payload, ctx)

    # -- events and workflows ---------------------------------------------------------

    async def subscribe(self, spec: Subscribe) -> bool:
        """Deliver ``spec``'s events into the mailbox; False if already subscribed so.

        Raises:
            ConfigError: a durable subscription without JetStream.
            ConnectionLost: the server cannot be reached.
            TransportClosed: the actor is stopping.
        """
        rt = self._rt
        group = spec.group(self.name)
        subject = spec.subject(rt.tenant)

        async def open_() -> Subscription:
            if not spec.durable:
                return await rt.transport.subscribe(subject, queue=group, mailbox=self._mailbox)
            durable = needs_durable(rt, f"actor {self.name!r}: a durable event subscription")
            assert group is not None  # Subscribe refuses broadcast with durable
            return await durable.open_feed(
                "events", rt.tenant, subject, feed_consumer("events", group, spec.event_type),
                self._mailbox, rt.durable, start=spec.start, ordered=spec.ordered,
                agent=self.name,
            )  # fmt: skip

        return await self._add_feed(("events", spec.event_type, group, spec.durable), open_)

    async def follow(self, workflow_id: str, start: StartAt) -> bool:
        """Deliver a workflow's steps into the mailbox, in order; False if already following.

        Raises:
            ConfigError: no JetStream.
            ConnectionLost: the server cannot be reached.
            TransportClosed: the actor is stopping.
        """
        rt = self._rt
        subject = workflow_subject(workflow_id, rt.tenant)
        durable = needs_durable(rt, f"actor {self.name!r}: following a workflow")

        async def open_() -> Subscription:
            return await durable.open_feed(
                "workflows", rt.tenant, subject, feed_consumer("wf", self.name, workflow_id),
                self._mailbox, rt.durable, start=start, ordered=True, agent=self.name,
            )  # fmt: skip

        return await self._add_feed(("workflow", workflow_id, self.name, True), open_)

    async def _add_feed(
        self, key: tuple[str, str, str | None, bool], open_: Callable[[], Awaitable[Subscription]]
    ) -> bool:
        # One at a time: two handlers subscribing alike must not both subscribe (one would
        # be unreachable by unsubscribe), and a subscription made while the actor stops
        # must not outlive it.
        async with self._feeds_lock:
            self._check_not_stopping()
            if key in self._feeds:
                return False
            sub = await open_()
            try:
                self._check_not_stopping()  # shutdown may have begun meanwhile
            except TransportClosed:
                await sub.unsubscribe()
                raise
            self._feeds[key] = sub
        log.debug("actor %s: subscribed to %s", self.path, sub.subject)
        return True

    def _check_not_stopping(self) -> None:
        if self._stopping:
            raise TransportClosed(f"actor {self.path} is stopping: no new subscriptions")

    async def unsubscribe(self, kind: str, name: str) -> int:
        """Stop this actor's subscriptions of ``kind`` to ``name``; return how many."""
        async with self._feeds_lock:
            keys = [k for k in self._feeds if k[0] == kind and k[1] == name]
            subs = [self._feeds.pop(key) for key in keys]
        for sub in subs:
            try:
                await sub.unsubscribe()
            except ActorsError as exc:
                log.debug("actor %s: unsubscribe %s: %r", self.path, sub.subject, exc)
        return len(subs)

    # -- streaming replies ------------------------------------------------------------

    async def _open_stream(self, reply: str, window_text: str) -> ReplyStream | None:
        """Start the producing end of a streaming ask; None when it was refused."""
        rt = self._rt
        window, window_bytes = parse_window(window_text, rt.stream_window, rt.stream_window_bytes)
        task = asyncio.current_task()
        assert task is not None
        stream = ReplyStream(rt, reply, window, window_bytes, task)
        try:
            await stream.open()
        except ActorsError as exc:
            log.warning("actor %s: cannot open a streaming reply: %r", self.path, exc)
            await self._send_error(reply, type(exc).__name__, f"stream not opened: {exc}", "sdk")
            await stream.close()
            return None
        self._streams.add(stream)
        return stream

    async def _call_streaming(
        self, actor: Actor, payload: Any, ctx: Context, stream: ReplyStream, msg: Incoming
    ) -> Any:
        """Run a handler that streams, under its deadline; cancellable by the consumer.

        Raises:
            _Overran: cancelled at the deadline.
            _Closed: cancelled because the consumer closed the stream (or is gone).
        """
        stream.running = True
        deadline = ctx.deadline
        timer = None
        expired: list[bool] = []
        task = stream.task
        if deadline is not None:

            def expire() -> None:
                if stream.cancel_handler():  # not if the consumer's cancel came first
                    expired.append(True)

            timer = asyncio.get_running_loop().call_at(deadline, expire)
        try:
            return await self._call(actor, payload, ctx)
        except asyncio.CancelledError:
            if self.grace_expired() or not (expired or stream.cancelled):
                raise  # not ours: the system is being torn down
            task.uncancel()
            if expired:
                self._rt.events.record("overran", self.path, f"stream on {msg.subject}")
                log.warning("actor %s: streaming handler outlived the asker's deadline; "
                            "cancelled", self.path)  # fmt: skip
                raise _Overran from None
            self._rt.events.record("cancelled", self.path, "stream closed by its consumer "
                                   f"after {stream.sent} part(s)")  # fmt: skip
            raise _Closed from None
        finally:
            stream.running = False  # no await before this: a late cancel cannot land
            if timer is not None:
                timer.cancel()

    async def _end_stream(self, stream: ReplyStream, result: object) -> None:
        try:
            await stream.end(result, result is not None)
        except CodecError as exc:
            log.error("actor %s: cannot send the end of its stream: %s", self.path, exc)
            await stream.fail(type(exc).__name__, f"final part not sent: {exc}", "sdk")
        except ActorsError as exc:
            log.warning("actor %s: end of stream lost: %r", self.path, exc)

    # -- replies and dead letters -----------------------------------------------------

    def _repeated(self, msg: Incoming, message_id: str) -> bool:
        """Whether ``msg`` repeats a core tell already handled (drop it), remembering it.

        Raises:
            ReplayError: the id is known with another body, or was made longer before
                sending than the replay window.
        """
        digest = hash(msg.data)
        seen = self._seen.get(message_id)
        if seen is None:
            seen = self._seen_before.get(message_id)
        if seen is not None:
            if seen != digest:
                raise ReplayError(f"message id {message_id!r} was seen before with another body")
            if msg.reply or type(msg) is DurableMessage:
                return False  # a retried ask (answered from the cache), or a redelivery
            self._rt.events.record("duplicate", self.path, message_id)
            return True
        born = message_id_time(message_id)
        if born is not None:
            durable = type(msg) is DurableMessage
            age = (msg.stored_at if durable else time.time()) - born  # type: ignore[attr-defined]
            if age > self._replay_window:
                raise ReplayError(
                    f"message id {message_id!r} was made {age:.0f}s before the message was "
                    f"sent: outside the replay window ({self._replay_window:g}s, "
                    "SDK_REPLAY_WINDOW)"
                )
        seen_now = self._seen
        if len(seen_now) >= _SEEN:
            self._seen_before = seen_now
            seen_now = self._seen = {}
        seen_now[message_id] = digest
        return False

    async def _send_reply(self, reply: str, result: object, message_id: str | None) -> None:
        rt = self._rt
        # No Sdk-Message-Id on replies: the reply subject already ties a reply to its ask,
        # and every header costs both ends about a microsecond in nats-py.
        headers: dict[str, str] = {}
        try:
            data = encode_body(result, rt.codecs.default, headers)
        except CodecError as exc:
            log.error("actor %s: cannot send its reply: %s", self.path, exc)
            await self._send_error(reply, type(exc).__name__, f"reply not sent: {exc}", "sdk")
            return
        tel = rt.telemetry
        span = tel.start_reply(reply, self.name, headers, len(data)) if tel is not None else None
        if message_id is not None:
            self._replies[message_id] = (data, headers)
            if len(self._replies) > _REPLY_CACHE:
                self._replies.popitem(last=False)
        try:
            await self._publish_reply(reply, data, headers)
        finally:
            if span is not None:
                span.end()

    async def _publish_reply(self, reply: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            await self._rt.transport.publish(reply, data, headers=headers)
        except MessageTooLarge as exc:
            await self._send_error(reply, type(exc).__name__, f"reply not sent: {exc}", "sdk")
        except ActorsError as exc:
            log.warning("actor %s: reply lost: %r", self.path, exc)

    async def _send_error(self, reply: str, type_name: str, message: str, origin: str) -> None:
        await self._rt.send_error(reply, type_name, message, origin)

    async def _reject(self, msg: Incoming, exc: ActorsError) -> None:
        self.rejected += 1
        reason = reason_line(exc)
        log.warning("actor %s rejected a message on %s: %s", self.path, msg.subject, reason)
        if msg.reply:
            await self._send_error(msg.reply, type(exc).__name__, str(exc), "sdk")
        await self.dead_letter(msg, reason)

    async def _refuse(self, msg: Incoming, reason: str) -> None:
        """Dead-letter a message nobody will handle; an asker is told at once.

        A durable message is instead released for redelivery (to another replica, or to
        this actor once it is back), and its asker keeps waiting.
        """
        if type(msg) is DurableMessage:
            await self._settle(msg, msg.nak)
            return
        if msg.reply:
            await self._send_error(msg.reply, "ActorsError", reason, "sdk")
        await self.dead_letter(msg, reason)

    async def _durable_failed(self, msg: DurableMessage, exc: BaseException) -> None:
        """Redeliver after a backoff, or, after the last delivery, dead-letter and drop it.

        A streaming ask is never redelivered: its asker already got the error and left.
        """
        if msg.reply and msg.headers is not None and STREAM_WINDOW in msg.headers:
            await self.dead_letter(msg, f"streaming handler failed: {reason_line(exc)}")
            await self._settle(msg, msg.term)
            return
        if not msg.last_delivery:
            delay = self._rt.durable.redelivery_delay(msg.delivered)
            await self._settle(msg, lambda: msg.nak(delay))
            return
        reason = f"handler failed on its last delivery ({msg.delivered}): {reason_line(exc)}"
        if msg.reply:
            await self._send_error(msg.reply, type(exc).__name__, str(exc), "handler")
        await self.dead_letter(msg, reason)
        await self._settle(msg, msg.term)

    @staticmethod
    def _time_left(msg: DurableMessage) -> bool:
        """Mark ``msg`` taken; put the time its asker has left in ``Sdk-Timeout-Ms``.

        Returns False when none is left (reckoned now, as it is taken, not when it was
        pulled into the mailbox).
        """
        msg.started = True
        if msg.deadline is None or msg.headers is None:
            return True
        left = msg.deadline - time.time()
        if left <= 0:
            return False
        msg.headers[TIMEOUT_MS] = str(max(1, int(left * 1000)))
        return True

    async def _expire(self, msg: DurableMessage) -> None:
        """Dead-letter a stored request whose asker's time ran out before it was handled."""
        await self.dead_letter(msg, "expired: the ask's Sdk-Timeout-Ms ran out before handling")
        await self._settle(msg, msg.term)

    async def _settle(self, msg: DurableMessage, verdict: Callable[[], Awaitable[None]]) -> None:
        """Ack, nak or term ``msg``; a lost verdict only means a redelivery later."""
        msg.started = True  # settled: the mailbox stops keeping it
        try:
            await verdict()
        except ActorsError as exc:
            log.warning("actor %s: %r not settled (it will come again): %r", self.path, msg, exc)

    async def _keep_alive(self, msg: DurableMessage) -> None:
        """Tell JetStream, every half ack-wait, that a long handler is still at work."""
        interval = self._rt.durable.ack_wait / 2
        while True:
            await asyncio.sleep(interval)
            try:
                await msg.in_progress()
            except ActorsError as exc:
                log.debug("actor %s: in-progress ack for %r lost: %r", self.path, msg, exc)

    async def dead_letter(self, msg: Incoming, reason: str) -> None:
        """Publish ``msg`` (headers plus ``Sdk-Dead-Reason``) to ``sdk.dlq.<to>.<tenant>``."""
        rt = self._rt
        headers = dead_letter_headers(msg.headers, reason)
        try:
            await rt.transport.publish(dlq_subject(self.name, rt.tenant), msg.data, headers=headers)
        except ActorsError as exc:
            log.error("actor %s: dead letter lost: %r", self.path, exc)
            return
        self.dead_lettered += 1
        rt.events.record("dead_letter", self.path, reason)
