"""Durable reminders: messages an agent asked to receive later, kept by the server.

A reminder is defined under ``sdk.reminder.<to>.<name>.<tenant>`` in the tenant's stream
``SDK_REMINDERS_<tenant>``, which runs message schedules (nats-server 2.12+, ``@every``
2.14+): at its time the server publishes it to ``sdk.reminded.<tenant>``, where a durable
consumer shared by the tenant's processes picks it up; the actors layer hands it to the
agent and acknowledges it once handled, so a reminder fires at least once, also after
the process that set it died. One-shot reminders are removed by the server once fired;
periodic ones stay until cancelled. Defining a reminder again under its name replaces it.

In process, :class:`MemoryReminders` keeps them on timers with the same interface (and
is, of course, gone with the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Protocol, final, runtime_checkable

import attrs

from motadata_actors._errors import ConfigError, MailboxFull

from ._envelope import Sealed
from ._js_names import reminder_subject
from ._queue import Mailbox
from ._subjects import check_agent, check_id, check_key
from ._transport import DurableConfig, Incoming, Subscription

__all__ = (
    "KeepsReminders",
    "MemoryReminders",
    "ReminderInfo",
    "ReminderStore",
    "fired_subject",
    "parse_definition",
    "schedule_text",
)


@final
@attrs.frozen(slots=True, order=True)
class ReminderInfo:
    """A reminder as kept: its name and schedule (``@at <time>`` or ``@every <n>s``)."""

    name: str
    schedule: str


def schedule_text(*, after: float | None, at: datetime.datetime | None, every: float | None) -> str:
    """The ``Nats-Schedule`` value for exactly one of ``after``, ``at`` and ``every``.

    Raises:
        ConfigError: not exactly one, a naive ``at``, or ``every`` under one second or
            not whole seconds (the server's resolution).
    """
    if sum(x is not None for x in (after, at, every)) != 1:
        raise ConfigError("a reminder needs exactly one of after=, at= and every=")
    if every is not None:
        if not isinstance(every, (int, float)) or every < 1 or every != int(every):
            raise ConfigError(f"every= must be whole seconds >= 1, not {every!r}")
        return f"@every {int(every)}s"
    if after is not None:
        if not isinstance(after, (int, float)) or after < 0:
            raise ConfigError(f"after= must be seconds >= 0, not {after!r}")
        at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=after)
    assert at is not None
    if not isinstance(at, datetime.datetime) or at.tzinfo is None:
        raise ConfigError(f"at= must be an aware datetime (with a time zone), not {at!r}")
    # The server reads whole seconds: round up, never fire early.
    when = at.astimezone(datetime.UTC)
    if when.microsecond:
        when = when.replace(microsecond=0) + datetime.timedelta(seconds=1)
    return "@at " + when.strftime("%Y-%m-%dT%H:%M:%SZ")


def fired_subject(tenant: str) -> str:
    """Where a tenant's reminders are published when they fire: ``sdk.reminded.<t>``."""
    return f"sdk.reminded.{check_id(tenant, 'tenant')}"


def parse_definition(subject: str) -> tuple[str, str] | None:
    """``(to, name)`` of a definition subject ``sdk.reminder.<to>.<name>.<t>``."""
    tokens = subject.split(".")
    if len(tokens) != 5 or tokens[:2] != ["sdk", "reminder"]:
        return None
    return tokens[2], tokens[3]


def definition(to: str, name: str, tenant: str) -> str:
    """The checked definition subject of reminder ``name`` of ``to``."""
    return reminder_subject(check_agent(to), check_key(name), check_id(tenant, "tenant"))


class ReminderStore(Protocol):
    """Where a transport keeps reminders."""

    async def schedule(self, tenant: str, to: str, name: str, sealed: Sealed) -> None:
        """Define (or replace) reminder ``name`` of ``to`` (``sealed``: ``seal_reminder``'s)."""
        ...

    async def list(self, tenant: str, to: str) -> list[ReminderInfo]:
        """The reminders of ``to`` still to fire, by name."""
        ...

    async def cancel(self, tenant: str, to: str, name: str) -> bool:
        """Remove reminder ``name`` of ``to``; whether there was one."""
        ...

    async def open_fired(
        self, tenant: str, mailbox: Mailbox[Incoming], config: DurableConfig
    ) -> Subscription:
        """Deliver the tenant's fired reminders into ``mailbox`` (acknowledge each handled)."""
        ...


@runtime_checkable
class KeepsReminders(Protocol):
    """A transport that keeps reminders (JetStream schedules on NATS; timers in process)."""

    @property
    def reminders(self) -> ReminderStore:
        """Its reminder store."""
        ...


@final
class _Fired:
    """A fired reminder in process: what JetStream delivers, without acknowledgements."""

    __slots__ = ("data", "headers", "reply", "subject")

    def __init__(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.subject = subject
        self.reply = ""
        self.data = data
        self.headers: dict[str, str] | None = headers


@final
class MemoryReminders:
    """Reminders on the event loop's timers: the in-process transport's."""

    def __init__(self) -> None:
        self._defs: dict[str, tuple[Sealed, asyncio.TimerHandle]] = {}
        self._boxes: dict[str, list[Mailbox[Incoming]]] = {}

    async def schedule(self, tenant: str, to: str, name: str, sealed: Sealed) -> None:
        """Define (or replace) reminder ``name`` of ``to``."""
        subject = definition(to, name, tenant)
        await self.cancel(tenant, to, name)
        self._arm(tenant, subject, sealed)

    def _arm(self, tenant: str, subject: str, sealed: Sealed) -> None:
        loop = asyncio.get_running_loop()
        kind, _, value = sealed.headers["Nats-Schedule"].partition(" ")
        if kind == "@every":
            delay = float(value.rstrip("s"))
        else:
            when = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            delay = max(0.0, (when - now).total_seconds())
        handle = loop.call_later(delay, self._fire, tenant, subject, sealed, kind == "@every")
        self._defs[subject] = (sealed, handle)

    def _fire(self, tenant: str, subject: str, sealed: Sealed, again: bool) -> None:
        if again:
            self._arm(tenant, subject, sealed)
        else:
            self._defs.pop(subject, None)
        headers = {"Nats-Scheduler": subject, "Nats-Schedule": sealed.headers["Nats-Schedule"]}
        for box in self._boxes.get(tenant, []):
            if not box.closed:
                with contextlib.suppress(MailboxFull):  # in process: at most once
                    box.send_nowait(_Fired(fired_subject(tenant), sealed.data, headers))
                break  # one consumer per tenant gets it, as a shared JetStream consumer

    async def list(self, tenant: str, to: str) -> list[ReminderInfo]:
        """The reminders of ``to`` still to fire, by name."""
        prefix = definition(to, "x", tenant).rsplit(".", 2)[0] + "."
        return sorted(
            ReminderInfo(subject.split(".")[3], sealed.headers["Nats-Schedule"])
            for subject, (sealed, _) in self._defs.items()
            if subject.startswith(prefix)
        )

    async def cancel(self, tenant: str, to: str, name: str) -> bool:
        """Remove reminder ``name`` of ``to``; whether there was one."""
        found = self._defs.pop(definition(to, name, tenant), None)
        if found is not None:
            found[1].cancel()
        return found is not None

    async def open_fired(
        self, tenant: str, mailbox: Mailbox[Incoming], config: DurableConfig
    ) -> Subscription:
        """Deliver the tenant's fired reminders into ``mailbox``."""
        boxes = self._boxes.setdefault(tenant, [])
        boxes.append(mailbox)

        async def unsubscribe() -> None:
            if mailbox in boxes:
                boxes.remove(mailbox)

        return Subscription(fired_subject(tenant), None, mailbox, unsubscribe)
