"""Durable mailboxes on JetStream: a stream per tenant, a shared pull consumer per agent.

With :mod:`._nats`, the only modules that import nats. The tenant's stream
``SDK_AGENTS_<tenant>`` captures the inbox subjects of durable agents only
(``sdk.agent.*.<to>.<tenant>``, added as each is spawned), so core agents' subjects are
never stored. Each agent name has one durable pull consumer ``agent_<to>`` that every
replica binds to. A pull loop per actor keeps at most ``prefetch`` messages in the actor's
local mailbox; ``max_ack_pending`` (the mailbox's capacity) bounds what the server hands
out unsettled, so a slow actor slows its consumer instead of growing memory.

Settings that differ between processes are reported, never fought over: the first process
creates the stream and consumer from its settings; later ones only add their subject and
warn when the rest differs (``python -m motadata_actors streams apply`` changes them).

When a handler's process dies on a message's last delivery, nobody dead-letters it: the
server only emits a ``MAX_DELIVERIES`` advisory. Every process with a durable mailbox of
that agent listens for it (one of them, by queue group), fetches the message by its stream
sequence, dead-letters it and removes it from the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, final

import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    ConnectionLost,
    NoResponders,
    SequenceConflict,
)
from motadata_actors.telemetry import get_logger

from ._envelope import (
    MESSAGE_ID,
    REPLY_TO,
    TIMEOUT_MS,
    check_size,
    dead_letter_headers,
    received_headers,
)
from ._queue import Mailbox
from ._subjects import agent_inbox, check_publish_subject, dlq_subject
from ._transport import (
    DeadLetter,
    DurableConfig,
    DurableMessage,
    Incoming,
    LogKind,
    StartAt,
    StoredMessage,
    Subscription,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

__all__ = (
    "JetStreamDeadLetters",
    "JetStreamMailboxes",
    "agents_stream",
    "consumer_name",
    "dead_letter_stream",
    "log_stream",
)

log = get_logger("jetstream")

_JS_TIMEOUT = 5.0
_WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for Nats-Expected-Last-Subject-Sequence
_FOLLOWER_IDLE = 24 * 3600.0  # seconds an unread workflow follower's consumer is kept
_PROBE_TIMEOUT = 1.0  # seconds to ask JetStream's API why no stream answered
_FETCH_WAIT = 1.0  # seconds a pull request lingers on the server when nothing is there
_RETENTION = {
    "workqueue": RetentionPolicy.WORK_QUEUE,
    "interest": RetentionPolicy.INTEREST,
    "limits": RetentionPolicy.LIMITS,
}


def agents_stream(tenant: str) -> str:
    """The stream holding a tenant's durable mailboxes: ``SDK_AGENTS_<tenant>``."""
    return f"SDK_AGENTS_{tenant}"


def consumer_name(agent: str) -> str:
    """The durable consumer every replica of ``agent`` shares: ``agent_<agent>``."""
    return f"agent_{agent}"


def log_stream(kind: LogKind, tenant: str) -> str:
    """The stream keeping a tenant's events or workflows: ``SDK_EVENTS_<tenant>``, ..."""
    return f"SDK_{kind.upper()}_{tenant}"


def _log_subjects(kind: LogKind, tenant: str) -> str:
    return f"sdk.events.*.{tenant}" if kind == "events" else f"sdk.workflow.*.{tenant}"


