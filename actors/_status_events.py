"""Status events: agents' life-cycle changes and handlers' progress, live, per tenant.

Theory of operation:

* An agent's *changes* are what supervision records with the agent's address: started,
  crashed, restarted, stopped; a keyed instance activated or deactivated. The system's
  :class:`~._events.EventLog` forwards them to its :class:`StatusPublisher`, which
  publishes an :class:`AgentLifecycle` on ``sdk.status.lifecycle.<tenant>``. Forwarding
  only queues: no actor waits on a publish, and the per-message path is not touched (the
  log hears of a change, never of a message).
* One task of the system publishes what is queued, in order: a follower sees one
  process's changes in the order they happened. The queue is bounded; past it changes
  are dropped (counted, logged), and a publish that fails is logged. Nothing raises into
  an actor.
* ``ctx.progress(...)`` makes one :class:`Progress` (the handled message's correlation
  id; the trace context when telemetry is on) and sends it at once to the asker's
  progress inbox when the ask asked for it (``Sdk-Progress-To``, set by
  ``ask(..., on_progress=)``), so every report reaches the asker before the reply; and,
  through the queue, to ``sdk.status.progress.<tenant>``.
* Both are core publishes on a family of their own (``sdk.status.<kind>.<tenant>``): no
  stream keeps them and ``sdk.events.*`` never carries them, so nobody listening costs
  one publish per change. ``SDK_STATUS_EVENTS=false`` publishes none (progress still
  reaches an asker that asked for it).
* Followers: :meth:`ActorSystem.follow_status` (a :class:`StatusFeed`), an actor with
  ``events = ("sdk~lifecycle",)`` or ``("sdk~progress",)``, and
  ``python -m motadata_actors status --follow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal, Self, final, get_args

import anyio
import anyio.abc

from motadata_actors._errors import ActorsError, ConfigError, MailboxFull, TransportClosed
from motadata_actors.codecs import Codecs, field, message
from motadata_actors.mailbox import (
    Incoming,
    Mailbox,
    Subscription,
    Transport,
    new_message_id,
    split_keyed,
)
from motadata_actors.mailbox._envelope import Letter, Sealed, seal
from motadata_actors.mailbox._subjects import (
    STATUS_KINDS,
    inbox_prefix,
    new_inbox,
    status_event_subject,
)
from motadata_actors.telemetry._logging import get_logger

from ._events import SupervisionEvent
from ._runtime import STATUS_TEMPLATE, Runtime

if TYPE_CHECKING:
    from ._actor import Context

__all__ = (
    "LIFECYCLE_CHANGES",
    "AgentLifecycle",
    "LifecycleChange",
    "Progress",
    "ProgressCallback",
    "ProgressListener",
    "StatusEvent",
    "StatusFeed",
    "StatusPublisher",
    "ensure_registered",
    "report_progress",
)

log = get_logger("status")

LifecycleChange = Literal["started", "crashed", "restarted", "stopped", "activated", "deactivated"]
"""The changes :class:`AgentLifecycle` reports."""

LIFECYCLE_CHANGES: Final[frozenset[str]] = frozenset(get_args(LifecycleChange))

_QUEUE: Final = 1024  # changes and progress events waiting to be published, per system
_FEED: Final = 1024  # events a follower may fall behind by
_ASKER_BOX: Final = 1024  # progress reports an asker's callback may fall behind by
_FLUSH: Final = 2.0  # seconds the last changes get to go out when the system stops


@message("sdk.lifecycle.v1")
class AgentLifecycle:
    """A change in an agent's life, published on ``sdk.status.lifecycle.<tenant>``.

    Attributes:
        agent: the agent's address: its name (``writer``), or ``<kind>~<key>`` for a keyed
            instance.
        change: ``started``, ``crashed``, ``restarted``, ``stopped`` (a plain agent, or a
            keyed kind in one process), ``activated`` or ``deactivated`` (a keyed
            instance).
        path: where the agent sits in its process's supervision tree (``/workers/writer``;
            for a keyed instance, its kind's path).
        reason: why, when known: what a crash raised, the cause of a restart, ``idle or
            stopped`` for a deactivation...
        key: a keyed instance's key, else None.
        host: the host name of the process the agent runs in.
        pid: that process's id.
        time: when it happened, in seconds since the epoch (that process's clock).
        trace_id: for a crash of a handler with telemetry on, the trace of the message it
            was handling (32 hex digits), else "".
    """

    agent: str = field(proto=1)
    change: str = field(proto=2)
    path: str = field(proto=3, default="")
    reason: str = field(proto=4, default="")
    key: str | None = field(proto=5, default=None)
    host: str = field(proto=6, default="")
    pid: int = field(proto=7, default=0)
    time: float = field(proto=8, default=0.0)
    trace_id: str = field(proto=9, default="")


@message("sdk.progress.v1")
class Progress:
    """How far a handler got, as it reported with :meth:`Context.progress`.

    Published on ``sdk.status.progress.<tenant>``, and handed to an asker's
    ``on_progress`` callback.

    Attributes:
        agent: the reporting agent's address (``writer``, ``chat~ada``).
        value: what the handler reported: any value of the value model, a typed message,
            or None.
        done: units done, when the handler said.
        total: units in all, when the handler said.
        correlation_id: the conversation of the message being handled; for an ask sent
            from outside any handler, that ask's message id.
        message_id: the ``Sdk-Message-Id`` of the message being handled.
        time: when it was reported, in seconds since the epoch.
    """

    agent: str = field(proto=1)
    value: Any = field(proto=2, default=None)
    done: float | None = field(proto=3, default=None)
    total: float | None = field(proto=4, default=None)
    correlation_id: str = field(proto=5, default="")
    message_id: str = field(proto=6, default="")
    time: float = field(proto=7, default=0.0)

    @property
    def fraction(self) -> float | None:
        """``done / total`` when both were given (and ``total`` is not 0), else None."""
        if self.done is None or not self.total:
            return None
        return self.done / self.total


StatusEvent = AgentLifecycle | Progress
"""What a follower of the status events receives."""

ProgressCallback = Callable[[Progress], Awaitable[None] | None]
"""An asker's ``on_progress``: a function or coroutine function taking a :class:`Progress`."""

_CLASSES: Final = ((AgentLifecycle, "sdk.lifecycle.v1"), (Progress, "sdk.progress.v1"))


def ensure_registered(codecs: Codecs) -> None:
    """Register the status events in ``codecs``' registry (a system's own, say)."""
    registry = codecs.registry
    for cls, wire in _CLASSES:
        if wire not in registry:
            registry.register(cls, wire)


def _now() -> float:
    # Wall-clock time: it is read by other processes (followers, dashboards).
    return time.time()


@final
class StatusPublisher:
    """Publishes one system's status events, in order, from one task of the system.

    :meth:`changed` (the event log's ``forward``) and :meth:`progress` only queue, so
    neither ever waits; :meth:`run` publishes; :meth:`close` lets what is queued go out.

    Attributes:
        published: events published so far.
        dropped: events dropped because the queue was full (a slow or stuck transport).
        failed: events whose publish failed (logged).
    """

    def __init__(self, rt: Runtime, capacity: int = _QUEUE) -> None:
        ensure_registered(rt.codecs)
        self._rt = rt
        self._box: Mailbox[tuple[str, AgentLifecycle | Sealed]] = Mailbox(capacity)
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self.lifecycle_subject = status_event_subject("lifecycle", rt.tenant)
        """``sdk.status.lifecycle.<tenant>``."""
        self.progress_subject = status_event_subject("progress", rt.tenant)
        """``sdk.status.progress.<tenant>``."""
        self._done = anyio.Event()
        self.published = 0
        self.dropped = 0
        self.failed = 0

    def changed(self, event: SupervisionEvent) -> None:
        """Queue an agent's change (others are ignored); never blocks or raises."""
        if event.address is None or event.kind not in LIFECYCLE_CHANGES:
            return
        _, key = split_keyed(event.address)
        change = AgentLifecycle(
            agent=event.address, change=event.kind, path=event.actor, reason=event.detail,
            key=key, host=self._host, pid=self._pid, time=_now(), trace_id=event.trace_id,
        )  # fmt: skip
        self._offer(self.lifecycle_subject, change)

    def progress(self, sealed: Sealed) -> None:
        """Queue a sealed :class:`Progress` for ``sdk.status.progress.<tenant>``."""
        self._offer(self.progress_subject, sealed)

    def _offer(self, subject: str, item: AgentLifecycle | Sealed) -> None:
        try:
            self._box.send_nowait((subject, item))
        except MailboxFull:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: never a flood of logs
                log.warning(
                    "status events of tenant %r dropped (%d so far): more than %d waiting "
                    "to be published",
                    self._rt.tenant, self.dropped, self._box.statistics().capacity,
                )  # fmt: skip
        except TransportClosed:
            pass  # the system is stopping: what it still records goes nowhere

    async def run(
        self, scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Publish what is queued until :meth:`close` (then the rest) or ``scope`` ends."""
        with scope:
            try:
                task_status.started()
                async for subject, item in self._box:
                    await self._publish(subject, item)
            finally:
                self._done.set()

    async def _publish(self, subject: str, item: AgentLifecycle | Sealed) -> None:
        rt = self._rt
        try:
            if isinstance(item, Sealed):
                sealed = item
            else:
                sealed = rt.finish(seal(item, rt.codecs.default, message_id=new_message_id()))
            await rt.transport.publish(subject, sealed.data, headers=sealed.headers)
        except ActorsError as exc:
            self._failed(subject, exc)
        except Exception as exc:  # never let a status event take the system down
            log.exception("status event on %s not published", subject)
            self._failed(subject, exc)
        else:
            self.published += 1

    def _failed(self, subject: str, exc: Exception) -> None:
        self.failed += 1
        if self.failed & (self.failed - 1) == 0:
            log.warning("status event on %s lost (%d so far): %r", subject, self.failed, exc)

    async def close(self) -> None:
        """Take no more; give what is queued up to ``_FLUSH`` seconds (on the clock) to go."""
        self._box.close()
        clock = self._rt.clock
        with anyio.CancelScope() as limit:
            timer = clock.call_at(clock.now() + _FLUSH, limit.cancel)
            try:
                await self._done.wait()
            finally:
                timer.cancel()


def _amount(name: str, value: object) -> float | None:
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number >= 0, not {value!r}")
    if value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, not {value!r}")
    return float(value)


async def report_progress(
    rt: Runtime, ctx: Context, asker: str, value: object, done: object, total: object
) -> None:
    """Send a handler's progress to ``asker`` (its inbox, "" for none) and the followers.

    Raises:
        ConfigError: ``done`` or ``total`` is not a finite number >= 0.
        EncodeError: ``value`` cannot be encoded (nothing was sent).
        MessageTooLarge: ``value`` exceeds the size limit (nothing was sent).
    """
    done_, total_ = _amount("done", done), _amount("total", total)
    if asker and not asker.startswith(f"{inbox_prefix(rt.tenant)}."):
        log.debug("actor %s: progress inbox %r is not the tenant's: ignored", ctx.actor, asker)
        asker = ""  # a forged Sdk-Progress-To must not make a handler publish anywhere
    publisher = rt.status
    if not asker and publisher is None:
        return
    report = Progress(
        agent=ctx.actor, value=value, done=done_, total=total_,
        correlation_id=ctx.correlation_id, message_id=ctx.message_id or "", time=_now(),
    )  # fmt: skip

    async def send(sealed: Sealed) -> None:
        if asker:  # at once, so the report is on its way before the reply
            try:
                await rt.transport.publish(asker, sealed.data, headers=sealed.headers)
            except ActorsError as exc:
                log.warning("actor %s: progress report to its asker lost: %r", ctx.actor, exc)
        if publisher is not None:
            publisher.progress(sealed)

    subject = publisher.progress_subject if publisher is not None else asker
    await rt.send_to_many(subject, STATUS_TEMPLATE, report, send)


@final
class ProgressListener:
    """The asker's end of ``ask(..., on_progress=)``: an inbox and the task calling back.

    Reports are read from a fresh inbox of the tenant and handed to the callback one at a
    time, in order, by a task this listener owns (cancelled or awaited by :meth:`close`).
    A callback that raises is logged; the ask goes on.
    """

    def __init__(self, rt: Runtime, callback: ProgressCallback) -> None:
        self._rt = rt
        self._callback = callback
        self.inbox = new_inbox(rt.tenant)
        """Where the handler sends its reports (``Sdk-Progress-To``)."""
        self._box: Mailbox[Incoming] = Mailbox(_ASKER_BOX)
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Subscribe the inbox and start calling back."""
        ensure_registered(self._rt.codecs)
        self._sub = await self._rt.transport.subscribe(self.inbox, mailbox=self._box)
        self._task = asyncio.create_task(self._pump(), name=f"progress:{self.inbox}")

    async def _pump(self) -> None:
        async for msg in self._box:
            try:
                report = Letter.open(msg).body(self._rt.codecs)
            except ActorsError as exc:
                log.warning("a progress report could not be read: %r", exc)
                continue
            if not isinstance(report, Progress):
                continue  # not a report: nothing of ours sends anything else here
            try:
                result = self._callback(report)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("the on_progress callback raised (the ask goes on)")

    async def close(self, *, deliver: bool) -> None:
        """Unsubscribe; ``deliver``: first hand the callback every report already here."""
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except ActorsError as exc:
                log.debug("progress inbox %s: unsubscribe: %r", self.inbox, exc)
        task, self._task = self._task, None
        if task is None:
            return
        if deliver:
            # The reply came after every report its handler sent (one publisher, in
            # order): they are all in the box. Closing it ends the task once they are done.
            self._box.close()
            await task
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@final
class StatusFeed(AsyncIterator[StatusEvent], anyio.abc.AsyncResource):
    """The tenant's status events as they happen: :class:`AgentLifecycle` and :class:`Progress`.

    Made by :meth:`ActorSystem.follow_status`. It subscribes on entry (``async with``) or on
    first iteration, so events before that are not seen (nothing keeps them), and ends
    when closed, or when the system that made it stops (after the events published until
    then). Events that cannot be decoded are skipped and logged.

    A follower that falls ``capacity`` events behind loses the newest: over NATS the
    client drops them (counted in :attr:`dropped`); in process the publisher waits, and
    its own bounded queue drops.

    Example::

        async with system.follow_status() as feed:
            async for event in feed:
                print(event)
    """

    def __init__(
        self,
        transport: Transport,
        tenant: str,
        codecs: Codecs,
        *,
        lifecycle: bool = True,
        progress: bool = True,
        capacity: int = _FEED,
        on_close: Callable[[StatusFeed], None] | None = None,
    ) -> None:
        if not (lifecycle or progress):
            raise ConfigError("follow at least one of lifecycle and progress")
        if type(capacity) is not int or capacity < 1:
            raise ConfigError(f"capacity must be a whole number >= 1, not {capacity!r}")
        self._transport = transport
        self._codecs = codecs
        kinds = (
            STATUS_KINDS
            if lifecycle and progress
            else ("lifecycle",)
            if lifecycle
            else ("progress",)
        )
        self.subject = status_event_subject("*" if len(kinds) > 1 else kinds[0], tenant)
        """What it subscribes: ``sdk.status.<kind or *>.<tenant>``."""
        self._box: Mailbox[Incoming] = Mailbox(capacity)
        self._sub: Subscription | None = None
        self._opened = False
        self._on_close = on_close

    @property
    def dropped(self) -> int:
        """Events the NATS client dropped because this follower fell too far behind."""
        return self._box.dropped

    async def open(self) -> None:
        """Subscribe (once); events published from now on are received.

        Raises:
            TransportClosed: closed already, or its system stopped.
            ConnectionLost: the server cannot be reached.
        """
        if self._box.closed:
            raise TransportClosed("this status feed is closed")
        if self._opened:
            return
        self._opened = True
        ensure_registered(self._codecs)
        self._sub = await self._transport.subscribe(self.subject, mailbox=self._box)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StatusEvent:
        if not self._opened:
            await self.open()
        while True:
            msg = await self._box.receive()  # StopAsyncIteration once closed and empty
            try:
                event = Letter.open(msg).body(self._codecs)
            except ActorsError as exc:
                log.warning("a status event on %s could not be read: %r", msg.subject, exc)
                continue
            if isinstance(event, (AgentLifecycle, Progress)):
                return event

    def end(self) -> None:
        """End iteration after what already arrived (the system stops); no unsubscribe."""
        self._box.close()

    async def aclose(self) -> None:
        """Unsubscribe and end iteration (what already arrived is still handed out)."""
        sub, self._sub = self._sub, None
        self._box.close()
        if self._on_close is not None:
            self._on_close(self)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except ActorsError as exc:
                log.debug("status feed %s: unsubscribe: %r", self.subject, exc)
