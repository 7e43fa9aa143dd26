"""Reminders and timers of agents.

* A **timer** (:meth:`Actor.start_timer`) lives in memory: at its time the agent is told
  the message, through its mailbox like any other (so a keyed agent's order holds). It
  is cancelled when the instance ends (deactivated, stopped, crashed, restarted).
* A **reminder** (:meth:`Actor.remind`) is kept by the server
  (:mod:`motadata_actors.mailbox._reminders`): one-shot or periodic, listed and cancelled
  by name, it survives the process that set it and wakes a deactivated keyed agent. When
  it fires, one process of the tenant asks the agent with a :class:`Reminder` and
  acknowledges it once the handler returned; a failure or a lost process means it comes
  again: at least once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from motadata_actors._errors import ActorsError, CodecError, ConfigError
from motadata_actors.codecs import field, message
from motadata_actors.mailbox import DurableMessage, Incoming, Mailbox, Subscription
from motadata_actors.mailbox._envelope import open_state, reminder_of
from motadata_actors.mailbox._reminders import KeepsReminders, ReminderStore, parse_definition
from motadata_actors.mailbox._subjects import split_keyed
from motadata_actors.telemetry._logging import get_logger

from ._clock import Timer
from ._policy import AskPolicy

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ("Reminder", "ReminderService", "Timers", "reminder_service", "reminder_store")

log = get_logger("actors")

_ASK: Final = AskPolicy(timeout=30.0, attempt_timeout=2.0, attempts=15)  # rides out a lease


@message("sdk.reminder.v1")
class Reminder:
    """What an agent receives when one of its reminders fires.

    Attributes:
        name: the reminder's name.
        payload: the value given to :meth:`Actor.remind` (None if none).
    """

    name: str = field(proto=1)
    payload: Any = field(proto=2, default=None)


def reminder_store(rt: Runtime) -> ReminderStore:
    """The transport's reminder store, or a ConfigError saying what is missing."""
    transport = rt.transport
    if not isinstance(transport, KeepsReminders):
        raise ConfigError("reminders need a transport that keeps them (NATS or in process)")
    return transport.reminders


@final
class ReminderService:
    """Hands a tenant's fired reminders to their agents, in this process.

    Started by the first keyed kind or reminder of a system; every such process reads
    the tenant's one shared consumer, so each firing goes to one of them.
    """

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._mailbox: Mailbox[Incoming] = Mailbox(64)
        self._sub: Subscription | None = None
        self._scope = anyio.CancelScope()
        self.fired = 0
        """Reminders handed over (and acknowledged) here."""

    async def start(self) -> None:
        """Open the tenant's fired reminders (idempotent)."""
        if self._sub is not None:
            return
        rt = self._rt
        if "sdk.reminder.v1" not in rt.codecs.registry:  # a system's own registry
            rt.codecs.registry.register(Reminder, "sdk.reminder.v1")
        self._sub = await reminder_store(rt).open_fired(rt.tenant, self._mailbox, rt.durable_config)
        rt.run_soon(self._run)

    async def _run(self) -> None:
        with self._scope:
            while True:
                try:
                    msg = await self._mailbox.receive()
                except StopAsyncIteration:
                    return
                await self._hand_over(msg)

    async def _hand_over(self, msg: Incoming) -> None:
        from ._ref import ActorRef  # the refs import this module's Reminder

        rt = self._rt
        found = reminder_of(msg)
        target = parse_definition(found[0]) if found is not None else None
        durable = msg if type(msg) is DurableMessage else None
        if target is None:
            log.warning("reminders of %s: not a reminder on %s; dropped", rt.tenant, msg.subject)
            if durable is not None:
                await durable.term()
            return
        to, name = target
        kind, key = split_keyed(to)
        try:
            payload = open_state(msg.data, rt.codecs)
            ref = ActorRef(rt, kind, _ASK, key=key)
            await ref.ask(Reminder(name=name, payload=payload))
        except CodecError as exc:
            log.error("reminder %s of %s cannot be read: %s", name, to, exc)
            if durable is not None:
                await durable.term()
            return
        except ActorsError as exc:
            log.warning("reminder %s of %s not handled (it comes again): %r", name, to, exc)
            if durable is not None:
                delay = rt.durable_config.redelivery_delay(durable.delivered)
                await _quietly(durable.nak, delay)
            return
        self.fired += 1
        rt.events.record("reminded", kind, f"{to}: {name}")
        if durable is not None:
            await _quietly(durable.ack)

    async def close(self) -> None:
        """Stop reading (what was not acknowledged fires again elsewhere)."""
        sub, self._sub = self._sub, None
        self._scope.cancel()
        if sub is not None:
            try:
                await sub.unsubscribe()
            except ActorsError as exc:
                log.debug("reminders of %s: unsubscribe: %r", self._rt.tenant, exc)


async def _quietly(settle: Callable[..., Any], *args: Any) -> None:
    try:
        await settle(*args)
    except ActorsError as exc:  # a lost verdict only means it comes again
        log.debug("reminder not settled: %r", exc)


async def reminder_service(rt: Runtime) -> ReminderService:
    """The system's reminder service, started on first use."""
    if rt.reminders is None:
        rt.reminders = ReminderService(rt)
    await rt.reminders.start()
    return rt.reminders


@final
class Timers:
    """One instance's timers, by name (cancelled together when the instance ends)."""

    __slots__ = ("_rt", "_timers")

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._timers: dict[str, Timer] = {}

    def start(self, name: str, delay: float, fire: Callable[[], Any], repeat: bool) -> None:
        """Call ``fire`` after ``delay`` seconds (every ``delay`` with ``repeat``)."""
        if not (isinstance(delay, (int, float)) and delay >= 0):
            raise ConfigError(f"a timer's delay must be seconds >= 0, not {delay!r}")
        if repeat and delay <= 0:
            raise ConfigError("a repeating timer needs a delay > 0")
        self.cancel(name)
        clock = self._rt.clock

        def due() -> None:
            if repeat:
                self._timers[name] = clock.call_at(clock.now() + delay, due)
            else:
                self._timers.pop(name, None)
            fire()

        self._timers[name] = clock.call_at(clock.now() + delay, due)

    def cancel(self, name: str) -> bool:
        """Cancel timer ``name``; whether it was running."""
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        return timer is not None

    def names(self) -> list[str]:
        """The running timers."""
        return sorted(self._timers)

    def cancel_all(self) -> None:
        """Cancel every timer."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
