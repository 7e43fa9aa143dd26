"""Durable mailboxes on a real nats-server with JetStream: kept until handled, at least once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from motadata_actors import (
    Actor,
    ActorRef,
    ActorSystem,
    AskTimeout,
    ConfigError,
    Context,
    NoResponders,
    RemoteError,
    Settings,
)
from motadata_actors.mailbox import (
    MESSAGE_ID,
    NatsServer,
    NatsTransport,
    encode_body,
)
from motadata_actors.mailbox._jetstream import agents_stream, consumer_name

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio


def settings(server: NatsServer, **kw: Any) -> Settings:
    defaults: dict[str, Any] = {"durable_backoff": 0.05, "durable_ack_wait": 5.0}
    return Settings(nats_urls=(server.url,), **{**defaults, **kw})


class Recorder(Actor):
    """Records every delivery; fails on ``fail``; answers asks with the message."""

    seen: list[Any]
    done: asyncio.Event
    expected = 0

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        type(self).seen.append(msg)
        if len(type(self).seen) >= type(self).expected:
            type(self).done.set()
        if msg == "fail":
            raise ValueError("this one always fails")
        return {"got": msg}


def recorder(expected: int) -> type[Recorder]:
    return type("Rec", (Recorder,), {"seen": [], "done": asyncio.Event(), "expected": expected})


async def dead_letters(system: ActorSystem) -> list[Any]:
    """The kept dead letters, once there are any (the store takes them asynchronously)."""
    for _ in range(100):
        letters = await system.dead_letters()
        if letters:
            return letters
        await asyncio.sleep(0.05)
    raise AssertionError("no dead letter was kept within 5 s")


async def drained(system: ActorSystem, agent: str) -> bool:
    """Whether the stream and the agent's consumer empty out within 5 s (acks are async)."""
    for _ in range(100):
        if await stream_state(system, agent) == (0, 0):
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def durable_worker(
    server: NatsServer, tenant: str, expected: int, **overrides: Any
) -> AsyncIterator[tuple[ActorSystem, ActorRef, type[Recorder]]]:
    """A system running a recorder (done after ``expected`` messages) as durable "worker"."""
    rec = recorder(expected)
    async with ActorSystem(tenant, settings=settings(server, **overrides)) as system:
        yield system, await system.spawn(rec, name="worker", mailbox="durable"), rec


async def stream_state(system: ActorSystem, agent: str) -> tuple[int, int]:
    """(messages kept in the tenant's stream, the agent consumer's unacked deliveries)."""
    transport = system._runtime.transport
    assert isinstance(transport, NatsTransport)
    js = transport.client.jetstream()
    info = await js.stream_info(agents_stream(system.tenant))
    consumer = await js.consumer_info(agents_stream(system.tenant), consumer_name(agent))
    return info.state.messages, consumer.num_ack_pending


async def deliveries_made(system: ActorSystem, agent: str) -> int:
    """How many deliveries the agent's consumer ever made, redeliveries included."""
    transport = system._runtime.transport
    assert isinstance(transport, NatsTransport)
    consumer = await transport.client.jetstream().consumer_info(
        agents_stream(system.tenant), consumer_name(agent)
    )
    assert consumer.delivered is not None
    return consumer.delivered.consumer_seq or 0


async def test_tells_are_handled_acked_and_gone_from_the_stream(
    nats_server: NatsServer, tenant: str
) -> None:
    async with durable_worker(nats_server, tenant, 20) as (system, ref, rec):
        assert ref.mailbox == "durable"
        for i in range(20):
            await ref.tell(i)
        await asyncio.wait_for(rec.done.wait(), 10)
        assert sorted(rec.seen) == list(range(20))
        assert await drained(system, "worker")


async def test_ask_to_a_durable_mailbox_gets_its_reply_and_errors(
    nats_server: NatsServer, tenant: str
) -> None:
    async with durable_worker(nats_server, tenant, 1, durable_max_deliver=2) as (_, ref, rec):
        assert await ref.ask("hello", timeout=5) == {"got": "hello"}
        # A handler that fails every time: redelivered, and the asker hears of it
        # only after the last delivery.
        with pytest.raises(RemoteError, match="always fails"):
            await ref.ask("fail", timeout=5)
        assert rec.seen.count("fail") == 2