@final
class JetStreamMailboxes:
    """A :class:`~motadata_actors.mailbox.DurableTransport` on one nats-py connection.

    Made by :attr:`NatsTransport.durable <motadata_actors.mailbox.NatsTransport.durable>`.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=_JS_TIMEOUT)
        self._locks: dict[str, asyncio.Lock] = {}
        self._warned: set[str] = set()
        self._replies: dict[str, asyncio.Future[Msg]] = {}
        self._reply_prefix: str | None = None
        self._reply_ids = itertools.count(1)
        self._reply_lock = asyncio.Lock()
        self._logs: set[str] = set()  # events and workflows streams known to exist

    # -- stream and consumer ------------------------------------------------------------

    def _stream_config(self, tenant: str, subjects: list[str], cfg: DurableConfig) -> StreamConfig:
        return StreamConfig(
            name=agents_stream(tenant),
            description=f"motadata-actors durable mailboxes of tenant {tenant}",
            subjects=subjects,
            retention=_RETENTION[cfg.retention],
            max_age=cfg.max_age,
            max_bytes=cfg.max_bytes,
            num_replicas=cfg.replicas,
            duplicate_window=cfg.duplicate_window,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
        )

    async def _ensure_stream(self, tenant: str, subject: str, cfg: DurableConfig) -> None:
        """Create the tenant's stream, or add ``subject`` to it; report settings drift.

        Several processes may edit the stream's subject list at once, and JetStream has no
        compare-and-set for it: a subject counts as added once it was seen in the list
        twice, a short random pause apart (a concurrent overwrite shows up in between).

        Raises:
            ConfigError: JetStream refused the stream or the change (the reason is its own).
        """
        name = agents_stream(tenant)
        lock = self._locks.setdefault(name, asyncio.Lock())
        seen_once = False
        async with lock:
            for _ in range(20):
                try:
                    info = await self._js.stream_info(name)
                except nats.js.errors.NotFoundError:
                    try:
                        await self._js.add_stream(self._stream_config(tenant, [subject], cfg))
                    except nats.js.errors.APIError as exc:
                        if not await self._exists(name):  # not a race: a refusal
                            raise ConfigError(
                                f"JetStream refused to create stream {name}: {exc.description}"
                            ) from None
                    continue  # read it back (ours, or another process's)
                config = info.config
                self._report_stream_drift(name, config, cfg)
                if subject in (config.subjects or []):
                    if seen_once:
                        return
                    seen_once = True
                    await asyncio.sleep(random.uniform(0.05, 0.15))
                    continue
                seen_once = False
                config.subjects = [*(config.subjects or []), subject]
                try:
                    await self._js.update_stream(config)
                except nats.js.errors.APIError as exc:
                    raise ConfigError(
                        f"JetStream refused adding {subject!r} to stream {name}: {exc.description}"
                    ) from None
            raise ConnectionLost(f"could not add {subject!r} to stream {name!r} (20 tries)")

    async def captures(self, tenant: str, agent: str) -> bool:
        """Whether ``agent`` has a durable mailbox: the tenant's stream captures its inbox.

        Raises:
            ConnectionLost: JetStream did not answer.
        """
        try:
            info = await self._js.stream_info(agents_stream(tenant))
        except nats.js.errors.NotFoundError:
            return False
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise ConnectionLost(f"cannot read stream {agents_stream(tenant)!r}: {exc!r}") from exc
        return agent_inbox(agent, tenant) in (info.config.subjects or [])

    async def _exists(self, stream: str) -> bool:
        try:
            await self._js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return False
        return True

    def _report_stream_drift(self, name: str, config: StreamConfig, cfg: DurableConfig) -> None:
        wanted = {
            "retention": _RETENTION[cfg.retention],
            "max_age": cfg.max_age,
            "max_bytes": cfg.max_bytes,
            "num_replicas": cfg.replicas,
            "duplicate_window": cfg.duplicate_window,
        }
        drift = {k: (getattr(config, k), v) for k, v in wanted.items() if getattr(config, k) != v}
        if drift and name not in self._warned:
            self._warned.add(name)
            details = ", ".join(f"{k}: stream has {have!r}, settings say {want!r}"
                                for k, (have, want) in drift.items())  # fmt: skip
            log.warning(
                "stream %s differs from this process's settings (%s); left as it is: "
                "run `python -m motadata_actors streams apply` to change it",
                name, details,
            )  # fmt: skip

    async def _ensure_consumer(
        self, tenant: str, agent: str, cfg: DurableConfig, capacity: int
    ) -> None:
        stream, durable = agents_stream(tenant), consumer_name(agent)
        config = self._consumer_config(tenant, agent, cfg, capacity)
        try:
            await self._js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            with contextlib.suppress(nats.js.errors.BadRequestError):  # made meanwhile
                await self._js.add_consumer(stream, config)
            return
        info = await self._js.consumer_info(stream, durable)
        have = info.config
        drift = {
            k: (getattr(have, k), getattr(config, k))
            for k in ("ack_wait", "max_deliver", "max_ack_pending")
            if getattr(have, k) != getattr(config, k)
        }
        if drift and durable not in self._warned:
            self._warned.add(durable)
            log.warning(
                "consumer %s of %s differs from this process's settings (%s); left as it is",
                durable, stream, drift,
            )  # fmt: skip

    def _consumer_config(
        self, tenant: str, agent: str, cfg: DurableConfig, capacity: int
    ) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=consumer_name(agent),
            description=f"motadata-actors mailbox of agent {agent}",
            filter_subject=agent_inbox(agent, tenant),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=cfg.ack_wait,
            max_deliver=cfg.max_deliver,
            max_ack_pending=capacity,
        )

    # -- administration -----------------------------------------------------------------

    async def describe(self, tenant: str) -> list[str]:
        """Lines describing the tenant's streams and their consumers; [] if it has none.

        The streams: durable mailboxes, and the kept events and workflows when they exist.
        """
        lines: list[str] = []
        for name in (agents_stream(tenant), log_stream("events", tenant),
                     log_stream("workflows", tenant)):  # fmt: skip
            try:
                info = await self._js.stream_info(name)
                consumers = await self._js.consumers_info(name)
            except nats.js.errors.NotFoundError:
                continue
            except (nats.errors.Error, OSError) as exc:
                raise ConnectionLost(f"cannot read stream {name!r}: {exc!r}") from exc
            c, st = info.config, info.state
            lines += [
                f"stream {name}: {st.messages} message(s), {st.bytes} bytes; retention "
                f"{getattr(c.retention, 'value', c.retention)}, max_age {c.max_age}s, max_bytes "
                f"{c.max_bytes}, replicas {c.num_replicas}, duplicate_window "
                f"{c.duplicate_window}s",
                f"  subjects: {', '.join(c.subjects or [])}",
            ]
            for ci in sorted(consumers, key=lambda ci: ci.name):
                cc = ci.config
                lines.append(
                    f"  consumer {ci.name}: {ci.num_pending} waiting, {ci.num_ack_pending} "
                    f"being handled, {ci.num_redelivered} redelivered; ack_wait {cc.ack_wait}s, "
                    f"max_deliver {cc.max_deliver}, max_ack_pending {cc.max_ack_pending}"
                )
        return lines

    async def apply(self, tenant: str, cfg: DurableConfig, capacity: int) -> list[str]:
        """Bring the tenant's stream and consumers to ``cfg``; return what changed.

        Retention cannot change on an existing stream (JetStream refuses): that is reported
        with what to do instead.
        """
        name = agents_stream(tenant)
        changes: list[str] = []
        try:
            info = await self._js.stream_info(name)
        except nats.js.errors.NotFoundError:
            return [f"no stream {name}: it is made when a durable agent of {tenant!r} starts"]
        config = info.config
        wanted = self._stream_config(tenant, list(config.subjects or []), cfg)
        if config.retention != wanted.retention:
            changes.append(
                f"retention stays {config.retention}: JetStream cannot change it; delete the "
                f"stream (losing its messages) to recreate it as {cfg.retention}"
            )
            wanted.retention = config.retention
        for key in ("max_age", "max_bytes", "num_replicas", "duplicate_window"):
            if getattr(config, key) != getattr(wanted, key):
                changes.append(f"{name}.{key}: {getattr(config, key)} -> {getattr(wanted, key)}")
                setattr(config, key, getattr(wanted, key))
        try:
            if any("->" in change for change in changes):
                await self._js.update_stream(config)
            for ci in await self._js.consumers_info(name):
                agent = ci.name.removeprefix("agent_")
                want = self._consumer_config(tenant, agent, cfg, capacity)
                diff = [
                    f"{ci.name}.{k}: {getattr(ci.config, k)} -> {getattr(want, k)}"
                    for k in ("ack_wait", "max_deliver", "max_ack_pending")
                    if getattr(ci.config, k) != getattr(want, k)
                ]
                if diff:
                    await self._js.add_consumer(name, want)  # create-or-update
                    changes += diff
        except nats.js.errors.APIError as exc:
            raise ConfigError(f"JetStream refused the change to {name}: {exc}") from exc
        except (nats.errors.Error, OSError) as exc:
            raise ConnectionLost(f"cannot update stream {name!r}: {exc!r}") from exc
        return changes

    # -- the mailbox --------------------------------------------------------------------

    async def open_mailbox(
        self, tenant: str, agent: str, mailbox: Mailbox[Incoming], config: DurableConfig
    ) -> Subscription:
        """Pull ``agent``'s durable messages into ``mailbox`` until unsubscribed."""
        subject = agent_inbox(agent, tenant)
        capacity = mailbox.statistics().capacity

        async def ensure() -> None:
            await self._ensure_stream(tenant, subject, config)
            await self._ensure_consumer(tenant, agent, config, capacity)

        return await self._open_pull(
            agents_stream(tenant), consumer_name(agent), ensure, mailbox, config,
            tenant=tenant, agent=agent, label=subject, prefetch=config.prefetch,
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
            self._logs.discard(stream)  # opening or reopening: make sure it is there
            await self._ensure_log(kind, tenant, config)
            await self._ensure_feed_consumer(
                stream, consumer, subject, config, capacity, start, kind == "workflows"
            )

        return await self._open_pull(
            stream, consumer, ensure, mailbox, config, tenant=tenant, agent=agent,
            label=f"{subject} ({consumer})", prefetch=1 if ordered else config.prefetch,
        )  # fmt: skip

    async def _open_pull(
        self,
        stream: str,
        consumer: str,
        ensure: Callable[[], Awaitable[None]],
        mailbox: Mailbox[Incoming],
        config: DurableConfig,
        *,
        tenant: str,
        agent: str,
        label: str,
        prefetch: int,
    ) -> Subscription:
        """Bind to ``consumer`` (made by ``ensure``) and pull from it into ``mailbox``.

        A message whose last delivery ends with no verdict is dead-lettered to
        ``sdk.dlq.<agent>.<tenant>``.
        """
        try:
            await ensure()
            psub = await self._js.pull_subscribe_bind(consumer, stream=stream)

            async def on_advisory(msg: Msg) -> None:
                await self._on_max_deliveries(msg, stream, tenant, agent)

            advisories = await self._nc.subscribe(
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}",
                queue=consumer,
                cb=on_advisory,
            )
        except nats.js.errors.ServiceUnavailableError as exc:
            raise ConfigError(
                "durable mailboxes, events and workflows need JetStream, and the NATS server "
                "has it off: start nats-server with --jetstream (the embedded server has it on)"
            ) from exc
        except nats.errors.NoRespondersError as exc:
            raise ConfigError(
                "durable mailboxes, events and workflows need JetStream, and the NATS server "
                "does not answer its API: start nats-server with --jetstream"
            ) from exc
        except (nats.errors.Error, OSError) as exc:
            raise ConnectionLost(f"cannot open {label}: {exc!r}") from exc
        prefetch = max(1, min(prefetch, mailbox.statistics().capacity))
        running = [True]
        waiting: list[DurableMessage] = []  # pulled, not yet taken by a worker

        async def reopen() -> bool:
            """Make the stream and consumer again if they are gone; whether they were."""
            try:
                await self._js.consumer_info(stream, consumer)
                return False
            except nats.js.errors.NotFoundError:
                pass
            await ensure()
            return True

        task = asyncio.create_task(
            self._pull(psub, mailbox, prefetch, config, running, waiting, reopen, label),
            name=f"pull:{label}",
        )
        keeper = asyncio.create_task(
            self._keep_waiting(waiting, config.ack_wait / 2), name=f"keep:{label}"
        )

        async def unsubscribe() -> None:
            # The flag as well as the cancel: a cancel landing just as nats-py's fetch
            # completes can be swallowed by asyncio.wait_for (Python 3.11); the loop then
            # ends at its next turn (a fetch waits at most _FETCH_WAIT).
            running[0] = False
            keeper.cancel()
            task.cancel()
            try:
                async with asyncio.timeout(_FETCH_WAIT + 5):
                    await asyncio.gather(task, keeper, return_exceptions=True)
            except TimeoutError:
                log.warning("the pull loop of %s did not stop in time", label)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the caller itself is being cancelled: not ours to swallow
            for sub in (psub, advisories):
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()

        return Subscription(label, consumer, mailbox, unsubscribe)

    # -- events and workflows -----------------------------------------------------------

    async def append(
        self,
        kind: LogKind,
        tenant: str,
        config: DurableConfig,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str],
        expect_last_seq: int | None = None,
    ) -> int:
        """Store a message in the tenant's ``kind`` stream (made on first use); its sequence."""
        await self._ensure_log(kind, tenant, config)
        try:
            return await self.publish(
                subject, data, headers=headers, expect_last_seq=expect_last_seq
            )
        except NoResponders:  # the stream was deleted under us: make it again, once
            self._logs.discard(log_stream(kind, tenant))
            await self._ensure_log(kind, tenant, config)
        try:
            return await self.publish(
                subject, data, headers=headers, expect_last_seq=expect_last_seq
            )
        except NoResponders:
            raise NoResponders(
                f"stream {log_stream(kind, tenant)} does not capture {subject!r} (deleted "
                "again, or changed by hand?)"
            ) from None

    async def _ensure_log(self, kind: LogKind, tenant: str, config: DurableConfig) -> None:
        """Make the tenant's events or workflows stream if it does not exist yet.

        It keeps every message on its subjects (``limits`` retention) for
        ``config.max_age`` seconds and ``config.max_bytes`` bytes, whoever reads them.

        Raises:
            ConfigError: the server has no JetStream, or refused the stream.
            ConnectionLost: the server cannot be reached.
        """
        name = log_stream(kind, tenant)
        if name in self._logs:
            return
        config_ = StreamConfig(
            name=name,
            description=f"motadata-actors {kind} of tenant {tenant}",
            subjects=[_log_subjects(kind, tenant)],
            retention=RetentionPolicy.LIMITS,
            max_age=config.max_age,
            max_bytes=config.max_bytes,
            num_replicas=config.replicas,
            duplicate_window=config.duplicate_window,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
        )
        try:
            try:
                await self._js.stream_info(name)
            except nats.js.errors.NotFoundError:
                try:
                    await self._js.add_stream(config_)
                except nats.js.errors.APIError as exc:
                    if not await self._exists(name):  # not a race: a refusal
                        raise ConfigError(
                            f"JetStream refused to create stream {name}: {exc.description}"
                        ) from None
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
            raise ConfigError(
                f"{kind} kept in JetStream need a server with JetStream on (--jetstream)"
            ) from exc
        except (nats.errors.Error, OSError) as exc:
            raise ConnectionLost(f"cannot reach stream {name}: {exc!r}") from exc
        self._logs.add(name)

    async def _ensure_feed_consumer(
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
        consumer after a day unread (workflow followers).
        """
        try:
            info = await self._js.consumer_info(stream, consumer)
        except nats.js.errors.NotFoundError:
            pass
        else:  # it exists: it goes on from where it was (start applies to a new one)
            if info.config.filter_subject != subject:
                raise ConfigError(
                    f"consumer {consumer} of {stream} reads {info.config.filter_subject!r}, "
                    f"not {subject!r}: delete it (nats consumer rm) or use another name"
                )
            if info.config.max_ack_pending != capacity:  # made ordered, or no longer
                info.config.max_ack_pending = capacity
                await self._js.add_consumer(stream, info.config)  # create-or-update
            return
        config = ConsumerConfig(
            durable_name=consumer,
            description=f"motadata-actors feed of {subject}",
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=cfg.ack_wait,
            max_deliver=cfg.max_deliver,
            max_ack_pending=capacity,
            inactive_threshold=_FOLLOWER_IDLE if expires else None,
        )
        if start == "all":
            config.deliver_policy = DeliverPolicy.ALL
        elif start == "new":
            config.deliver_policy = DeliverPolicy.NEW
        elif isinstance(start, datetime.datetime):
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = start
        else:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start
        with contextlib.suppress(nats.js.errors.BadRequestError):  # made meanwhile
            await self._js.add_consumer(stream, config)

    async def read(
        self, kind: LogKind, tenant: str, subject: str, *, after: int = 0, limit: int = 10_000
    ) -> list[StoredMessage]:
        """The kept messages on ``subject`` with a stream sequence above ``after``, in order.

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        stream = log_stream(kind, tenant)
        out: list[StoredMessage] = []
        seq = after + 1
        try:
            while len(out) < limit:
                try:
                    raw = await self._js.get_msg(stream, seq, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    break
                assert raw.seq is not None
                # get_msg parses headers with the email parser (non-ASCII values as Header).
                headers = {k: str(v) for k, v in (raw.headers or {}).items()}
                stamp = raw.time.timestamp() if raw.time is not None else 0.0
                out.append(StoredMessage(raw.seq, raw.subject or subject, headers,
                                         raw.data or b"", stamp))  # fmt: skip
                seq = raw.seq + 1
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise ConnectionLost(f"cannot read {subject!r} from {stream}: {exc!r}") from exc
        return out

    async def _pull(
        self,
        psub: JetStreamContext.PullSubscription,
        mailbox: Mailbox[Incoming],
        prefetch: int,
        config: DurableConfig,
        running: list[bool],
        waiting: list[DurableMessage],
        reopen: Callable[[], Awaitable[bool]],
        label: str,
    ) -> None:
        """Keep up to ``prefetch`` messages queued in ``mailbox``; fetch only what fits.

        If the stream or the consumer was deleted under it (an operator recreating the
        stream, say), it makes them again and goes on.
        """
        pause = 0.1
        while running[0]:
            # This consumer's own messages waiting in the mailbox, not the mailbox's whole
            # queue: an actor's other subscriptions must not starve this one.
            waiting[:] = [m for m in waiting if not m.started]
            want = prefetch - len(waiting)
            if want <= 0:
                await asyncio.sleep(0.005)  # the actor is busy: its queue is full enough
                continue
            try:
                msgs = await psub.fetch(batch=want, timeout=_FETCH_WAIT)
            except (TimeoutError, nats.errors.TimeoutError):
                continue  # nothing there: ask again
            except (nats.js.errors.NotFoundError, nats.js.errors.ServiceUnavailableError):
                # No consumer answers the pull: deleted (make it again), or JetStream is
                # electing a leader (wait).
                try:
                    if await reopen():
                        log.warning("durable mailbox %s: its stream or consumer was gone; "
                                    "made again", label)  # fmt: skip
                except (ConfigError, ConnectionLost, nats.errors.Error) as exc:
                    log.warning("durable mailbox %s not made again yet: %s", label, exc)
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                # Reconnecting, or the server restarting: what was not acked is redelivered.
                log.debug("pull from %s paused: %r", label, exc)
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
                continue
            pause = 0.1
            for msg in msgs:
                # Past a stop, what was fetched is not queued: unacked, it comes again.
                if running[0]:
                    wrapped = self._wrap(msg, config)
                    waiting.append(wrapped)
                    await mailbox.send(wrapped)

    @staticmethod
    async def _keep_waiting(waiting: list[DurableMessage], interval: float) -> None:
        """Every half ack-wait, in-progress-ack what waits in the mailbox.

        A slow actor with a deep prefetch must not see its queued messages redelivered.
        """
        while True:
            await asyncio.sleep(interval)
            waiting[:] = [m for m in waiting if not m.started]
            for m in list(waiting):
                with contextlib.suppress(ConnectionLost):
                    await m.in_progress()

    @staticmethod
    def _wrap(msg: Msg, config: DurableConfig) -> DurableMessage:
        meta = msg.metadata
        stored_at = meta.timestamp.timestamp()
        headers = dict(msg.headers) if msg.headers else {}
        # A header in two cases is left for the actor to refuse (it dead-letters it).
        with contextlib.suppress(CodecError):
            headers = received_headers(headers) or {}
        deadline = None
        timeout_ms = headers.get(TIMEOUT_MS)
        if timeout_ms is not None:
            # Reckoned from when the stream stored the request, not from delivery.
            with contextlib.suppress(ValueError):
                deadline = stored_at + int(timeout_ms) / 1000

        def settle(verdict: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            async def send() -> None:
                try:
                    await verdict()
                except (nats.errors.Error, OSError) as exc:
                    raise ConnectionLost(f"cannot settle {msg.subject!r}: {exc!r}") from exc

            return send

        async def nak(delay: float) -> None:
            await settle(lambda: msg.nak(delay=delay or None))()

        return DurableMessage(
            subject=msg.subject,
            data=msg.data,
            headers=headers or None,
            reply=headers.get(REPLY_TO, ""),
            delivered=meta.num_delivered,
            max_deliver=config.max_deliver,
            stream_seq=meta.sequence.stream,
            stored_at=stored_at,
            deadline=deadline,
            ack=settle(msg.ack),
            nak=nak,
            in_progress=settle(msg.in_progress),
            term=settle(msg.term),
        )

    async def _on_max_deliveries(self, advisory: Msg, stream: str, tenant: str, agent: str) -> None:
        """Dead-letter a message whose last delivery ended with no verdict (its handler died)."""
        try:
            seq = int(json.loads(advisory.data)["stream_seq"])
            stored = await self._js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            return  # already settled and gone
        except (ValueError, KeyError, TypeError, nats.errors.Error) as exc:
            log.warning("MAX_DELIVERIES advisory for %s not handled: %r", agent, exc)
            return
        reason = "no verdict after the last delivery (the handler's process died or hung)"
        # get_msg parses headers with the email parser (non-ASCII values come as Header).
        original = {k: str(v) for k, v in (stored.headers or {}).items()}
        headers = dead_letter_headers(original, reason)
        try:
            try:  # stored with an ack, as every dead letter while connected
                await self._js.publish(
                    dlq_subject(agent, tenant), stored.data or b"", headers=headers
                )
            except nats.js.errors.NoStreamResponseError:  # no dead-letter stream: published
                await self._nc.publish(
                    dlq_subject(agent, tenant), stored.data or b"", headers=headers
                )
            if stream == agents_stream(tenant):  # a kept event stays for its other readers
                await self._js.delete_msg(stream, seq)
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            log.warning("dead letter of %s seq %d lost: %r", agent, seq, exc)
            return
        log.warning("agent %s: message %d dead-lettered: %s", agent, seq, reason)

    # -- sending ------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str],
        expect_last_seq: int | None = None,
    ) -> int:
        """Store a message; return its stream sequence once the stream acknowledged it."""
        check_publish_subject(subject)
        js_headers = dict(headers)
        message_id = headers.get(MESSAGE_ID)
        if message_id is not None:
            js_headers["Nats-Msg-Id"] = message_id
        if expect_last_seq is not None:
            js_headers["Nats-Expected-Last-Subject-Sequence"] = str(expect_last_seq)
        check_size(data, js_headers, self._nc.max_payload)
        try:
            ack = await self._js.publish(subject, data, headers=js_headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise SequenceConflict(
                    f"{subject!r} moved past sequence {expect_last_seq}: another publisher "
                    f"went first ({exc.description})"
                ) from None
            raise ConnectionLost(f"JetStream refused a message on {subject!r}: {exc}") from exc
        except nats.js.errors.NoStreamResponseError:
            raise await self._why_no_stream(subject) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise ConnectionLost(
                f"no acknowledgement from JetStream for {subject!r} within {_JS_TIMEOUT}s: "
                "it may or may not be stored (a resend with the same id is stored once)"
            ) from None
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise ConnectionLost(f"cannot store a message on {subject!r}: {exc!r}") from exc
        return ack.seq

    async def _why_no_stream(self, subject: str) -> ActorsError:
        """Why no stream answered a publish on ``subject``; nothing was stored either way.

        No stream captures it: :class:`NoResponders` (spawn the durable agent). A stream
        does, or JetStream's API did not answer: its leader is being elected (a node of the
        cluster was lost), which takes seconds: :class:`ConnectionLost`, worth a retry.
        """
        try:
            stream = await self._nc.jetstream(timeout=_PROBE_TIMEOUT).find_stream_name_by_subject(
                subject
            )
        except nats.js.errors.NotFoundError:
            return NoResponders(
                f"no durable mailbox captures {subject!r}: spawn that agent with "
                "mailbox='durable' (once, anywhere) so its messages are kept"
            )
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            return ConnectionLost(
                f"JetStream did not store the message on {subject!r} and its API does not "
                f"answer ({type(exc).__name__}): a leader election in the cluster? Nothing "
                "was stored; retry"
            )
        return ConnectionLost(
            f"stream {stream} captures {subject!r} but did not answer: its leader is being "
            "elected (a node of the cluster was lost?). Nothing was stored; retry"
        )

    async def request(
        self, subject: str, data: bytes, *, headers: dict[str, str], timeout: float
    ) -> Incoming:
        """Store a request naming our inbox in ``Sdk-Reply-To``; wait for the first reply."""
        prefix = await self._reply_inbox()
        token = f"{prefix}.{next(self._reply_ids)}"
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._replies[token] = future
        try:
            async with asyncio.timeout(timeout):
                await self.publish(subject, data, headers={**headers, REPLY_TO: token})
                return await future
        except TimeoutError:
            raise AskTimeout(f"no reply on {subject!r} within {timeout:.3g}s") from None
        finally:
            self._replies.pop(token, None)

    async def _reply_inbox(self) -> str:
        if self._reply_prefix is None:
            async with self._reply_lock:
                if self._reply_prefix is None:
                    prefix = self._nc.new_inbox()
                    await self._nc.subscribe(f"{prefix}.*", cb=self._on_reply)
                    self._reply_prefix = prefix
        return self._reply_prefix

    async def _on_reply(self, msg: Msg) -> None:
        future = self._replies.get(msg.subject)
        if future is not None and not future.done():
            future.set_result(msg)


def dead_letter_stream(tenant: str) -> str:
    """The JetStream stream that keeps a tenant's dead letters: ``SDK_DLQ_<tenant>``."""
    return f"SDK_DLQ_{tenant}"


@final
class JetStreamDeadLetters:
    """A tenant's dead letters in the stream ``SDK_DLQ_<tenant>`` over ``sdk.dlq.*.<tenant>``.

    The stream captures the subject, so dead letters from any client are kept even when
    nobody listens; :meth:`put` stores one with the stream's acknowledgement while
    connected (so it is listed as soon as dead-lettering returned), and publishes it
    plainly while reconnecting (it is stored once it reaches the server).

    Args:
        nc: the connection.
        where: the server, for error messages.
    """

    def __init__(self, nc: Client, where: Callable[[], str]) -> None:
        self._nc = nc
        self._where = where
        self._kept = False

    async def keep(
        self, tenant: str, *, max_messages: int, max_age: float, replicas: int = 1
    ) -> bool:
        """Create (or bring up to date) the tenant's dead-letter stream.

        ``replicas`` applies when the stream is made; an existing stream keeps its own.
        Returns False when the server has no JetStream.

        Raises:
            ConfigError: JetStream refused the stream (more replicas than servers, say).
        """
        js = self._nc.jetstream(timeout=_JS_TIMEOUT)
        name = dead_letter_stream(tenant)
        config = StreamConfig(
            name=name,
            subjects=[f"sdk.dlq.*.{tenant}"],
            max_msgs=max_messages,
            max_age=max_age,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            description=f"motadata-actors dead letters of tenant {tenant}",
        )
        try:
            for attempt in range(5):
                try:
                    await js.add_stream(config)
                    break
                except nats.js.errors.BadRequestError:  # it exists with other limits
                    try:
                        info = await js.stream_info(name)
                    except nats.js.errors.NotFoundError:
                        if attempt == 4:
                            raise
                        # Neither made nor there: a cluster still settling its leaders.
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    config.num_replicas = info.config.num_replicas
                    await js.update_stream(config)
                    break
        except (
            nats.js.errors.ServiceUnavailableError,
            nats.errors.NoRespondersError,
            nats.errors.TimeoutError,
        ):
            return False
        except nats.js.errors.APIError as exc:
            raise ConfigError(
                f"JetStream refused the dead-letter stream {name}: {exc.description} (check "
                "SDK_DURABLE_REPLICAS against the cluster's size, and SDK_DLQ_MAX_MESSAGES / "
                "SDK_DLQ_MAX_AGE)"
            ) from None
        self._kept = True
        return True

    async def put(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Dead-letter one message; stored with an acknowledgement while connected.

        No ``Nats-Msg-Id``: two dead letters of one message (a retry's, a redelivery's) are
        both kept.

        Raises:
            ConnectionLost: it could not be sent or stored.
        """
        nc = self._nc
        try:
            if self._kept and nc.is_connected:
                await nc.jetstream(timeout=_JS_TIMEOUT).publish(subject, data, headers=headers)
            else:  # reconnecting: buffered like any message, not held up waiting for an ack
                await nc.publish(subject, data, headers=headers)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise ConnectionLost(f"dead letter on {subject!r} not stored: {exc!r}") from exc

    async def read(self, tenant: str, *, limit: int = 100) -> list[DeadLetter]:
        """The tenant's kept dead letters, oldest first, read from its stream.

        Raises:
            ConfigError: the server has no JetStream.
            ConnectionLost: the server cannot be reached.
        """
        js = self._nc.jetstream(timeout=_JS_TIMEOUT)
        stream = dead_letter_stream(tenant)
        out: list[DeadLetter] = []
        seq = 1
        try:
            while len(out) < limit:
                raw = await js.get_msg(stream, seq=seq, subject=f"sdk.dlq.*.{tenant}", next=True)
                if raw.seq is None:
                    break
                out.append(
                    DeadLetter(
                        seq=raw.seq,
                        subject=raw.subject or "",
                        # nats-py's JetStream API parses headers with the email
                        # parser: a non-ASCII value comes back as a Header object.
                        headers={k: str(v) for k, v in (raw.headers or {}).items()},
                        data=raw.data or b"",
                        time=raw.time.timestamp() if raw.time else 0.0,
                    )
                )
                seq = raw.seq + 1
        except nats.js.errors.NotFoundError:
            pass  # no (more) messages, or no stream
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            raise self._no_jetstream() from None
        except nats.errors.Error as exc:
            raise ConnectionLost(f"cannot read dead letters of {tenant!r}: {exc!r}") from exc
        return out

    async def drop(self, tenant: str, seq: int) -> None:
        """Delete one message from the tenant's dead-letter stream.

        Raises:
            ConfigError: the server has no JetStream.
            ConnectionLost: the server cannot be reached.
        """
        js = self._nc.jetstream(timeout=_JS_TIMEOUT)
        try:
            await js.delete_msg(dead_letter_stream(tenant), seq)
        except nats.js.errors.NotFoundError:
            pass
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            raise self._no_jetstream() from None
        except nats.errors.Error as exc:
            raise ConnectionLost(f"cannot delete dead letter {seq} of {tenant!r}: {exc!r}") from exc

    def _no_jetstream(self) -> ConfigError:
        return ConfigError(
            f"the NATS server at {self._where()} has no JetStream, which keeps dead letters: "
            "start it with JetStream on (nats-server -js, or `jetstream {}` in its "
            "configuration; the embedded server and `python -m motadata_actors server` have it)"
        )
