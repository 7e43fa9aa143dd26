"""The actor cell: one supervised actor's life cycle and the workers that feed it.

Theory of operation:

* The cell outlives its instances. At spawn it subscribes the actor's inbox
  ``sdk.agent.*.<name>.<tenant>`` (queue group ``<name>``, so replicas share the load;
  a durable mailbox pulls from JetStream instead) and its feeds into one bounded mailbox,
  makes the first instance, runs ``on_start``, then starts ``concurrency`` workers;
  ``spawn`` returns after that.
* Workers take messages one at a time (per worker) in mailbox order and hand each to
  the dispatcher (:mod:`._dispatch`), which reports how handling ended. A durable
  message is then settled by the rules of :mod:`motadata_actors.mailbox._settlement`.
* A handler that raises *crashes* the instance: the worker stops taking messages and
  the cell's supervisor decides (restart it, restart siblings, escalate). Messages that
  arrive meanwhile wait in the mailbox; a restart brings a fresh instance
  (``on_restart``) under the same name and subject.
* ``shutdown`` unsubscribes (what the server already sent still lands), lets the
  workers finish the queue until the grace deadline, then cancels them and dead-letters
  whatever is left (durable messages are released for redelivery instead); ``on_stop``
  runs last. Nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.abc
import attrs

from motadata_actors._errors import ActorsError, ConfigError
from motadata_actors.mailbox import DurableMessage, Incoming, Mailbox, Subscription, agent_inbox
from motadata_actors.mailbox._envelope import claimed_name
from motadata_actors.mailbox._settlement import RELEASE, Verdict, settle
from motadata_actors.telemetry._logging import get_logger

from ._actor import Actor, Context
from ._dispatch import HANDLING_BOUNDS, Dispatcher, Result
from ._feeds import Feeds
from ._pubsub import Subscribe
from ._ref import ActorRef
from ._runtime import MailboxKind, Runtime, reason_line
from ._state import StateSlot, declares_state, state_store
from ._watch import notify_terminated

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ("ActorCell", "ActorStatistics")

log = get_logger("actors")

_SHUTDOWN = "shutdown: the actor stopped before handling it"


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
        keys: for a keyed agent kind, how many keys have an instance in this process.
        instances: for a keyed kind, ``(key, idle seconds, state bytes)`` of up to 20 of
            them, the most recently used first (``mailbox`` is then ``keyed``).
        handling_seconds: time spent handling messages, in all (handler and reply).
        handling_times: how many handlings took at most each bound of
            ``HANDLING_BOUNDS`` (seconds, in :mod:`._dispatch`) and above the previous
            one; the last count is of those above every bound.
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
    keys: int = 0
    instances: tuple[tuple[str, float, int], ...] = ()
    handling_seconds: float = 0.0
    handling_times: tuple[int, ...] = ()


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
        self.rt = runtime
        self.name = name
        self.path: str = f"{supervisor.path}/{name}"
        self._factory = factory
        self.supervisor = supervisor
        self.concurrency = concurrency
        self.one_at_a_time = concurrency == 1
        """Whether an instance handles one message at a time (so it cannot ask itself)."""
        self.offload = offload
        self.ref = ref
        self.mailbox_kind = mailbox
        self.generation = 0
        self._mailbox: Mailbox[Incoming] = Mailbox(runtime.mailbox_capacity)
        self._inbox: Subscription | None = None
        self.feeds = Feeds(runtime, name, self.path, self._mailbox)
        """The actor's event subscriptions and followed workflows."""
        self._dispatch = Dispatcher(self)
        self._instance: Actor | None = None
        self._sync_handler = False
        self._agen_handler = False
        self._running = anyio.Event()  # set while workers may take messages
        self._in_flight = 0  # handlers running now
        self._idle_waiter: anyio.Event | None = None  # set when _in_flight drops to 0
        self._workers_left = 0
        self._workers_done = anyio.Event()
        self._handling: set[asyncio.Task[Any]] = set()  # workers inside a handler
        self._stopping = False
        self._expired = False  # the shutdown grace ran out: refuse instead of handling
        self.handled = 0
        self.failed = 0
        self.rejected = 0
        self.restarts = 0
        self.dead_lettered = 0
        self.handling_seconds = 0.0
        self.handling_times = [0] * (len(HANDLING_BOUNDS) + 1)

    def statistics(self) -> ActorStatistics:
        """Return a snapshot of the actor's counters."""
        box = self._mailbox.statistics()
        streams = self._dispatch.streams
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
            len(streams),
            sum(stream.outstanding for stream in streams),
            self.path,
            self.keys(),
            handling_seconds=self.handling_seconds,
            handling_times=tuple(self.handling_times),
        )

    def keys(self) -> int:
        """Keys with an instance here (0: not a keyed kind)."""
        return 0

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
        self._sync_handler = sync or agen  # not a plain coroutine: see call
        self._agen_handler = agen
        return actor

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Subscribe, make the first instance, run ``on_start``, start the workers.

        Raises:
            Exception: whatever the factory or ``on_start`` raised (nothing stays subscribed).
        """
        rt = self.rt
        try:
            actor = self._new_instance()
            await self._load_state(actor)
            if self.mailbox_kind == "durable":
                durable = rt.durable(f"actor {self.name!r}: mailbox='durable'")
                self._inbox = await durable.open_mailbox(
                    rt.tenant, self.name, self._mailbox, rt.durable_config
                )
            else:
                self._inbox = await rt.transport.subscribe(
                    agent_inbox(self.name, rt.tenant), queue=self.name, mailbox=self._mailbox
                )
            for spec in type(actor).events:
                await self.feeds.subscribe(Subscribe.of(spec))
            await actor.on_start()
        except BaseException:
            await self._unsubscribe()
            raise
        self._instance = actor
        self._running.set()
        self._workers_left = self.concurrency
        for i in range(self.concurrency):
            task_group.start_soon(self._work, name=f"actor:{self.path}#{i}")
        rt.events.record("started", self.path, address=self.name)
        log.debug("actor %s started on %s", self.path, self._inbox.subject)

    async def _load_state(self, actor: Actor) -> None:
        """Give an actor that declares ``state`` what was saved (a restart finds it)."""
        if declares_state(type(actor)):
            store = await state_store(self.rt, f"actor {self.name!r}")
            slot = StateSlot(store, self.name, self.rt)
            await slot.load(actor)
            actor._sdk_state = slot

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
        if actor._sdk_timers is not None:
            actor._sdk_timers.cancel_all()
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
        await self._load_state(actor)
        await actor.on_restart(exc)
        self._instance = actor
        self.generation += 1
        self.restarts += 1
        detail = reason_line(exc) if exc else cause or "exited"
        self.rt.events.record("restarted", self.path, detail, address=self.name)
        log.info("actor %s restarted%s", self.path, f" after {reason_line(exc)}" if exc else "")
        self._running.set()

    async def stop_accepting(self) -> None:
        """Unsubscribe: no new messages; what the server already sent still lands."""
        await self._unsubscribe()

    async def shutdown(self, deadline: float) -> None:
        """Stop for good.

        Unsubscribes, lets the workers finish the queue until ``deadline`` (on the clock),
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
            with anyio.CancelScope() as grace:
                timer = self.rt.clock.call_at(deadline, grace.cancel)
                try:
                    await self._workers_done.wait()
                finally:
                    timer.cancel()
            self._expired = True
            for task in list(self._handling):
                task.cancel()
            await self._workers_done.wait()
        while self._mailbox.statistics().queued:
            try:
                msg = await self._mailbox.receive()
            except StopAsyncIteration:
                break
            await self._release(msg)
        await self._stop_instance()
        self.rt.events.record("stopped", self.path, address=self.name)
        await notify_terminated(self.rt, self.ref.address, "stopped")
        log.debug("actor %s stopped", self.path)

    async def _unsubscribe(self) -> None:
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            try:
                await inbox.unsubscribe()
            except ActorsError as exc:
                log.debug("actor %s: unsubscribe %s: %r", self.path, inbox.subject, exc)
        await self.feeds.close()

    # -- workers ------------------------------------------------------------------

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        handling = self._handling
        mailbox = self._mailbox
        try:
            while True:  # the loop inlined (no _next frame): the per-message path
                try:
                    msg = await mailbox.receive()
                except StopAsyncIteration:
                    return
                if not self._running.is_set():
                    await self._running.wait()  # after a crash: until the restart (or shutdown)
                actor = self._instance
                if actor is None or self._expired:
                    await self._release(msg)
                    continue
                # No cancel scope per message (it costs more than the rest of dispatch):
                # shutdown cancels the worker task itself, and only while it is in here.
                handling.add(task)
                durable = msg if type(msg) is DurableMessage else None
                try:
                    if durable is not None:
                        # Taken: no longer counts as waiting (the pull loop keeps it alive
                        # with in-progress acks until it is settled).
                        durable.started = True
                    result = await self._dispatch.handle(msg, actor)
                    if durable is not None:
                        await self._settle(durable, result)
                    if result.crash is not None:
                        self._pause()  # take nothing until the supervisor acts
                        self.rt.events.record(
                            "crashed", self.path, reason_line(result.crash),
                            address=self.name, trace_id=result.trace_id,
                        )  # fmt: skip
                        self.supervisor.child_failed(self, result.crash, self.generation)
                    elif result.stop:
                        self._pause()
                        self.supervisor.child_exited(self, self.generation)
                except asyncio.CancelledError:
                    if not self.grace_expired():
                        raise  # not ours: the system is being torn down
                    task.uncancel()
                    handling.discard(task)
                    await self._release(msg, "shutdown: handler cancelled at the grace deadline")
                finally:
                    handling.discard(task)
        finally:
            self._workers_left -= 1
            if self._workers_left <= 0:
                self._workers_done.set()

    async def _next(self) -> Incoming | None:
        """The next message once workers may take it (None: the mailbox closed)."""
        try:
            msg = await self._mailbox.receive()
        except StopAsyncIteration:
            return None
        if not self._running.is_set():
            await self._running.wait()  # after a crash: until the restart (or shutdown)
        return msg

    def grace_expired(self) -> bool:
        """Whether shutdown's grace ran out (set while handlers may be running)."""
        return self._expired

    def _pause(self) -> None:
        # Replace the event only when set: a task waiting on an unset one must be woken
        # by the next set(), so that one stays in place.
        if self._running.is_set():
            self._running = anyio.Event()

    def enter(self) -> None:
        """A handler starts (halt waits for every one to end)."""
        self._in_flight += 1

    def leave(self) -> None:
        """A handler ended."""
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle_waiter is not None:
            self._idle_waiter.set()
            self._idle_waiter = None

    def call(self, actor: Actor, payload: Any, ctx: Context) -> Awaitable[Any]:
        """Run the handler the way it is written (await the result).

        An ``async def`` handler's own coroutine is returned as it is (no frame more); an
        async generator's parts are streamed; a synchronous one runs in a worker thread with
        ``offload=True``, else right here.
        """
        if not self._sync_handler:
            return actor.on_message(payload, ctx)  # type: ignore[no-any-return]
        return self._call_other(actor, payload, ctx)

    async def _call_other(self, actor: Actor, payload: Any, ctx: Context) -> Any:
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

    # -- what nobody handles ------------------------------------------------------

    async def _release(self, msg: Incoming, reason: str = _SHUTDOWN) -> None:
        """A message nobody will handle here: released (durable) or dead-lettered.

        A durable message is released for redelivery (to another replica, or to this
        actor once it is back), and its asker keeps waiting; an asker of a core message is
        told at once.
        """
        if type(msg) is DurableMessage:
            await self._apply(msg, RELEASE)
            return
        if msg.reply:
            await self.rt.send_error(msg.reply, "ActorsError", reason, "sdk")
        await self.dead_letter(msg, reason)

    async def dead_letter(self, msg: Incoming, reason: str) -> None:
        """Dead-letter ``msg`` (headers plus the reason) to ``sdk.dlq.<name>.<tenant>``."""
        try:
            data = msg.data  # a value shared in process is encoded only now
        except ActorsError as exc:
            log.error("dead letter for %s lost: its body cannot be encoded: %r", self.name, exc)
            return
        if await self.rt.dead_letter(self.name, data, msg.headers, reason):
            self.dead_lettered += 1
            self.rt.events.record("dead_letter", self.path, reason)

    async def _settle(self, msg: DurableMessage, result: Result) -> None:
        crash = result.crash
        verdict = settle(
            result.outcome,
            self.rt.durable_config,
            delivered=msg.delivered,
            streaming=result.streaming,
            is_ask=bool(msg.reply),
            error=reason_line(crash) if crash is not None else "",
        )
        if verdict.tell_asker and crash is not None:
            await self.rt.send_error(msg.reply, type(crash).__name__, str(crash), "handler")
        if verdict.dead_reason is not None:
            await self.dead_letter(msg, verdict.dead_reason)
        await self._apply(msg, verdict)

    async def _apply(self, msg: DurableMessage, verdict: Verdict) -> None:
        """Ack, nak or term ``msg``; a lost verdict only means a redelivery later."""
        try:
            if verdict.action == "ack":
                await msg.ack()
                claims = self.rt.claims
                if claims is not None:
                    claim = claimed_name(msg.headers)
                    if claim is not None:  # its body in the object store: no longer needed
                        await claims.release(claim)
            elif verdict.action == "nak":
                await msg.nak(verdict.delay)
            else:
                await msg.term()
        except ActorsError as exc:
            log.warning("actor %s: %r not settled (it will come again): %r", self.path, msg, exc)
