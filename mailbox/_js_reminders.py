"""Reminders on JetStream: message schedules in ``SDK_REMINDERS_<tenant>``.

The stream captures the definitions (``sdk.reminder.*.*.<t>``) and what fires
(``sdk.reminded.<t>``), and runs schedules and per-message TTLs; fired copies are read by
one durable consumer, ``reminders``, shared by the tenant's processes (see
:mod:`._reminders`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import final

from ._envelope import Sealed
from ._js_names import reminders_stream
from ._js_values import ConsumerSpec, NotFound, Refused, StreamSpec
from ._natspy import JetStream
from ._queue import Mailbox
from ._reminders import ReminderInfo, definition, fired_subject
from ._transport import DurableConfig, Incoming, Subscription

__all__ = ("JetStreamReminders",)

CONSUMER = "reminders"


@final
class JetStreamReminders:
    """A :class:`~._reminders.ReminderStore` on JetStream.

    Args:
        js: JetStream on the connection.
        open_pull: starts a pull loop of ``(stream, consumer, ensure, mailbox, config)``
            owned by the durable side (so the transport's close stops it).
    """

    def __init__(
        self,
        js: JetStream,
        open_pull: Callable[
            [str, str, Callable[[], Awaitable[None]], Mailbox[Incoming], DurableConfig],
            Awaitable[Subscription],
        ],
    ) -> None:
        self._js = js
        self._open_pull = open_pull
        self._made: set[str] = set()

    async def _ensure(self, tenant: str) -> str:
        name = reminders_stream(tenant)
        if name in self._made:
            return name
        spec = StreamSpec(
            name, (f"sdk.reminder.*.*.{tenant}", fired_subject(tenant)),
            description=f"motadata-actors reminders of tenant {tenant}", schedules=True,
        )  # fmt: skip
        try:
            await self._js.stream_info(name)
        except NotFound:
            try:
                await self._js.add_stream(spec)
            except Refused:
                await self._js.stream_info(name)  # made meanwhile; else the refusal stands
        self._made.add(name)
        return name

    async def schedule(self, tenant: str, to: str, name: str, sealed: Sealed) -> None:
        """Define (or replace) reminder ``name`` of ``to``.

        Raises:
            ConfigError: the server cannot run schedules (older than 2.12), or refused.
            ConnectionLost: the server cannot be reached.
        """
        subject = definition(to, name, tenant)
        stream = await self._ensure(tenant)
        await self._js.purge(stream, subject)  # replaced, not added to
        await self._js.publish(subject, sealed.data, sealed.headers)

    async def list(self, tenant: str, to: str) -> list[ReminderInfo]:
        """The reminders of ``to`` still to fire, by name."""
        stream = await self._ensure(tenant)
        prefix = definition(to, "x", tenant).rsplit(".", 2)[0]
        out = []
        for subject in await self._js.subjects(stream, f"{prefix}.*.{tenant}"):
            kept = await self._js.last(stream, subject)
            if kept is not None:
                out.append(
                    ReminderInfo(subject.split(".")[3], kept.headers.get("Nats-Schedule", ""))
                )
        return out

    async def cancel(self, tenant: str, to: str, name: str) -> bool:
        """Remove reminder ``name`` of ``to``; whether there was one."""
        subject = definition(to, name, tenant)
        stream = await self._ensure(tenant)
        found = await self._js.subjects(stream, subject)
        await self._js.purge(stream, subject)
        return bool(found)

    async def open_fired(
        self, tenant: str, mailbox: Mailbox[Incoming], config: DurableConfig
    ) -> Subscription:
        """Pull the tenant's fired reminders into ``mailbox``, by the shared consumer."""
        stream = reminders_stream(tenant)

        async def ensure() -> None:
            self._made.discard(stream)  # opening or reopening: make sure it is there
            await self._ensure(tenant)
            spec = ConsumerSpec(
                CONSUMER, fired_subject(tenant), ack_wait=config.ack_wait,
                max_deliver=config.max_deliver, max_ack_pending=mailbox.statistics().capacity,
                description=f"motadata-actors fired reminders of tenant {tenant}",
            )  # fmt: skip
            with contextlib.suppress(Refused):  # made meanwhile
                await self._js.add_consumer(stream, spec)

        return await self._open_pull(stream, CONSUMER, ensure, mailbox, config)
