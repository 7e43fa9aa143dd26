"""Events: fan-out, queue groups, broadcast, wildcards, run-time and durable subscriptions."""

from __future__ import annotations

import asyncio
import datetime
import textwrap
from collections import Counter
from typing import Any, ClassVar

import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConfigError,
    Context,
    Settings,
    SubjectError,
    Subscribe,
    TransportClosed,
    message,
)
from motadata_actors.mailbox import InProcessTransport, NatsServer, Transport

from ..conftest import connect, start_child, stop_child, wait_for

pytestmark = pytest.mark.anyio


class Recorder(Actor):
    """Records (actor, event type, value) of every event it handles, in a class-wide list."""

    seen: ClassVar[list[tuple[str, str | None, Any]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "counts":  # an ask from the test: what this process saw, per actor
            return dict(Counter(name for name, _, _ in Recorder.seen))
        Recorder.seen.append((self.name, ctx.event_type, msg))
        return None


def recorder(*events: str | Subscribe) -> type[Recorder]:
    return type("Sub", (Recorder,), {"events": events})


@pytest.fixture(autouse=True)
def _clear() -> None:
    Recorder.seen.clear()


def count(name: str) -> int:
    return sum(1 for n, _, _ in Recorder.seen if n == name)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from collections import Counter
    from motadata_actors import Actor, ActorSystem, Subscribe

    seen = Counter()

    def recorder(*events):
        class Sub(Actor):
            async def on_message(self, msg, ctx):
                if msg == "counts":
                    return dict(seen)
                seen[self.name] += 1

        Sub.events = events
        return Sub

    async def main():
        async with ActorSystem(sys.argv[1]) as system:
            await system.spawn(recorder(Subscribe("task_completed", broadcast=True)), name="cache")
            await system.spawn(recorder(Subscribe("task_completed", queue="indexers")),
                               name="indexer-b")
            await system.spawn(recorder("task_completed"), name="audit")
            await system.spawn(recorder("*"), name="everything")
            await system.spawn(recorder(), name="counts-child")
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


async def test_events_fan_out_across_two_processes(
    fresh_nats_server: NatsServer, tenant: str
) -> None:
    """Broadcast reaches every replica; a queue group and an actor's replicas split events."""
    child = start_child(CHILD, tenant, env={"NATS_URL": fresh_nats_server.url})
    try:
        settings = Settings(nats_urls=(fresh_nats_server.url,))
        async with ActorSystem(tenant, settings=settings) as system:
            await system.spawn(recorder(Subscribe("task_completed", broadcast=True)), name="cache")
            await system.spawn(
                recorder(Subscribe("task_completed", queue="indexers")), name="indexer-a"
            )
            await system.spawn(recorder("task_completed"), name="audit")
            for i in range(20):
                await system.publish({"task": i}, event_type="task_completed")
            for i in range(5):
                await system.publish({"status": i}, event_type="status_changed")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                remote: dict[str, int] = await system.ref("counts-child").ask("counts")
                done = remote.get("everything") == 25 and remote.get("cache") == 20
                if (done and count("cache") == 20) or loop.time() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert count("cache") == 20 and remote["cache"] == 20  # broadcast: each replica
            assert count("indexer-a") + remote.get("indexer-b", 0) == 20  # one per group
            assert count("audit") + remote.get("audit", 0) == 20  # replicas split
            assert remote["everything"] == 25  # "*": every type of the tenant
            assert {t for n, t, _ in Recorder.seen} == {"task_completed"}
    finally:
        stop_child(child)


async def test_wildcard_and_typed_events(transport: Transport, tenant: str) -> None:
    @message("shop.order_placed.v1")
    class OrderPlaced:
        order_id: str

    async with ActorSystem(tenant, transport=transport) as system:
        await system.spawn(recorder("*"), name="all")
        await system.spawn(recorder("shop_order_placed_v1"), name="orders")
        await system.publish(OrderPlaced(order_id="o-1"))
        await system.publish("ping", event_type="heartbeat")
        await wait_for(lambda: count("all") == 2 and count("orders") == 1, 5, "both events")
        assert ("orders", "shop_order_placed_v1", OrderPlaced(order_id="o-1")) in Recorder.seen
        with pytest.raises(SubjectError, match="event_type"):
            await system.publish({"untyped": True})
        with pytest.raises(SubjectError, match="event type"):
            await system.publish("x", event_type="a.b")

        @message("research.pipeline.findings.for_a_rather_long_question_name.published.v1")
        class LongName:
            text: str

        with pytest.raises(SubjectError, match=r"pass event_type=\.\.\."):
            await system.publish(LongName(text="t"))
        await system.publish(LongName(text="t"), event_type="findings_published")


class Dynamic(Recorder):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, dict) and "subscribe" in msg:
            await self.subscribe(msg["subscribe"])
            return "ok"
        if isinstance(msg, dict) and "unsubscribe" in msg:
            await self.unsubscribe(msg["unsubscribe"])
            return "ok"
        return await super().on_message(msg, ctx)


async def test_subscribe_and_unsubscribe_at_run_time(transport: Transport, tenant: str) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(Dynamic, name="dynamic")
        await system.publish(1, event_type="tick")  # not subscribed yet: not received
        assert await ref.ask({"subscribe": "tick"}) == "ok"
        assert await ref.ask({"subscribe": "tick"}) == "ok"  # idempotent: no second copy
        await system.publish(2, event_type="tick")
        await wait_for(lambda: count("dynamic") == 1, 5, "the subscribed event")
        assert await ref.ask({"unsubscribe": "tick"}) == "ok"
        await system.publish(3, event_type="tick")
        await ref.ask("counts")  # the mailbox is FIFO: anything delivered came before this
        assert [v for _, _, v in Recorder.seen] == [2]


async def test_durable_subscriber_that_starts_late_replays(
    nats_server: NatsServer, tenant: str
) -> None:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        for i in range(10):
            await system.publish(i, event_type="price", durable=True)
        await asyncio.sleep(0.05)
        since = datetime.datetime.now(datetime.UTC)
        await asyncio.sleep(0.05)
        await system.publish("other", event_type="noise", durable=True)
        await system.spawn(recorder(Subscribe("price", durable=True)), name="from-start")
        await system.spawn(recorder(Subscribe("price", durable=True, start="new")), name="from-now")
        await system.spawn(recorder(Subscribe("*", durable=True, start=6)), name="from-seq")
        await system.spawn(recorder(Subscribe("*", durable=True, start=since)), name="from-time")
        await system.publish(10, event_type="price", durable=True)
        await wait_for(lambda: count("from-start") == 11, 10, "the replay and the new one")
        await wait_for(lambda: count("from-seq") == 7, 10, "the replay from sequence 6")
        await wait_for(lambda: count("from-now") == 1, 10, "the new event")
        assert [v for n, _, v in Recorder.seen if n == "from-start"] == list(range(11))
        assert [v for n, _, v in Recorder.seen if n == "from-seq"] == [5, 6, 7, 8, 9, "other", 10]
        assert [v for n, _, v in Recorder.seen if n == "from-now"] == [10]
        await wait_for(lambda: count("from-time") == 2, 10, "the replay from a time")
        assert [v for n, _, v in Recorder.seen if n == "from-time"] == ["other", 10]


class Flaky(Actor):
    attempts: ClassVar[Counter[Any]] = Counter()

    events = (Subscribe("job", durable=True),)

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Flaky.attempts[msg] += 1
        if msg == "poison" or (msg == "flaky" and Flaky.attempts[msg] < 2):
            raise RuntimeError(f"cannot do {msg}")


async def test_durable_event_failures_redeliver_then_dead_letter(
    nats_server: NatsServer, tenant: str
) -> None:
    settings = Settings(nats_urls=(nats_server.url,), durable_max_deliver=3, durable_backoff=0.05)
    async with ActorSystem(tenant, settings=settings) as system:
        await system.spawn(Flaky, name="worker")
        for job in ("ok", "flaky", "poison"):
            await system.publish(job, event_type="job", durable=True)
        await wait_for(lambda: Flaky.attempts["poison"] == 3, 15, "three deliveries")
        await wait_for(
            lambda: any("cannot do poison" in e.detail for e in system.events("dead_letter")),
            10,
            "the dead letter",
        )
        assert Flaky.attempts["ok"] == 1
        assert Flaky.attempts["flaky"] == 2
        letters = await system.dead_letters()
        assert [letter.to for letter in letters] == ["worker"]
        assert "last delivery (3)" in letters[0].reason


class Sequencer(Actor):
    """Records durable events in the order handled; fails once on 5 (a passing fault)."""

    events = (Subscribe("step", durable=True, ordered=True),)
    handled: ClassVar[list[int]] = []
    failures: ClassVar[int] = 0

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == 5 and Sequencer.failures == 0:
            Sequencer.failures += 1
            raise RuntimeError("five is not ready yet")
        Sequencer.handled.append(msg)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_an_ordered_durable_subscription_holds_back_events_after_a_failure(
    nats_server: NatsServer, tenant: str, concurrency: int
) -> None:
    """Before: 0,1,2,3,4,6,7,8,9,5 (the failed event redelivered after the rest)."""
    Sequencer.handled, Sequencer.failures = [], 0
    settings = Settings(nats_urls=(nats_server.url,), durable_backoff=0.05)
    async with ActorSystem(tenant, settings=settings) as system:
        await system.spawn(Sequencer, name="sequencer", concurrency=concurrency)
        for n in range(10):
            await system.publish(n, event_type="step", durable=True)
        await wait_for(lambda: len(Sequencer.handled) == 10, 20, "ten events")
        assert Sequencer.handled == list(range(10))
        assert Sequencer.failures == 1


async def test_ordered_needs_durable() -> None:
    with pytest.raises(ConfigError, match="ordered=True needs durable=True"):
        Subscribe("step", ordered=True)


async def test_subscription_errors_are_typed(tenant: str) -> None:
    with pytest.raises(ConfigError, match="broadcast"):
        Subscribe("x", broadcast=True, durable=True)
    with pytest.raises(ConfigError, match="broadcast"):
        Subscribe("x", broadcast=True, queue="g")
    with pytest.raises(SubjectError):
        Subscribe("a.b")
    with pytest.raises(SubjectError):
        Subscribe("x", queue="Bad Group")
    with pytest.raises(ConfigError, match="time zone"):
        Subscribe("x", durable=True, start=datetime.datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="start"):
        Subscribe("x", durable=True, start=0)
    with pytest.raises(ConfigError, match="events entries"):
        await _spawn_in_process(tenant, recorder(42))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ENABLE_NATS"):
        await _spawn_in_process(tenant, recorder(Subscribe("x", durable=True)))
    with pytest.raises(ConfigError, match="subscriptions belong to a running actor"):
        await Recorder().subscribe("x")


async def _spawn_in_process(tenant: str, actor: type[Actor]) -> None:
    async with ActorSystem(tenant, transport=InProcessTransport()) as system:
        await system.spawn(actor, name="bad")
    pytest.fail("spawn should have failed")  # pragma: no cover


async def test_durable_publish_needs_jetstream(tenant: str) -> None:
    async with ActorSystem(tenant, transport=InProcessTransport()) as system:
        with pytest.raises(ConfigError, match="ENABLE_NATS"):
            await system.publish(1, event_type="x", durable=True)
        with pytest.raises(ConfigError, match="ENABLE_NATS"):
            await system.workflow("w").publish("step")


class Racer(Actor):
    """Subscribes from two handlers at once (concurrency 2), then unsubscribes."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "subscribe":
            await self.subscribe("race")
        elif msg == "unsubscribe":
            await self.unsubscribe("race")
        else:
            Recorder.seen.append((self.name, ctx.event_type, msg))
        return "ok"


async def test_concurrent_subscribes_make_one_subscription(
    transport: Transport, tenant: str
) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(Racer, name="racer", concurrency=2)
        await asyncio.gather(ref.ask("subscribe"), ref.ask("subscribe"))
        await system.publish("one", event_type="race")
        await wait_for(lambda: count("racer") == 1, 5, "the event")
        await ref.ask("unsubscribe")
        await system.publish("two", event_type="race")
        await ref.ask("flush")  # FIFO: an event delivered before this is seen by now
        assert [v for n, _, v in Recorder.seen if n == "racer"] == ["one", "flush"]


class LateSubscriber(Actor):
    """Subscribes in on_stop, when the actor is already stopping."""

    refused: ClassVar[list[str]] = []

    async def on_stop(self) -> None:
        try:
            await self.subscribe("late")
        except TransportClosed as exc:
            LateSubscriber.refused.append(str(exc))


async def test_no_subscription_outlives_its_actor(transport: Transport, tenant: str) -> None:
    LateSubscriber.refused.clear()
    async with ActorSystem(tenant, transport=transport) as system:
        await system.spawn(LateSubscriber, name="late")
        assert await system.stop("late") == 1
    assert len(LateSubscriber.refused) == 1 and "stopping" in LateSubscriber.refused[0]


class Answering(Actor):
    """A core subscriber whose handler returns a value (as if it could answer)."""

    events = ("ping",)
    asks: ClassVar[list[bool]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Answering.asks.append(ctx.is_ask)
        return {"answer": msg}  # must go nowhere: an event has no asker


async def test_a_durable_publish_is_not_answered_by_core_subscribers(
    nats_server: NatsServer, tenant: str
) -> None:
    """JetStream's publish is a request: core subscribers see its reply subject, and an
    answer from them would race the acknowledgement the publisher waits for."""
    Answering.asks.clear()
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        await system.spawn(Answering, name="answering")
        for i in range(30):
            await system.publish(i, event_type="ping", durable=True)  # never a stray answer
        await wait_for(lambda: len(Answering.asks) == 30, 10, "every event")
        assert Answering.asks == [False] * 30
