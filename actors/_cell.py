"""The actor cell: one running actor, its mailbox, and the loop that feeds it.

Theory of operation:

* ``run`` subscribes the actor's inbox ``sdk.agent.*.<name>.<tenant>`` (queue group
  ``<name>``, so replicas share the load) and its event subjects, all into one
  bounded mailbox; then ``on_start``; then it reports started, so ``spawn`` returns
  only once the actor can be reached.
* Messages are handled one at a time, in mailbox order. Nothing a message holds
  can stop the loop: a message that cannot be accepted (undecodable, unknown type,
  forged tenant) is *rejected* (logged, answered with a typed error if it was an
  ask, and dead-lettered on ``sdk.dlq.<name>.<tenant>`` with ``Sdk-Dead-Reason``); a
  handler that raises is *failed* (logged, and answered with the error if an ask).
* An ask's handler runs under the asker's deadline (``Sdk-Timeout-Ms``); past it
  the handler is cancelled and no reply is sent, since nobody waits for one.
* ``stop`` unsubscribes, lets the loop finish what is already queued, then runs
  ``on_stop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import final

import anyio
import anyio.abc
import attrs

from motadata_actors._errors import ActorsError, CodecError, MessageTooLarge, TenantError
from motadata_actors.mailbox import (
    DEAD_REASON,
    MESSAGE_ID,
    TENANT_ID,
    Incoming,
    Mailbox,
    Subscription,
    agent_inbox,
    decode_body,
    dlq_subject,
    encode_body,
    encode_error,
    event_subject,
    message_size,
    new_message_id,
)
from motadata_actors.telemetry import get_logger

from ._actor import Actor, Context
from ._ref import ActorRef
from ._runtime import Runtime, current_context

__all__ = ("ActorCell", "ActorStatistics")

log = get_logger("actors")

_REASON_MAX = 512


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
    return text[:_REASON_MAX]


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
        queued: messages waiting in its mailbox.
        capacity: the mailbox's bound.
        dropped: messages the NATS client dropped because the mailbox and the
            client's pending queue were full (a slow consumer).
    """

    name: str
    handled: int
    failed: int
    rejected: int
    queued: int
    capacity: int
    dropped: int


