"""Durable mailboxes on JetStream: the NATS transport's durable side, put together.

A stream per tenant, a shared pull consumer per agent, kept events and workflows. The
jobs live in their own modules; this one composes them into the
:class:`~motadata_actors.mailbox.DurableStore` the actors use and owns what runs:

================================  ========================================================
:mod:`._js_names`                 what the tenant's streams and consumers are called
:mod:`._js_admin`                 streams and consumers: ensure, drift report, describe,
                                  apply
:mod:`._js_pull`                  the pull loop: consumer -> mailbox, in-progress acks for
                                  every unsettled message, reopening deleted consumers,
                                  dead-lettering what ran out of deliveries
:mod:`._js_publish`               publish-with-ack, no-stream diagnosis, requests via
                                  ``Sdk-Reply-To``
:mod:`._js_logs`                  kept events and workflows: append and read
:mod:`._js_dead_letters`          the dead-letter store
:mod:`._natspy`                   nats-py itself
================================  ========================================================

Every pull loop's task belongs to the store that made it: it ends on its own once its
subscription is stopped and nothing it delivered is left unsettled, and :meth:`aclose`
cancels and awaits whatever still runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import final

from motadata_actors.telemetry import get_logger

from ._js_admin import StreamAdmin
from ._js_dead_letters import JetStreamDeadLetters
from ._js_logs import KeptLogs
from ._js_names import agents_stream, consumer_name, dead_letter_stream, log_stream
from ._js_publish import DurablePublisher
from ._js_pull import Pull
from ._natspy import JetStream
from ._queue import Mailbox
from ._subjects import dlq_subject
from ._transport import DurableConfig, Incoming, LogKind, StartAt, Subscription

__all__ = (
    "JetStreamDeadLetters",
    "JetStreamMailboxes",
    "agents_stream",
    "consumer_name",
    "dead_letter_stream",
    "log_stream",
)

log = get_logger("jetstream")


@final
class JetStreamMailboxes:
    """A :class:`~motadata_actors.mailbox.DurableStore` on one nats-py connection.

    Made by :attr:`NatsTransport.durable <motadata_actors.mailbox.NatsTransport.durable>`.

    Args:
        js: JetStream on the connection.
        dead_letters: where a message that ran out of deliveries is dead-lettered.
    """

    def __init__(self, js: JetStream, dead_letters: JetStreamDeadLetters) -> None:
        self._js = js
        self._dead_letters = dead_letters
        self._admin = StreamAdmin(js)
        self._publisher = DurablePublisher(js, js.timeout)
        self._logs = KeptLogs(js, self._admin, self._publisher)
        self._pulls: dict[asyncio.Task[None], Pull] = {}
        # The jobs' own methods, bound once (each documented where it lives).
        self.publish = self._publisher.publish
        """:meth:`DurablePublisher.publish <._js_publish.DurablePublisher.publish>`."""
        self.request = self._publisher.request
        """:meth:`DurablePublisher.request <._js_publish.DurablePublisher.request>`."""
        self.append = self._logs.append
        """:meth:`KeptLogs.append <._js_logs.KeptLogs.append>`."""
        self.read = self._logs.read
        """:meth:`KeptLogs.read <._js_logs.KeptLogs.read>`."""
        self.captures = self._admin.captures
        """:meth:`StreamAdmin.captures <._js_admin.StreamAdmin.captures>`."""
        self.describe = self._admin.describe
        """:meth:`StreamAdmin.describe <._js_admin.StreamAdmin.describe>`."""
        self.apply = self._admin.apply
        """:meth:`StreamAdmin.apply <._js_admin.StreamAdmin.apply>`."""

    async def open_mailbox(
        self, tenant: str, agent: str, mailbox: Mailbox[Incoming], config: DurableConfig
    ) -> Subscription:
        """Pull ``agent``'s durable messages into ``mailbox`` until unsubscribed."""
        capacity = mailbox.statistics().capacity

        async def ensure() -> None:
            await self._admin.ensure_agent(tenant, agent, config, capacity)

        return await self._open(
            Pull(
                self._js, agents_stream(tenant), consumer_name(agent), ensure, mailbox, config,
                prefetch=config.prefetch, label=f"sdk.agent.*.{agent}.{tenant}",
                dead_subject=dlq_subject(agent, tenant), dead_letter=self._dead_letters.store,
                drop_after_dead_letter=True,
            )
        )  # fmt: skip

    async def open_feed(
        self,
        kind: LogKind,
        tenant: str,
        subject: str,
        consumer: str,
        mailbox: Mailbox[Incoming],
        config: DurableConfig,
        *,
        start: StartAt = "all",
        ordered: bool = False,
        agent: str,
    ) -> Subscription:
        """Pull the tenant's kept events or workflow steps on ``subject`` into ``mailbox``."""
        stream = log_stream(kind, tenant)
        capacity = 1 if ordered else mailbox.statistics().capacity

        async def ensure() -> None:
            self._admin.forget_log(kind, tenant)  # opening or reopening: make sure it is there
            await self._admin.ensure_log(kind, tenant, config)
            await self._admin.ensure_feed(
                stream, consumer, subject, config, capacity, start, kind == "workflows"
            )

        return await self._open(
            Pull(
                self._js, stream, consumer, ensure, mailbox, config,
                prefetch=1 if ordered else config.prefetch, label=f"{subject} ({consumer})",
                dead_subject=dlq_subject(agent, tenant), dead_letter=self._dead_letters.store,
                drop_after_dead_letter=False,
            )
        )  # fmt: skip

    async def open_pull(
        self,
        stream: str,
        consumer: str,
        ensure: Callable[[], Awaitable[None]],
        mailbox: Mailbox[Incoming],
        config: DurableConfig,
    ) -> Subscription:
        """Pull from ``consumer`` of ``stream`` into ``mailbox`` (``ensure`` makes them)."""
        tenant = stream.rsplit("_", 1)[-1]
        return await self._open(
            Pull(
                self._js, stream, consumer, ensure, mailbox, config,
                prefetch=config.prefetch, label=f"{stream}/{consumer}",
                dead_subject=dlq_subject("reminders", tenant),
                dead_letter=self._dead_letters.store, drop_after_dead_letter=False,
            )
        )  # fmt: skip

    async def _open(self, pull: Pull) -> Subscription:
        """Start ``pull``'s loop, owned here; its subscription stops it."""
        await pull.open()
        task = asyncio.create_task(pull.run(), name=f"durable:{pull.label}")
        self._pulls[task] = pull
        task.add_done_callback(self._ended)
        return pull.subscription()

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A pull loop ended (stopped, nothing left to keep): forget it, say if it failed."""
        pull = self._pulls.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            label = pull.label if pull is not None else "?"
            log.error("the pull loop of %s failed", label, exc_info=task.exception())

    async def aclose(self) -> None:
        """Stop every pull loop (what is unsettled comes again) and the reply inbox."""
        pulls = dict(self._pulls)
        for pull in pulls.values():
            await pull.stop()
        for task in pulls:
            task.cancel()
        if pulls:
            await asyncio.wait(pulls)
        await self._publisher.aclose()
