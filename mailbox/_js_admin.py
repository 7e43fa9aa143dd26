"""JetStream administration: a tenant's streams and consumers made, reported and changed.

Rules:

* The tenant's stream ``SDK_AGENTS_<tenant>`` captures the inbox subjects of durable
  agents only (``sdk.agent.*.<to>.<tenant>``, added as each is spawned), so core agents'
  subjects are never stored. Each agent name has one durable pull consumer ``agent_<to>``
  that every replica binds to; ``max_ack_pending`` (the mailbox's capacity) bounds what
  the server hands out unsettled.
* Settings that differ between processes are reported once, never fought over: the first
  process creates the stream and consumer from its settings; later ones only add their
  subject and warn when the rest differs (``python -m motadata_actors streams apply``
  changes them, :meth:`StreamAdmin.apply`).
* The kept logs (``SDK_EVENTS_<tenant>``, ``SDK_WORKFLOWS_<tenant>``) keep everything on
  their subjects (``limits`` retention) whoever reads them; a feed is a durable consumer
  on one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import final

from motadata_actors._errors import ConfigError, ConnectionLost
from motadata_actors.telemetry import get_logger

from ._js_names import agents_stream, consumer_name, log_stream, log_subjects
from ._js_values import (
    ConsumerInfo,
    ConsumerSpec,
    NoJetStream,
    NotFound,
    Refused,
    StreamInfo,
    StreamSpec,
)
from ._natspy import JetStream
from ._subjects import agent_inbox
from ._transport import DurableConfig, LogKind, StartAt

__all__ = ("StreamAdmin",)

log = get_logger("jetstream")

_FOLLOWER_IDLE = 24 * 3600.0  # seconds an unread workflow follower's consumer is kept
_STREAM_KEYS = ("retention", "max_age", "max_bytes", "replicas", "duplicate_window")
_CONSUMER_KEYS = ("ack_wait", "max_deliver", "max_ack_pending")


def _agents_spec(tenant: str, subjects: tuple[str, ...], cfg: DurableConfig) -> StreamSpec:
    return StreamSpec(
        agents_stream(tenant), subjects,
        description=f"motadata-actors durable mailboxes of tenant {tenant}",
        retention=cfg.retention, max_age=cfg.max_age, max_bytes=cfg.max_bytes,
        replicas=cfg.replicas, duplicate_window=cfg.duplicate_window, message_ttl=True,
    )  # fmt: skip


def _agent_consumer(tenant: str, agent: str, cfg: DurableConfig, capacity: int) -> ConsumerSpec:
    return ConsumerSpec(
        consumer_name(agent), agent_inbox(agent, tenant), ack_wait=cfg.ack_wait,
        max_deliver=cfg.max_deliver, max_ack_pending=capacity,
        description=f"motadata-actors mailbox of agent {agent}",
    )  # fmt: skip


@final
class StreamAdmin:
    """Makes, reports and changes a connection's tenant streams and consumers."""

    def __init__(self, js: JetStream) -> None:
        self._js = js
        self._locks: dict[str, asyncio.Lock] = {}
        self._warned: set[str] = set()
        self._logs: set[str] = set()  # events and workflows streams known to exist

    # -- durable mailboxes --------------------------------------------------------------

    async def ensure_agent(
        self, tenant: str, agent: str, cfg: DurableConfig, capacity: int
    ) -> None:
        """Capture ``agent``'s inbox in the tenant's stream and make its consumer.

        Raises:
            ConfigError: JetStream refused the stream or the change (the reason is its own).
            ConnectionLost: the server cannot be reached.
        """
        await self._ensure_subject(tenant, agent_inbox(agent, tenant), cfg)
        await self._ensure_agent_consumer(tenant, agent, cfg, capacity)

    async def _ensure_subject(self, tenant: str, subject: str, cfg: DurableConfig) -> None:
        """Create the tenant's stream, or add ``subject`` to it; report settings drift.

        Several processes may edit the stream's subject list at once, and JetStream has no
        compare-and-set for it: a subject counts as added once it was seen in the list
        twice, a short random pause apart (a concurrent overwrite shows up in between).
        """
        name = agents_stream(tenant)
        lock = self._locks.setdefault(name, asyncio.Lock())
        seen_once = False
        async with lock:
            for _ in range(20):
                try:
                    info = await self._js.stream_info(name)
                except NotFound:
                    try:
                        await self._js.add_stream(_agents_spec(tenant, (subject,), cfg))
                    except Refused:
                        if not await self.exists(name):  # not a race: a refusal
                            raise
                    continue  # read it back (ours, or another process's)
                self._report_stream_drift(info, cfg)
                if not info.message_ttl:  # made before messages had a time to live
                    await self._js.edit_stream(info, {"message_ttl": True})
                    continue
                if subject in info.subjects:
                    if seen_once:
                        return
                    seen_once = True
                    await asyncio.sleep(random.uniform(0.05, 0.15))
                    continue
                seen_once = False
                await self._js.edit_stream(info, {"subjects": (*info.subjects, subject)})
            raise ConnectionLost(f"could not add {subject!r} to stream {name!r} (20 tries)")

    def _report_stream_drift(self, info: StreamInfo, cfg: DurableConfig) -> None:
        wanted = _agents_spec("-", (), cfg)
        drift = {
            k: (getattr(info, k), getattr(wanted, k))
            for k in _STREAM_KEYS
            if getattr(info, k) != getattr(wanted, k)
        }
        if drift and info.name not in self._warned:
            self._warned.add(info.name)
            details = ", ".join(f"{k}: stream has {have!r}, settings say {want!r}"
                                for k, (have, want) in drift.items())  # fmt: skip
            log.warning(
                "stream %s differs from this process's settings (%s); left as it is: "
                "run `python -m motadata_actors streams apply` to change it",
                info.name, details,
            )  # fmt: skip

    async def _ensure_agent_consumer(
        self, tenant: str, agent: str, cfg: DurableConfig, capacity: int
    ) -> None:
        stream, spec = agents_stream(tenant), _agent_consumer(tenant, agent, cfg, capacity)
        try:
            have = await self._js.consumer_info(stream, spec.name)
        except NotFound:
            with contextlib.suppress(Refused):  # made meanwhile
                await self._js.add_consumer(stream, spec)
            return
        drift = {
            k: (getattr(have, k), getattr(spec, k))
            for k in _CONSUMER_KEYS
            if getattr(have, k) != getattr(spec, k)
        }
        if drift and spec.name not in self._warned:
            self._warned.add(spec.name)
            log.warning(
                "consumer %s of %s differs from this process's settings (%s); left as it is",
                spec.name, stream, drift,
            )  # fmt: skip

    async def captures(self, tenant: str, agent: str) -> bool:
        """Whether ``agent`` has a durable mailbox: the tenant's stream captures its inbox.

        Raises:
            ConnectionLost: JetStream did not answer.
        """
        try:
            info = await self._js.stream_info(agents_stream(tenant))
        except NotFound:
            return False
        except NoJetStream as exc:
            raise ConnectionLost(str(exc)) from exc
        return agent_inbox(agent, tenant) in info.subjects

    async def exists(self, stream: str) -> bool:
        """Whether ``stream`` exists."""
        try:
            await self._js.stream_info(stream)
        except NotFound:
            return False
        return True

    async def consumer_gone(self, stream: str, consumer: str) -> bool:
        """Whether ``consumer`` (or its stream) was deleted."""
        try:
            await self._js.consumer_info(stream, consumer)
        except NotFound:
            return True
        return False

    # -- kept events and workflows ------------------------------------------------------

    async def ensure_log(self, kind: LogKind, tenant: str, cfg: DurableConfig) -> None:
        """Make the tenant's events or workflows stream if it does not exist yet.

        It keeps every message on its subjects (``limits`` retention) for ``cfg.max_age``
        seconds and ``cfg.max_bytes`` bytes, whoever reads them.

        Raises:
            ConfigError: the server has no JetStream, or refused the stream.
            ConnectionLost: the server cannot be reached.
        """
        name = log_stream(kind, tenant)
        if name in self._logs:
            return
        spec = StreamSpec(
            name, (log_subjects(kind, tenant),),
            description=f"motadata-actors {kind} of tenant {tenant}", retention="limits",
            max_age=cfg.max_age, max_bytes=cfg.max_bytes, replicas=cfg.replicas,
            duplicate_window=cfg.duplicate_window,
        )  # fmt: skip
        try:
            if not await self.exists(name):
                try:
                    await self._js.add_stream(spec)
                except Refused:
                    if not await self.exists(name):  # not a race: a refusal
                        raise
        except NoJetStream as exc:
            raise ConfigError(
                f"{kind} kept in JetStream need a server with JetStream on (--jetstream)"
            ) from exc
        self._logs.add(name)

    def forget_log(self, kind: LogKind, tenant: str) -> None:
        """The ``kind`` stream may be gone: check again before the next use."""
        self._logs.discard(log_stream(kind, tenant))

    async def ensure_feed(
        self,
        stream: str,
        consumer: str,
        subject: str,
        cfg: DurableConfig,
        capacity: int,
        start: StartAt,
        expires: bool,
    ) -> None:
        """Make the feed's consumer, or bring its ``max_ack_pending`` to ``capacity``.

        ``capacity`` 1 makes an ordered feed: the server hands out the next message only
        once the one before was acked or terminated. ``expires``: the server deletes the
        consumer after a day unread (workflow followers). ``start`` applies to a new
        consumer; an existing one goes on from where it was.

        Raises:
            ConfigError: the consumer exists and reads another subject.
        """
        try:
            info = await self._js.consumer_info(stream, consumer)
        except NotFound:
            pass
        else:
            if info.filter_subject != subject:
                raise ConfigError(
                    f"consumer {consumer} of {stream} reads {info.filter_subject!r}, not "
                    f"{subject!r}: delete it (nats consumer rm) or use another name"
                )
            if info.max_ack_pending != capacity:  # made ordered, or no longer
                await self._js.edit_consumer(stream, info, max_ack_pending=capacity)
            return
        spec = ConsumerSpec(
            consumer, subject, ack_wait=cfg.ack_wait, max_deliver=cfg.max_deliver,
            max_ack_pending=capacity, description=f"motadata-actors feed of {subject}",
            start=start, inactive_threshold=_FOLLOWER_IDLE if expires else None,
        )  # fmt: skip
        with contextlib.suppress(Refused):  # made meanwhile
            await self._js.add_consumer(stream, spec)

    # -- operators ----------------------------------------------------------------------

    async def describe(self, tenant: str) -> list[str]:
        """Lines describing the tenant's streams and their consumers; [] if it has none.

        The streams: durable mailboxes, and the kept events and workflows when they exist.

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        lines: list[str] = []
        for name in (agents_stream(tenant), log_stream("events", tenant),
                     log_stream("workflows", tenant)):  # fmt: skip
            try:
                info = await self._js.stream_info(name)
                consumers = await self._js.consumers(name)
            except NotFound:
                continue
            except NoJetStream as exc:
                raise ConnectionLost(str(exc)) from exc
            lines += [
                f"stream {name}: {info.messages} message(s), {info.bytes} bytes; retention "
                f"{info.retention}, max_age {info.max_age}s, max_bytes {info.max_bytes}, "
                f"replicas {info.replicas}, duplicate_window {info.duplicate_window}s",
                f"  subjects: {', '.join(info.subjects)}",
            ]
            lines += [_consumer_line(ci) for ci in sorted(consumers, key=lambda ci: ci.name)]
        return lines

    async def apply(self, tenant: str, cfg: DurableConfig, capacity: int) -> list[str]:
        """Bring the tenant's stream and consumers to ``cfg``; return what changed.

        Retention cannot change on an existing stream (JetStream refuses): that is reported
        with what to do instead.

        Raises:
            ConfigError: JetStream refused a change.
            ConnectionLost: the server cannot be reached.
        """
        name = agents_stream(tenant)
        try:
            info = await self._js.stream_info(name)
        except NotFound:
            return [f"no stream {name}: it is made when a durable agent of {tenant!r} starts"]
        wanted = _agents_spec(tenant, info.subjects, cfg)
        changes: list[str] = []
        if info.retention != wanted.retention:
            changes.append(
                f"retention stays {info.retention}: JetStream cannot change it; delete the "
                f"stream (losing its messages) to recreate it as {cfg.retention}"
            )
        edits = {
            k: getattr(wanted, k)
            for k in _STREAM_KEYS[1:]
            if getattr(info, k) != getattr(wanted, k)
        }
        changes += [f"{name}.{_OLD_NAMES.get(k, k)}: {getattr(info, k)} -> {v}"
                    for k, v in edits.items()]  # fmt: skip
        try:
            if edits:
                await self._js.edit_stream(info, edits)
            for ci in await self._js.consumers(name):
                want = _agent_consumer(tenant, ci.name.removeprefix("agent_"), cfg, capacity)
                diff = [
                    f"{ci.name}.{k}: {getattr(ci, k)} -> {getattr(want, k)}"
                    for k in _CONSUMER_KEYS
                    if getattr(ci, k) != getattr(want, k)
                ]
                if diff:
                    await self._js.add_consumer(name, want)  # create-or-update
                    changes += diff
        except NoJetStream as exc:
            raise ConnectionLost(str(exc)) from exc
        return changes


_OLD_NAMES = {"replicas": "num_replicas"}  # JetStream's own name, as operators know it


def _consumer_line(ci: ConsumerInfo) -> str:
    return (
        f"  consumer {ci.name}: {ci.num_pending} waiting, {ci.num_ack_pending} being "
        f"handled, {ci.num_redelivered} redelivered; ack_wait {ci.ack_wait}s, max_deliver "
        f"{ci.max_deliver}, max_ack_pending {ci.max_ack_pending}"
    )