class ActorCell:
    """Runs one actor instance inside the system's task group."""

    def __init__(self, runtime: Runtime, name: str, factory: Callable[[], Actor]) -> None:
        self._rt = runtime
        self.name = name
        self._factory = factory
        self._mailbox: Mailbox[Incoming] = Mailbox(runtime.mailbox_capacity)
        self._subs: list[Subscription] = []
        self._stopped = anyio.Event()
        self.handled = 0
        self.failed = 0
        self.rejected = 0

    @property
    def mailbox(self) -> Mailbox[Incoming]:
        """The cell's mailbox (for statistics)."""
        return self._mailbox

    def statistics(self) -> ActorStatistics:
        """Return a snapshot of the actor's counters."""
        box = self._mailbox.statistics()
        return ActorStatistics(
            self.name,
            self.handled,
            self.failed,
            self.rejected,
            box.queued,
            box.capacity,
            box.dropped,
        )

    async def run(self, *, task_status: anyio.abc.TaskStatus[ActorRef]) -> None:
        """Subscribe, start the actor, report started, then handle messages until stopped."""
        rt = self._rt
        try:
            actor = self._factory()
            if not isinstance(actor, Actor):
                raise TypeError(f"spawn needs an Actor subclass or factory, got {actor!r}")
            ref = ActorRef(rt, self.name)
            actor.name = self.name
            actor.ref = ref
            subjects = [(agent_inbox(self.name, rt.tenant), self.name)]
            for event_type in type(actor).events:
                subject = (
                    f"sdk.events.*.{rt.tenant}"
                    if event_type == "*"
                    else event_subject(event_type, rt.tenant)
                )
                subjects.append((subject, self.name))
            for subject, queue in subjects:
                self._subs.append(
                    await rt.transport.subscribe(subject, queue=queue, mailbox=self._mailbox)
                )
            await actor.on_start()
        except BaseException:
            await self._unsubscribe()
            self._stopped.set()
            raise
        task_status.started(ref)
        log.debug("actor %r started on %s", self.name, self._subs[0].subject)
        try:
            async for msg in self._mailbox:
                await self._handle(actor, msg)
        finally:
            await self._unsubscribe()
            with anyio.CancelScope(shield=True):
                try:
                    await actor.on_stop()
                except Exception:
                    log.exception("actor %r: on_stop raised", self.name)
            self._stopped.set()
            log.debug("actor %r stopped", self.name)

    async def _unsubscribe(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except ActorsError as exc:
                log.debug("actor %r: unsubscribe %s: %r", self.name, sub.subject, exc)

    async def stop(self) -> None:
        """Stop receiving, finish the queued messages, run ``on_stop``; wait for all that."""
        await self._unsubscribe()
        self._mailbox.close()
        await self._stopped.wait()

    async def _handle(self, actor: Actor, msg: Incoming) -> None:
        rt = self._rt
        headers = msg.headers
        try:
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
            payload = decode_body(msg.data, headers, rt.codecs)
        except (CodecError, TenantError) as exc:
            await self._reject(msg, exc)
            return
        except Exception as exc:  # a message class's own validator, say
            await self._reject(msg, CodecError(f"cannot build the message: {exc!r}"))
            return
        ctx = Context(rt, self.name, msg)
        token = current_context.set(ctx)
        try:
            if ctx.deadline is None:
                result = await actor.on_message(payload, ctx)
            else:
                scope = asyncio.timeout_at(ctx.deadline)
                try:
                    async with scope:
                        result = await actor.on_message(payload, ctx)
                except TimeoutError:
                    if not scope.expired():
                        raise
                    self.failed += 1
                    log.warning(
                        "actor %r: handler outlived the asker's deadline on %s; cancelled",
                        self.name, msg.subject,
                    )  # fmt: skip
                    return
        except Exception as exc:
            self.failed += 1
            log.error("actor %r: handler raised on %s", self.name, msg.subject, exc_info=exc)
            if msg.reply:
                await self._send_error(msg.reply, type(exc).__name__, str(exc), "handler")
            return
        finally:
            current_context.reset(token)
        self.handled += 1
        if msg.reply:
            await self._send_reply(msg.reply, result)

    async def _send_reply(self, reply: str, result: object) -> None:
        rt = self._rt
        headers = {MESSAGE_ID: new_message_id()}
        try:
            data = encode_body(result, rt.codecs.default, headers)
            await rt.transport.publish(reply, data, headers=headers)
        except CodecError as exc:
            log.error("actor %r: cannot send its reply: %s", self.name, exc)
            await self._send_error(reply, type(exc).__name__, f"reply not sent: {exc}", "sdk")
        except ActorsError as exc:
            log.warning("actor %r: reply lost: %r", self.name, exc)

    async def _send_error(self, reply: str, type_name: str, message: str, origin: str) -> None:
        rt = self._rt
        data, headers = encode_error(type_name, message[:4096], rt.codecs.default, origin=origin)
        try:
            await rt.transport.publish(reply, data, headers=headers)
        except ActorsError as exc:
            log.warning("actor %r: error reply lost: %r", self.name, exc)

    async def _reject(self, msg: Incoming, exc: ActorsError) -> None:
        rt = self._rt
        self.rejected += 1
        reason = _reason(exc)
        log.warning("actor %r rejected a message on %s: %s", self.name, msg.subject, reason)
        if msg.reply:
            await self._send_error(msg.reply, type(exc).__name__, str(exc), "sdk")
        headers = dict(msg.headers or {})
        headers[DEAD_REASON] = reason
        try:
            await rt.transport.publish(dlq_subject(self.name, rt.tenant), msg.data, headers=headers)
        except ActorsError as dead:
            log.error("actor %r: dead letter lost: %r", self.name, dead)