async def test_a_poison_message_is_dead_lettered_after_max_deliver_and_the_rest_flows(
    nats_server: NatsServer, tenant: str
) -> None:
    async with durable_worker(nats_server, tenant, 5, durable_max_deliver=3) as (
        system,
        ref,
        rec,
    ):  # 3 deliveries of the poison message, then 2 good ones
        await ref.tell("fail")
        await ref.tell("good-1")
        await ref.tell("good-2")
        await asyncio.wait_for(rec.done.wait(), 10)
        letters = await dead_letters(system)
        assert rec.seen.count("fail") == 3
        assert {"good-1", "good-2"} <= set(rec.seen)
        [letter] = letters
        assert letter.to == "worker"
        assert letter.data == b'"fail"'
        assert "last delivery (3)" in letter.reason and "always fails" in letter.reason
        assert await drained(system, "worker")  # nothing left that could come again
        assert rec.seen.count("fail") == 3  # terminated: never delivered again
        assert await deliveries_made(system, "worker") == 3 + 2


async def test_a_repeated_message_id_is_stored_and_handled_once(
    nats_server: NatsServer, tenant: str
) -> None:
    async with durable_worker(nats_server, tenant, 2) as (system, ref, rec):
        durable = system._runtime.transport.durable
        assert durable is not None
        headers = {MESSAGE_ID: "the-same-id"}
        data = encode_body("once", system._runtime.codecs.default, headers)
        subject = f"sdk.agent.client.worker.{tenant}"
        await durable.publish(subject, data, headers=dict(headers))
        await durable.publish(subject, data, headers=dict(headers))  # a publisher's retry
        await ref.tell("marker")
        await asyncio.wait_for(rec.done.wait(), 10)
        assert await drained(system, "worker")  # a second copy would have been handled by now
        assert sorted(rec.seen) == ["marker", "once"]
        assert await deliveries_made(system, "worker") == 2  # the server kept one copy


async def test_a_request_sent_while_the_agent_is_down_is_handled_when_it_comes_back(
    nats_server: NatsServer, tenant: str
) -> None:
    rec = recorder(1)
    async with ActorSystem(tenant, settings=settings(nats_server)) as first:
        await first.spawn(rec, name="worker", mailbox="durable")  # creates stream and consumer
    async with ActorSystem(tenant, settings=settings(nats_server)) as asker:
        ref = asker.ref("worker", mailbox="durable")
        ask = asyncio.create_task(ref.ask("while-down", timeout=10))
        for _ in range(100):  # stored, with nobody to take it
            if (await stream_state(asker, "worker"))[0] == 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the request was not stored within 5 s")
        assert not ask.done() and rec.seen == []
        async with ActorSystem(tenant, settings=settings(nats_server)) as second:
            await second.spawn(rec, name="worker", mailbox="durable")
            assert await asyncio.wait_for(ask, 10) == {"got": "while-down"}


async def test_a_request_whose_time_ran_out_while_stored_is_dead_lettered_not_handled(
    nats_server: NatsServer, tenant: str
) -> None:
    rec = recorder(1)
    async with ActorSystem(tenant, settings=settings(nats_server)) as first:
        await first.spawn(rec, name="worker", mailbox="durable")
    async with ActorSystem(tenant, settings=settings(nats_server)) as system:
        with pytest.raises(AskTimeout, match="stays stored"):
            await system.ref("worker", mailbox="durable").ask("too-late", timeout=0.3)
        await system.spawn(rec, name="worker", mailbox="durable")
        await system.ref("worker", mailbox="durable").tell("after")
        await asyncio.wait_for(rec.done.wait(), 10)
        letters = await dead_letters(system)
        assert rec.seen == ["after"]
        assert [d.data for d in letters] == [b'"too-late"']
        assert letters[0].reason.startswith("expired")


async def test_sending_to_a_durable_name_nobody_spawned_is_no_responders(
    nats_server: NatsServer, tenant: str
) -> None:
    async with ActorSystem(tenant, settings=settings(nats_server)) as system:
        with pytest.raises(NoResponders, match="mailbox='durable'"):
            await system.ref("nobody", mailbox="durable").tell("hi")


