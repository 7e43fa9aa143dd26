"""An actor's feeds: its event subscriptions and the workflows it follows.

Rules:

* Every feed delivers into the actor's one mailbox, like its inbox: one at a time,
  supervised, traced.
* Feeds belong to the actor, not to an instance: they survive restarts; two handlers
  subscribing alike make one feed (one at a time, under a lock); none outlives the actor
  (one made while the actor stops is closed at once).
* A durable feed is a JetStream consumer named by :func:`feed_consumer`, shared by its
  queue group; a workflow follower's is ordered (one step at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import final

from motadata_actors._errors import ActorsError, TransportClosed
from motadata_actors.mailbox import Incoming, Mailbox, StartAt, Subscription, workflow_subject
from motadata_actors.telemetry._logging import get_logger

from ._pubsub import Subscribe, feed_consumer
from ._runtime import Runtime

__all__ = ("Feeds",)

log = get_logger("actors")

_Key = tuple[str, str, str | None, bool]  # kind, event type or workflow id, group, durable


@final
class Feeds:
    """The feeds of one actor.

    Args:
        rt: the system's runtime.
        name: the actor's name.
        path: the actor's path, for logs.
        mailbox: where every feed delivers.
    """

    def __init__(self, rt: Runtime, name: str, path: str, mailbox: Mailbox[Incoming]) -> None:
        self._rt = rt
        self._name = name
        self._path = path
        self._mailbox = mailbox
        self._feeds: dict[_Key, Subscription] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    async def subscribe(self, spec: Subscribe) -> bool:
        """Deliver ``spec``'s events into the mailbox; False if already subscribed so.

        Raises:
            ConfigError: a durable subscription without JetStream.
            ConnectionLost: the server cannot be reached.
            TransportClosed: the actor is stopping.
        """
        rt = self._rt
        group = spec.group(self._name)
        subject = spec.subject(rt.tenant)

        async def open_() -> Subscription:
            if not spec.durable:
                return await rt.transport.subscribe(subject, queue=group, mailbox=self._mailbox)
            durable = rt.durable(f"actor {self._name!r}: a durable event subscription")
            assert group is not None  # Subscribe refuses broadcast with durable
            return await durable.open_feed(
                "events", rt.tenant, subject, feed_consumer("events", group, spec.event_type),
                self._mailbox, rt.durable_config, start=spec.start, ordered=spec.ordered,
                agent=self._name,
            )  # fmt: skip

        return await self._add(("events", spec.event_type, group, spec.durable), open_)

    async def follow(self, workflow_id: str, start: StartAt) -> bool:
        """Deliver a workflow's steps into the mailbox, in order; False if already following.

        Raises:
            ConfigError: no JetStream.
            ConnectionLost: the server cannot be reached.
            TransportClosed: the actor is stopping.
        """
        rt = self._rt
        subject = workflow_subject(workflow_id, rt.tenant)
        durable = rt.durable(f"actor {self._name!r}: following a workflow")

        async def open_() -> Subscription:
            return await durable.open_feed(
                "workflows", rt.tenant, subject, feed_consumer("wf", self._name, workflow_id),
                self._mailbox, rt.durable_config, start=start, ordered=True, agent=self._name,
            )  # fmt: skip

        return await self._add(("workflow", workflow_id, self._name, True), open_)

    async def _add(self, key: _Key, open_: Callable[[], Awaitable[Subscription]]) -> bool:
        async with self._lock:
            self._check_open()
            if key in self._feeds:
                return False
            sub = await open_()
            try:
                self._check_open()  # closing may have begun meanwhile
            except TransportClosed:
                await sub.unsubscribe()
                raise
            self._feeds[key] = sub
        log.debug("actor %s: subscribed to %s", self._path, sub.subject)
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(f"actor {self._path} is stopping: no new subscriptions")

    async def remove(self, kind: str, name: str) -> int:
        """Stop the feeds of ``kind`` (``events`` or ``workflow``) to ``name``; how many."""
        async with self._lock:
            keys = [k for k in self._feeds if k[0] == kind and k[1] == name]
            subs = [self._feeds.pop(key) for key in keys]
        await _unsubscribe(subs, self._path)
        return len(subs)

    async def close(self) -> None:
        """Stop every feed and refuse new ones (the actor stops)."""
        self._closed = True
        subs, self._feeds = list(self._feeds.values()), {}
        await _unsubscribe(subs, self._path)


async def _unsubscribe(subs: list[Subscription], path: str) -> None:
    for sub in subs:
        try:
            await sub.unsubscribe()
        except ActorsError as exc:
            log.debug("actor %s: unsubscribe %s: %r", path, sub.subject, exc)
