"""ActorSystem: owns the transport (and the embedded nats-server) and the root supervisor."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, final

import anyio
import anyio.abc

from motadata_actors._errors import (
    CodecError,
    ConfigError,
    SubjectError,
    SupervisionError,
    TransportClosed,
)
from motadata_actors._settings import Settings
from motadata_actors.codecs import Codecs, KeyRing, TypeRegistry, default_registry
from motadata_actors.mailbox import (
    DeadLetter,
    InProcessTransport,
    KeepsDeadLetters,
    NatsServer,
    Observed,
    Transport,
    check_id,
    inbox_prefix,
    parse_subject,
)
from motadata_actors.mailbox._compress import require as require_zstd
from motadata_actors.telemetry import setup as setup_telemetry
from motadata_actors.telemetry._instrument import Telemetry
from motadata_actors.telemetry._logging import get_logger

from ._cell import ActorStatistics
from ._claims import Claims
from ._clock import Clock, SystemClock
from ._config import codec_limits, durable_config, nats_transport
from ._events import EventKind, EventLog, SupervisionEvent
from ._policy import AskPolicy
from ._pubsub import Workflow
from ._ref import ActorRef
from ._runtime import MailboxKind, Runtime
from ._schemas import SchemaRegistry
from ._signals import watch_signals
from ._status import describe_agents, gather_status, serve_status
from ._status_events import StatusFeed, StatusPublisher
from ._supervisor import Supervisor

__all__ = ("ActorSystem",)

log = get_logger("system")

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
_LAG_INTERVAL = 0.25
_SHARED_HEADROOM = 4096  # bytes of max_payload kept for the headers of a shared message
_LAG_WARN = 0.1


def _running(part: T | None) -> T:
    """``part`` of a running system, or the error that says the system does not run."""
    if part is None:
        raise TransportClosed("the actor system is not running: use `async with ActorSystem(...)`")
    return part


async def _shielded(close: Callable[[], Awaitable[None]]) -> None:
    """Run ``close`` to its end even when the exiting block was cancelled."""
    with anyio.CancelScope(shield=True):
        await close()


def _on_root(
    method: Callable[Concatenate[Supervisor, P], Awaitable[R]], summary: str
) -> Callable[Concatenate[ActorSystem, P], Awaitable[R]]:
    """A method of the system that does ``method`` on its root supervisor.

    One signature and one set of docs for both (``system.spawn`` is ``root.spawn``).
    """

    @functools.wraps(method)
    async def on_root(system: ActorSystem, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await method(system.root, *args, **kwargs)

    details = inspect.cleandoc(method.__doc__ or "")
    on_root.__doc__ = f"{summary} See :meth:`Supervisor.{method.__name__}`.\n\n{details}"
    return on_root


@final
class ActorSystem:
    """A tenant's actors, their supervision tree, their transport, and their lifetime.

    Use it as an async context manager. On entry it connects: to ``transport`` when
    given; else in-process when ``ENABLE_NATS=false``; else to ``NATS_URL``; else to
    an embedded nats-server it starts on a free loopback port (with JetStream in a
    temporary directory) and stops on exit. It also makes sure the tenant's dead
    letters are kept (a JetStream stream over ``sdk.dlq.*.<tenant>``, or a bounded
    list in process).

    On exit it shuts down gracefully: every actor stops taking new messages, handlers
    finish within ``SDK_SHUTDOWN_GRACE`` seconds, actors stop newest first, whatever
    is left is dead-lettered, then the connection drains and the embedded server
    stops, also when the block fails or is cancelled. If a failure escalates past the
    root supervisor, the block is cancelled and exit raises :class:`SupervisionError`.

    Args:
        tenant: the tenant id, the last token of every subject.
        transport: a transport to use instead of the one settings choose; the system
            starts and closes it.
        settings: settings to use instead of reading the environment.
        registry: the typed-message registry; the process-wide default when omitted.
        client_id: the ``<from>`` token of messages sent from outside any actor.
        clock: the time source for supervision and ask policies (a
            :class:`ManualClock` in tests).
        tracer_provider: an OpenTelemetry tracer provider; turns telemetry on.
        meter_provider: an OpenTelemetry meter provider; turns telemetry on. With
            ``ENABLE_OTEL=true`` and no providers, the global ones are used (built from
            ``OTEL_*`` by :func:`motadata_actors.telemetry.setup` if none was set).
        handle_signals: stop gracefully on SIGINT and SIGTERM (what Docker and Kubernetes
            send) while the system runs: the ``async with`` block is cancelled, handlers
            drain within ``SDK_SHUTDOWN_GRACE``, ``on_stop`` runs, leftovers are
            dead-lettered, then exit raises ``SystemExit(128 + signal)`` (130 for SIGINT,
            143 for SIGTERM): the program ends without a traceback, as a shell expects.
            Only where the signal's handler is still Python's default: a handler the
            program installed is left alone. A second signal acts at once.
        lease_time: seconds a process's lease on keyed agents lasts without renewal
            (``spawn_keyed``): after a crash its keys move elsewhere within about this
            long. One value for the whole tenant (its node bucket keeps it).
        keys: seal message bodies end to end with this key ring (AES-GCM; else the one
            ``SDK_SEAL_KEYS`` gives, if any): see :class:`~motadata_actors.codecs.KeyRing`.

    Example::

        async with ActorSystem(tenant="acme") as system:
            planner = await system.spawn(Planner, name="planner")
            print(await planner.ask(Plan(goal="ship"), timeout=2.0))
    """

    def __init__(
        self,
        tenant: str,
        *,
        transport: Transport | None = None,
        settings: Settings | None = None,
        registry: TypeRegistry | None = None,
        client_id: str = "client",
        clock: Clock | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        handle_signals: bool = True,
        lease_time: float = 10.0,
        keys: KeyRing | None = None,
    ) -> None:
        self.tenant = check_id(tenant, "tenant")
        self._client_id = check_id(client_id, "client_id")
        self._transport = transport
        self._settings = settings
        self._registry = registry if registry is not None else default_registry()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._events = EventLog(self._clock.now)
        self._rt: Runtime | None = None
        self._root: Supervisor | None = None
        self._server: NatsServer | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._grace = 10.0
        self._body: anyio.CancelScope | None = None
        self._handle_signals = handle_signals
        self._stop_signal: int | None = None
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        if not (isinstance(lease_time, (int, float)) and lease_time > 0):
            raise ConfigError(f"lease_time must be > 0 seconds, not {lease_time!r}")
        self._lease_time = float(lease_time)
        self._keys = keys
        self._feeds: set[StatusFeed] = set()

    @property
    def transport(self) -> Transport:
        """The transport in use (after entry)."""
        return self._runtime.transport

    @property
    def codecs(self) -> Codecs:
        """The codecs in use (after entry).

        To decode a dead letter's body, say:
        ``motadata_actors.mailbox.decode_body(letter.data, letter.headers, system.codecs)``.
        """
        return self._runtime.codecs

    @property
    def embedded_server(self) -> NatsServer | None:
        """The embedded nats-server this system started, if any."""
        return self._server

    @property
    def root(self) -> Supervisor:
        """The root supervisor: :meth:`spawn` puts actors under it."""
        return _running(self._root)

    @property
    def _runtime(self) -> Runtime:
        return _running(self._rt)

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise ConfigError("this ActorSystem is already running: enter it once")
        settings = self._settings if self._settings is not None else Settings.from_env()
        try:
            limits = codec_limits(settings)
            codecs = Codecs(settings.codec, registry=self._registry, limits=limits)
        except CodecError as exc:
            raise ConfigError(f"CODEC_TYPE={settings.codec!r}: {exc}") from None
        if settings.compress_above:
            require_zstd()  # says which extra to install, before anything starts
        codecs.keys = self._keys
        if codecs.keys is None and settings.seal_keys:
            codecs.keys = KeyRing.parse(settings.seal_keys)
        telemetry = self._telemetry(settings)
        if telemetry is not None and settings.codec_metrics:
            telemetry.instrument_codecs(codecs)  # codec metrics; else the codecs are bare
        self._grace = settings.shutdown_grace
        self._stop_signal = None
        # Everything entry makes goes on one stack, so a failure at any step releases what
        # the steps before it made (server, connection, task group, actors) and exit
        # unwinds it all in reverse order.
        stack = contextlib.AsyncExitStack()
        try:
            await self._start(stack, settings, codecs, telemetry)
        except BaseException as exc:
            await self._close(stack, exc)
            raise
        self._stack = stack
        return self

    async def _start(
        self,
        stack: contextlib.AsyncExitStack,
        settings: Settings,
        codecs: Codecs,
        telemetry: Telemetry | None,
    ) -> None:
        hint = ""
        transport = self._transport
        if transport is None:
            prefix = inbox_prefix(self.tenant)
            if not settings.enable_nats:
                transport = InProcessTransport(inbox_prefix=prefix)
            else:
                urls = list(settings.nats_urls)
                if not urls:
                    self._server = await stack.enter_async_context(NatsServer())
                    urls = [self._server.url]
                    log.info("embedded nats-server for tenant %r at %s", self.tenant, urls[0])
                    hint = (
                        f" (this process runs a private embedded nats-server at {urls[0]}:"
                        " actors in other processes cannot reach it; set NATS_URL to share"
                        " one, e.g. one started by `python -m motadata_actors server`)"
                    )
                transport = nats_transport(
                    settings, self.tenant, name=f"motadata-actors/{self.tenant}", servers=urls
                )
        await transport.start()
        # After the connection closed (drained: what was in flight has landed), the
        # status feeds end their iteration.
        stack.callback(self._end_feeds)
        stack.push_async_callback(_shielded, transport.aclose)
        stack.callback(self._end_streams)  # before the transport closes: they are told
        store = transport.dead_letters if isinstance(transport, KeepsDeadLetters) else None
        kept = store is not None and await store.keep(
            self.tenant,
            max_messages=settings.dlq_max_messages,
            max_age=settings.dlq_max_age,
            replicas=settings.durable_replicas,
        )
        if not kept:
            store = None
            log.warning(
                "dead letters of tenant %r are published but not kept: %s keeps none",
                self.tenant, transport.description,
            )  # fmt: skip
        self._rt = Runtime(
            tenant=self.tenant,
            transport=transport,
            codecs=codecs,
            # Headers and body together, as the server counts them; the body alone is
            # checked against SDK_MAX_MESSAGE_SIZE by the codec, on both sides alike.
            max_size=transport.max_payload,
            ask_policy=AskPolicy(timeout=settings.ask_timeout, attempts=settings.ask_attempts),
            mailbox_capacity=settings.mailbox_capacity,
            client_id=self._client_id,
            clock=self._clock,
            events=self._events,
            no_responders_hint=hint,
            telemetry=telemetry,
            durable_config=durable_config(settings),
            dead_letter_store=store,
            max_header_size=settings.max_header_size,
            replay_window=settings.replay_window,
            stream_window=settings.stream_window,
            stream_window_bytes=settings.stream_window_bytes,
            lease_time=self._lease_time,
            compress_above=settings.compress_above,
        )
        if isinstance(transport, InProcessTransport):
            self._rt.local = transport
            if codecs.keys is None and telemetry is None:
                # What a copy would refuse, compress or claim is copied: bounded below each.
                limits = [codecs.limits.max_size, transport.max_payload - _SHARED_HEADROOM]
                limits += [n for n in (settings.compress_above, settings.claim_above) if n]
                self._rt.share = max(0, min(limits))
        if settings.claim_above:
            self._rt.claims = Claims(
                transport, self.tenant, codecs, above=settings.claim_above, ttl=settings.claim_ttl
            )
            await self._rt.claims.store()  # JetStream off, a TTL that differs: said at start
        if isinstance(transport, Observed):
            transport.listener = self._on_transport_event
            stack.callback(setattr, transport, "listener", None)
        if telemetry is not None:
            self._events.listener = telemetry.count_event
            telemetry.meter.create_observable_gauge(
                "sdk.mailbox.depth",
                callbacks=[telemetry.on_loop(self._observe_mailboxes)],  # readers' threads
                unit="{message}",
                description="Messages waiting in an actor's mailbox",
            )
        tg = self._tg = await stack.enter_async_context(anyio.create_task_group())
        self._rt.task_group = tg
        publishing = anyio.CancelScope()
        if settings.status_events:
            publisher = self._rt.status = StatusPublisher(self._rt)
            self._events.forward = publisher.changed
            stack.callback(setattr, self._events, "forward", None)
            await tg.start(publisher.run, publishing, name="status-events")
        root = self._root = Supervisor(
            self._rt, "", None, tg,
            strategy="one_for_one",
            max_restarts=settings.root_max_restarts,
            within=settings.root_within,
            on_escalate=self._escalated,
        )  # fmt: skip
        lag, status, schemas = anyio.CancelScope(), anyio.CancelScope(), anyio.CancelScope()
        stack.push_async_callback(self._stop_actors, root, (lag, status, publishing, schemas))
        await root._start()
        tg.start_soon(self._watch_loop_lag, lag, name="loop-lag")
        self._rt.schemas = SchemaRegistry(self._rt)
        tg.start_soon(self._publish_schemas, self._rt.schemas, schemas, name="schemas")
        await tg.start(self._serve_status, status, name="status")
        # The block runs inside a scope of its own: a signal cancels the block alone, and
        # exit then stops the actors as it would at the block's end.
        self._body = stack.enter_context(anyio.CancelScope())
        if self._handle_signals:
            stack.callback(watch_signals(self._on_signal))

    def _on_signal(self, sig: int) -> None:
        """SIGINT or SIGTERM: end the ``async with`` block; exit stops the actors gracefully."""
        self._stop_signal = sig
        if self._body is not None:
            self._body.cancel()

    async def _stop_actors(
        self, root: Supervisor, background: tuple[anyio.CancelScope, ...]
    ) -> None:
        # Shielded: a cancelled or failing block still stops its actors. Every actor
        # stops taking messages first, then they stop newest first.
        with anyio.CancelScope(shield=True):
            deadline = self._clock.now() + self._grace
            await root.stop_accepting()
            await root.shutdown(deadline)
            rt = self._rt
            if rt is not None and rt.watches is not None:
                await rt.watches.close()
            if rt is not None and rt.reminders is not None:
                await rt.reminders.close()
            if rt is not None and rt.leases is not None:
                await rt.leases.close()
            if rt is not None and rt.status is not None:
                self._events.forward = None
                await rt.status.close()  # the last changes (stopped...) go out first
        for scope in background:
            scope.cancel()

    async def _close(self, stack: contextlib.AsyncExitStack, exc: BaseException | None) -> bool:
        """Unwind what entry made; return whether ``exc`` (the block's) was absorbed.

        Only typed errors leave here: the block's own exception as it was (the task group
        does not wrap it), and :class:`SupervisionError` when a failure escalated past the
        root. The block's cancellation by a signal is absorbed.
        """
        try:
            return bool(
                await stack.__aexit__(
                    type(exc) if exc is not None else None,
                    exc,
                    exc.__traceback__ if exc is not None else None,
                )
            )
        except BaseExceptionGroup as group:
            escalated, rest = group.split(SupervisionError)
            if rest is not None:
                own, others = rest.split(lambda e: e is exc)
                if others is not None:
                    raise  # a failure of our own tasks: a bug, shown whole
                if own is not None:
                    if escalated is not None:
                        log.error("failure escalated past the root: %s", escalated.exceptions[0])
                    return False  # the block's own exception goes on as it was
            assert escalated is not None
            raise escalated.exceptions[0] from None
        finally:
            self._rt = None
            self._root = None
            self._tg = None
            self._body = None
            self._server = None

    def _telemetry(self, settings: Settings) -> Telemetry | None:
        tracer, meter = self._tracer_provider, self._meter_provider
        if tracer is None and meter is None:
            if not settings.enable_otel:
                return None  # off: no OpenTelemetry call per message, no SDK object
            from opentelemetry import trace

            if type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
                setup_telemetry(settings=settings)  # nothing configured yet: from OTEL_*
        return Telemetry(self.tenant, tracer, meter)

    def _observe_mailboxes(self, options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        root, rt = self._root, self._rt
        if root is None or rt is None or rt.telemetry is None:
            return []
        tel = rt.telemetry
        return [
            Observation(s.queued, {"sdk.tenant.id": self.tenant, "sdk.agent.to": tel.agent(s.name)})
            for s in root.statistics()
        ]

    def _on_transport_event(self, kind: str, detail: str, reply: str) -> None:
        """Record the connection's ups and downs and slow-consumer drops; answer dropped asks."""
        if kind not in ("dropped", "disconnected", "reconnected", "refused"):
            return
        to = "/"
        if kind == "dropped":
            with contextlib.suppress(SubjectError):  # not one of ours: a foreign subscription
                subject = parse_subject(detail)
                if subject.kind == "agent":  # an ask to an actor, not a status query
                    to = subject.target
        self._events.record(kind, to, detail)  # type: ignore[arg-type]
        rt = self._rt
        if kind == "dropped" and reply and to != "/" and rt is not None:
            rt.run_soon(lambda: self._refuse_dropped_ask(rt, detail, reply))

    @staticmethod
    async def _refuse_dropped_ask(rt: Runtime, subject: str, reply: str) -> None:
        """Tell an asker at once that its ask was dropped, instead of letting it time out."""
        message = (
            f"the mailbox on {subject} is full (a slow actor): the ask was dropped; "
            "retry later, raise SDK_MAILBOX_CAPACITY, or use a durable mailbox"
        )
        await rt.send_error(reply, "MailboxFull", message, "sdk")

    def _escalated(self, error: SupervisionError) -> None:
        """The root gave up: fail the task group, which cancels the ``async with`` block."""
        assert self._tg is not None

        async def fail() -> None:
            raise error

        self._tg.start_soon(fail, name="root-escalation")

    async def _serve_status(
        self,
        scope: anyio.CancelScope,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer ``sdk.system.<tenant>`` until the system stops."""
        rt = self._runtime
        with scope:
            await serve_status(
                rt.transport, self.tenant, self._client_id, self.root.statistics,
                describe=lambda: describe_agents(self.root), task_status=task_status,
            )  # fmt: skip

    async def status(self, wait: float = 0.5) -> list[Any]:
        """Reports from every process of this tenant (this one included) within ``wait``.

        Each is a dict: ``process``, ``pid``, ``host``, and ``agents`` (name, mailbox,
        queued, capacity, handled, failed, rejected, restarts, dropped); see
        :func:`motadata_actors.actors.summarize` for totals per agent and replicas.
        """
        return await gather_status(self._runtime.transport, self.tenant, wait)

    @staticmethod
    async def _publish_schemas(registry: SchemaRegistry, scope: anyio.CancelScope) -> None:
        """Publish the registry's schemas in the background; given up when the system stops.

        Best effort: with the server gone, its key-value calls wait out their timeouts,
        which must not hold up the exit.
        """
        with scope:
            await registry.publish()

    async def _watch_loop_lag(self, scope: anyio.CancelScope) -> None:
        """Warn when the event loop was blocked (a handler blocking: use ``offload=True``)."""
        with scope:
            while True:
                start = anyio.current_time()
                await anyio.sleep(_LAG_INTERVAL)
                lag = anyio.current_time() - start - _LAG_INTERVAL
                if lag > _LAG_WARN:
                    self._events.record("loop_lag", "/", f"{lag * 1000:.0f} ms")
                    log.warning(
                        "the event loop was blocked for %.0f ms: a handler doing blocking work? "
                        "spawn it with offload=True and a synchronous on_message",
                        lag * 1000,
                    )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        absorbed = await self._close(stack, exc)
        if self._stop_signal is not None and (exc is None or absorbed):
            # Stopped by SIGINT or SIGTERM: end the program as the signal would have, after
            # the graceful stop, and without a traceback.
            raise SystemExit(128 + self._stop_signal)

    spawn = _on_root(Supervisor.spawn, "Start an actor under the root supervisor.")
    spawn_supervisor = _on_root(
        Supervisor.spawn_supervisor, "Start a supervisor under the root supervisor."
    )
    spawn_keyed = _on_root(
        Supervisor.spawn_keyed, "Register a keyed agent kind under the root supervisor."
    )

    def ref(
        self,
        name: str,
        *,
        key: str | None = None,
        ask: AskPolicy | None = None,
        mailbox: MailboxKind = "core",
    ) -> ActorRef:
        """Return a ref to the actor called ``name``, here or in another process.

        Args:
            name: the agent name, or a keyed agent's kind.
            key: for a keyed kind (``spawn_keyed``), the key of the instance
                (``[A-Za-z0-9_=-]``, up to 128 characters): ``ref("chat", key="s-42")``.
            ask: the ask policy (the system's when omitted).
            mailbox: ``durable`` when the agent was spawned with a durable mailbox: its
                tells and asks are then stored by JetStream before they count as sent.

        Raises:
            SubjectError: ``name`` is not a valid agent name, or ``key`` not a valid key.
            ConfigError: ``mailbox`` is not ``core`` or ``durable``.
        """
        return ActorRef(self._runtime, name, ask, mailbox=mailbox, key=key)

    def statistics(self) -> list[ActorStatistics]:
        """Return a snapshot of every actor running in this system, in start order."""
        return self.root.statistics()

    def events(
        self, kind: EventKind | None = None, actor: str | None = None
    ) -> list[SupervisionEvent]:
        """What supervision did (restarts, escalations, retries, timeouts, dead letters...).

        Actors are named by path: ``/planner``, ``/workers/writer``.
        """
        return self._events.events(kind, actor)

    def event_counts(self) -> dict[str, int]:
        """How many events of each kind happened since the system started."""
        return self._events.counts()

    async def stop(self, name: str) -> int:
        """Stop the root's actors called ``name``; return how many were stopped."""
        return await self.root.stop_child(name, self._grace)

    async def publish(
        self, event: object, *, event_type: str | None = None, durable: bool = False
    ) -> None:
        """Publish an event on ``sdk.events.<event_type>.<tenant>``; see :meth:`Context.publish`."""
        await self._runtime.publish_event(event, event_type, durable=durable)

    def follow_status(
        self, *, lifecycle: bool = True, progress: bool = True, capacity: int = 1024
    ) -> StatusFeed:
        """Follow the tenant's status events live, from every process of the tenant.

        An async iterator of :class:`~motadata_actors.actors.AgentLifecycle` (an agent
        started, crashed, restarted, stopped; a keyed instance activated or deactivated)
        and :class:`~motadata_actors.actors.Progress` (a handler's ``ctx.progress``), as
        they are published on ``sdk.status.lifecycle.<tenant>`` and
        ``sdk.status.progress.<tenant>``. Subscribed on entry: nothing keeps status
        events, so what happened before is not seen. Iteration ends when the feed is
        closed or this system stops (after what was published until then).

        Example::

            async with system.follow_status(progress=False) as feed:
                async for change in feed:
                    print(change.agent, change.change, change.reason)

        Args:
            lifecycle: receive the agents' life-cycle changes.
            progress: receive the handlers' progress reports.
            capacity: events this follower may fall behind by; past it the newest are
                lost (over NATS, counted in :attr:`StatusFeed.dropped`).

        Raises:
            ConfigError: neither ``lifecycle`` nor ``progress``, or a bad capacity.
        """
        rt = self._runtime
        feed = StatusFeed(
            rt.transport, self.tenant, rt.codecs, lifecycle=lifecycle, progress=progress,
            capacity=capacity, on_close=self._feeds.discard,
        )  # fmt: skip
        self._feeds.add(feed)
        return feed

    def _end_streams(self) -> None:
        rt = self._rt
        if rt is not None:
            stopped = TransportClosed(f"the system of tenant {self.tenant!r} stopped")
            for stream in list(rt.streams):
                stream.abort(stopped)

    def _end_feeds(self) -> None:
        feeds, self._feeds = list(self._feeds), set()
        for feed in feeds:
            feed.end()

    def workflow(self, workflow_id: str) -> Workflow:
        """The workflow ``workflow_id`` of this tenant, to publish steps or read its history.

        Raises:
            SubjectError: ``workflow_id`` is not one subject token.
        """
        return Workflow(self._runtime, workflow_id)

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The tenant's kept dead letters, oldest first (at most ``limit``).

        Raises:
            ConfigError: nothing keeps them (a server without JetStream, or a transport of
                the application's own without a dead-letter store).
        """
        rt = self._runtime
        transport = rt.transport
        if not isinstance(transport, KeepsDeadLetters):
            raise ConfigError(
                f"{transport.description} keeps no dead letters: its transport has no "
                "dead-letter store"
            )
        return await transport.dead_letters.read(self.tenant, limit=limit)