def test_the_durable_side_is_the_transports_own_however_it_keeps_it() -> None:
    """Runtime.durable asks the transport; only a missing durable side is a ConfigError."""
    from types import SimpleNamespace

    from motadata_actors.actors._runtime import Runtime

    store = object()

    class PerInstance:  # a transport given to ActorSystem, its store set per instance
        def __init__(self) -> None:
            self.durable = store

    class Broken:
        @property
        def durable(self) -> object:
            return self.missing  # type: ignore[attr-defined]  # a fault of its own

    def durable_of(transport: object) -> object:
        return Runtime.durable(SimpleNamespace(transport=transport), "a durable mailbox")  # type: ignore[arg-type]

    assert durable_of(PerInstance()) is store
    with pytest.raises(ConfigError, match="a durable mailbox needs JetStream"):
        durable_of(object())
    with pytest.raises(AttributeError, match="missing"):  # not passed off as "no JetStream"
        durable_of(Broken())


async def test_a_durable_mailbox_in_process_is_a_config_error_naming_the_setting(
    tenant: str,
) -> None:
    async with ActorSystem(tenant, settings=Settings(enable_nats=False)) as system:
        with pytest.raises(ConfigError, match="ENABLE_NATS"):
            await system.spawn(recorder(1), name="worker", mailbox="durable")
        with pytest.raises(ConfigError, match="ENABLE_NATS"):
            await system.ref("worker", mailbox="durable").tell("x")
        with pytest.raises(ConfigError, match="'core' or 'durable'"):
            system.ref("worker", mailbox="disk")  # type: ignore[arg-type]


