"""ActorSystem: owns the transport (and the embedded nats-server), spawns and stops actors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self, final

import anyio
import anyio.abc

from motadata_actors._errors import CodecError, ConfigError, TransportClosed
from motadata_actors._settings import Settings
from motadata_actors.codecs import Codecs, Limits, TypeRegistry, default_registry
from motadata_actors.mailbox import (
    InProcessTransport,
    NatsServer,
    NatsTransport,
    Transport,
    check_id,
    inbox_prefix,
)
from motadata_actors.telemetry import get_logger

from ._actor import Actor
from ._cell import ActorCell, ActorStatistics
from ._ref import ActorRef
from ._runtime import Runtime

__all__ = ("ActorSystem",)

log = get_logger("system")

_STOP_GRACE = 10.0


@final
class ActorSystem:
    """A tenant's actors, their transport, and their lifetime.

    Use it as an async context manager. On entry it connects: to ``transport`` when
    given; else in-process when ``ENABLE_NATS=false``; else to ``NATS_URL``; else to
    an embedded nats-server it starts on a free loopback port (with JetStream in a
    temporary directory) and stops on exit. On exit it stops every actor, newest
    first, then closes the transport and stops the embedded server, also when the
    block fails or is cancelled.

    Args:
        tenant: the tenant id, the last token of every subject.
        transport: a transport to use instead of the one settings choose; the system
            starts and closes it.
        settings: settings to use instead of reading the environment.
        registry: the typed-message registry; the process-wide default when omitted.
        client_id: the ``<from>`` token of messages sent from outside any actor.

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
    ) -> None:
        self.tenant = check_id(tenant, "tenant")
        self._client_id = check_id(client_id, "client_id")
        self._transport = transport
        self._settings = settings
        self._registry = registry if registry is not None else default_registry()
        self._rt: Runtime | None = None
        self._server: NatsServer | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._cells: list[ActorCell] = []

    @property
    def transport(self) -> Transport:
        """The transport in use (after entry)."""
        return self._runtime.transport

    @property
    def embedded_server(self) -> NatsServer | None:
        """The embedded nats-server this system started, if any."""
        return self._server

    @property
    def _runtime(self) -> Runtime:
        if self._rt is None:
            raise TransportClosed(
                "the actor system is not running: use `async with ActorSystem(...)`"
            )
        return self._rt

    async def __aenter__(self) -> Self:
        settings = self._settings if self._settings is not None else Settings.from_env()
        try:
            limits = Limits(
                max_size=settings.max_message_size,
                max_depth=settings.max_depth,
                max_length=settings.max_length,
            )
            codecs = Codecs(settings.codec, registry=self._registry, limits=limits)
        except CodecError as exc:
            raise ConfigError(f"CODEC_TYPE={settings.codec!r}: {exc}") from None
        stack = contextlib.AsyncExitStack()
        try:
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
                    transport = NatsTransport(
                        urls, name=f"motadata-actors/{self.tenant}", inbox_prefix=prefix
                    )
            await transport.start()
            stack.push_async_callback(transport.aclose)
            # Entered by hand, not on the stack: __aexit__ must leave it outside the
            # shielded scope that closes the rest (anyio scopes nest strictly).
            tg = anyio.create_task_group()
            await tg.__aenter__()
            self._tg = tg
        except BaseException:
            await stack.aclose()
            self._server = None
            raise
        self._stack = stack
        self._rt = Runtime(
            tenant=self.tenant,
            transport=transport,
            codecs=codecs,
            max_size=min(limits.max_size, transport.max_payload),
            ask_timeout=settings.ask_timeout,
            mailbox_capacity=settings.mailbox_capacity,
            client_id=self._client_id,
            no_responders_hint=hint,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        tg, self._tg = self._tg, None
        assert tg is not None
        # Shielded: a cancelled or failing block still stops its actors, closes the
        # connection and stops the embedded server. Each step is bounded in time.
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_STOP_GRACE) as scope:
                for cell in reversed(self._cells):
                    await cell.stop()
            if scope.cancelled_caught:
                log.warning("actors did not stop within %ss; cancelling them", _STOP_GRACE)
                tg.cancel_scope.cancel()
            self._cells.clear()
            self._rt = None
            # The block's own exception is not the task group's: it propagates by itself.
            await tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await stack.aclose()
                finally:
                    self._server = None

    async def spawn(self, actor: Callable[[], Actor], *, name: str) -> ActorRef:
        """Start an actor and return its ref once it can receive messages.

        Args:
            actor: an :class:`Actor` subclass, or any callable returning a fresh instance
                (``lambda: Writer(style="terse")``).
            name: the agent name (lowercase ``[a-z0-9_-]``). Spawning a name again, here
                or in another process on the same server, adds a replica that shares
                the load.

        Raises:
            SubjectError: ``name`` is not a valid agent name.
            Exception: whatever the actor's constructor or ``on_start`` raised.
        """
        rt = self._runtime
        assert self._tg is not None
        check_id(name, "agent name")
        cell = ActorCell(rt, name, actor)
        ref: ActorRef = await self._tg.start(cell.run, name=f"actor:{name}")
        self._cells.append(cell)
        return ref

    def ref(self, name: str) -> ActorRef:
        """Return a ref to the actor called ``name``, here or in another process.

        Raises:
            SubjectError: ``name`` is not a valid agent name.
        """
        return ActorRef(self._runtime, name)

    def statistics(self) -> list[ActorStatistics]:
        """Return a snapshot of every actor running in this system, oldest first."""
        return [cell.statistics() for cell in self._cells]

    async def stop(self, name: str) -> int:
        """Stop this system's actors called ``name``; return how many were stopped."""
        cells = [cell for cell in self._cells if cell.name == name]
        for cell in reversed(cells):
            await cell.stop()
            self._cells.remove(cell)
        return len(cells)

    async def publish(self, event: object, *, event_type: str | None = None) -> None:
        """Publish an event on ``sdk.events.<event_type>.<tenant>``.

        The event type defaults to the typed event's wire name with ``.`` as ``_``.
        """
        await self._runtime.publish_event(event, event_type)