def working(seconds: float, until: int) -> tuple[type[Actor], list[Any], asyncio.Event]:
    """An actor working ``seconds`` per message; what it got; set once it got ``until``."""
    deliveries: list[Any] = []
    done = asyncio.Event()

    class Working(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            deliveries.append(msg)
            await asyncio.sleep(seconds)
            if len(deliveries) >= until:
                done.set()

    return Working, deliveries, done


async def test_a_handler_longer_than_ack_wait_keeps_its_message_with_in_progress_acks(
    nats_server: NatsServer, tenant: str
) -> None:
    Long, deliveries, finished = working(2.5, 1)  # 2.5 ack-waits

    async with ActorSystem(tenant, settings=settings(nats_server, durable_ack_wait=1.0)) as system:
        ref = await system.spawn(Long, name="long", mailbox="durable")
        await ref.tell("work")  # a tell: a redelivered ask would be answered from the cache
        await asyncio.wait_for(finished.wait(), 10)
        assert await drained(system, "long")  # acked: nothing left that could come again
        assert deliveries == ["work"]
        assert await deliveries_made(system, "long") == 1  # never redelivered


async def test_settings_drift_is_reported_and_streams_apply_changes_it(
    nats_server: NatsServer, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    from io import StringIO

    from motadata_actors._streams import apply_streams, show_streams

    async with ActorSystem(tenant, settings=settings(nats_server)) as system:
        await system.spawn(recorder(1), name="worker", mailbox="durable")
    other = settings(nats_server, durable_max_deliver=7, durable_max_age=3600.0)
    async with ActorSystem(tenant, settings=other) as system:
        await system.spawn(recorder(1), name="worker", mailbox="durable")
    drift = [r.getMessage() for r in caplog.records if "differs" in r.getMessage()]
    assert any("max_age" in m for m in drift) and any("max_deliver" in m for m in drift), drift

    out = StringIO()
    assert await apply_streams(other, tenant, out) == 2
    assert "max_age: 604800.0 -> 3600.0" in out.getvalue()
    assert "agent_worker.max_deliver: 5 -> 7" in out.getvalue()
    shown = StringIO()
    await show_streams(other, tenant, shown)
    text = shown.getvalue()
    assert f"stream SDK_AGENTS_{tenant}" in text and "max_age 3600.0s" in text
    assert "consumer agent_worker: 0 waiting" in text and "max_deliver 7" in text
    again = StringIO()
    assert await apply_streams(other, tenant, again) == 0
    assert "nothing to change" in again.getvalue()


async def test_messages_waiting_in_a_slow_actors_mailbox_are_not_redelivered(
    nats_server: NatsServer, tenant: str
) -> None:
    Slow, deliveries, done = working(0.3, 8)

    # Eight pulled at once, 2.4 s of work, a 1 s ack-wait: the last ones wait in the
    # mailbox for more than two ack-waits, kept there by in-progress acks.
    config = settings(nats_server, durable_ack_wait=1.0, durable_prefetch=8)
    async with ActorSystem(tenant, settings=config) as system:
        ref = await system.spawn(Slow, name="slow", mailbox="durable")
        for i in range(8):
            await ref.tell(i)
        await asyncio.wait_for(done.wait(), 15)
        assert await drained(system, "slow")  # acked: nothing left that could come again
        assert deliveries == list(range(8))
        assert await deliveries_made(system, "slow") == 8  # none redelivered


async def test_an_ask_whose_time_runs_out_while_queued_is_dead_lettered_when_taken(
    nats_server: NatsServer, tenant: str
) -> None:
    taken: list[Any] = []

    class Blocking(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            taken.append(msg)
            if msg == "first":
                await asyncio.sleep(1.0)
            return msg

    async with ActorSystem(tenant, settings=settings(nats_server)) as system:
        ref = await system.spawn(Blocking, name="blocking", mailbox="durable")
        await ref.tell("first")
        await wait_for(lambda: taken == ["first"], 5, "'first' taken")  # the ask queues behind it
        with pytest.raises(AskTimeout):
            await ref.ask("queued", timeout=0.4)
        [letter] = await dead_letters(system)
        assert letter.data == b'"queued"' and letter.reason.startswith("expired")
        assert taken == ["first"]


async def test_a_stream_the_server_refuses_is_a_config_error_with_its_reason(
    nats_server: NatsServer, tenant: str
) -> None:
    # Three replicas on a single server: JetStream refuses (the dead-letter stream, made
    # at start, is the first), and the error says why and which setting to check.
    with pytest.raises(ConfigError, match=r"refused .*replicas > 1.*SDK_DURABLE_REPLICAS"):
        async with ActorSystem(tenant, settings=settings(nats_server, durable_replicas=3)):
            pass  # pragma: no cover


async def test_durable_agents_spawned_at_once_in_several_systems_all_keep_their_subjects(
    nats_server: NatsServer, tenant: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        systems = [
            await stack.enter_async_context(ActorSystem(tenant, settings=settings(nats_server)))
            for _ in range(4)
        ]
        refs = await asyncio.gather(
            *(
                s.spawn(recorder(1), name=f"agent{i}", mailbox="durable")
                for i, s in enumerate(systems)
            )
        )
        for ref in refs:
            assert await ref.ask("here?", timeout=5) == {"got": "here?"}


async def test_a_durable_mailbox_whose_stream_is_deleted_makes_it_again(
    nats_server: NatsServer, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with durable_worker(nats_server, tenant, 1) as (system, ref, rec):
        transport = system._runtime.transport
        assert isinstance(transport, NatsTransport)
        await transport.client.jetstream().delete_stream(agents_stream(tenant))
        for _ in range(100):  # the pull loop notices and makes stream and consumer again
            try:
                await ref.tell("after the delete")
                break
            except NoResponders:
                await asyncio.sleep(0.1)
        await asyncio.wait_for(rec.done.wait(), 10)
        assert rec.seen == ["after the delete"]
        assert "was gone; made again" in caplog.text


class _Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return {"attempt": ctx.attempt, "msg": msg}


async def test_a_core_ask_to_a_durable_agent_says_how_to_ask_it(
    nats_server: NatsServer, tenant: str
) -> None:
    """The core request races JetStream's PubAck: a clear ConfigError, not the PubAck."""
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        await system.spawn(_Echo, name="echo", mailbox="durable")
        with pytest.raises(ConfigError, match="mailbox='durable'"):
            await system.ref("echo").ask("hi", timeout=5)
        durable = system.ref("echo", mailbox="durable")
        assert await durable.ask("hi", timeout=5) == {"attempt": 1, "msg": "hi"}
