"""Keyed agents and persistent state: the same contract in process and on NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    AskPolicy,
    AskTimeout,
    ConfigError,
    Context,
    RemoteError,
    SequenceConflict,
    Settings,
    StateConflict,
    SubjectError,
)
from motadata_actors.actors._state import StateSlot
from motadata_actors.mailbox import (
    InProcessTransport,
    MemoryKeyValue,
    NatsServer,
    check_key,
    keyed_name,
    parse_subject,
    split_keyed,
)

from ..conftest import connect, system_on, wait_for

pytestmark = pytest.mark.anyio


class Counter(Actor):
    """Adds what it is told; answers (key, total)."""

    state: ClassVar[Any] = {"n": 0}
    started: ClassVar[list[str]] = []
    stopped: ClassVar[list[str]] = []
    running: ClassVar[dict[str, int]] = {}
    overlap: ClassVar[list[str]] = []

    async def on_start(self) -> None:
        assert self.key is not None
        Counter.started.append(self.key)

    async def on_stop(self) -> None:
        assert self.key is not None
        Counter.stopped.append(self.key)

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        assert self.key is not None
        if msg == "boom":
            self.state["n"] += 1000  # never saved: the instance crashes
            raise RuntimeError("boom")
        Counter.running[self.key] = Counter.running.get(self.key, 0) + 1
        if Counter.running[self.key] > 1:
            Counter.overlap.append(self.key)
        await asyncio.sleep(0)
        self.state["n"] += msg
        Counter.running[self.key] -= 1
        return [self.key, ctx.actor, self.state["n"]]


@pytest.fixture(autouse=True)
def _fresh_counter() -> None:
    Counter.started, Counter.stopped, Counter.running, Counter.overlap = [], [], {}, []


@pytest.fixture(params=["inprocess", "nats"])
async def keyed_system(
    request: pytest.FixtureRequest, nats_server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    """A system on each transport in turn, with a short lease."""
    async with system_on(request.param, nats_server, tenant, lease_time=3.0) as system:
        yield system


def test_keys_travel_in_the_to_token_and_never_collide_with_plain_names() -> None:
    token = keyed_name("chat", "session-42")
    assert token == "chat~session-42"
    assert split_keyed(token) == ("chat", "session-42")
    assert split_keyed("chat") == ("chat", None)
    subject = parse_subject(f"sdk.agent.client.{token}.acme")
    assert subject.target == token
    assert check_key("dGVzdA==") == "dGVzdA=="  # base64url keys are keys
    for hostile in ("", "a.b", "*", ">", "x y", "a~b", "ä", "k" * 129, "a\x00"):
        with pytest.raises(SubjectError):
            keyed_name("chat", hostile)
    with pytest.raises(SubjectError):
        check_key(42)
    with pytest.raises(SubjectError):
        keyed_name("Chat", "k")  # kinds are agent names


async def test_the_first_message_activates_one_instance_per_key(
    keyed_system: ActorSystem,
) -> None:
    await keyed_system.spawn_keyed(Counter, kind="counter", idle_after=30)
    a, b = keyed_system.ref("counter", key="a"), keyed_system.ref("counter", key="b")
    assert await a.ask(1, timeout=5) == ["a", "counter~a", 1]
    assert await a.ask(2, timeout=5) == ["a", "counter~a", 3]
    assert await b.ask(5, timeout=5) == ["b", "counter~b", 5]
    assert sorted(Counter.started) == ["a", "b"]
    assert keyed_system.statistics()[-1].keys == 2
    kinds = [e.kind for e in keyed_system.events()]
    assert kinds.count("activated") == 2


async def test_one_key_handles_one_message_at_a_time_in_order_per_sender(
    keyed_system: ActorSystem,
) -> None:
    await keyed_system.spawn_keyed(Counter, kind="counter", idle_after=30, concurrency=8)
    refs = [keyed_system.ref("counter", key=f"k{i}") for i in range(4)]

    async def sender(ref: Any) -> list[int]:
        return [(await ref.ask(1, timeout=5))[2] for _ in range(10)]

    async def burst(ref: Any) -> None:
        for _ in range(20):
            await ref.tell(1)

    results = await asyncio.gather(*(sender(r) for r in refs), *(burst(r) for r in refs))
    for totals in results[:4]:
        assert totals == sorted(totals) and len(set(totals)) == 10
    final = [await r.ask(0, timeout=5) for r in refs]
    assert [f[2] for f in final] == [30, 30, 30, 30]
    assert Counter.overlap == []


async def test_an_idle_instance_is_deactivated_and_comes_back_with_its_state(
    keyed_system: ActorSystem,
) -> None:
    await keyed_system.spawn_keyed(Counter, kind="counter", idle_after=0.2)
    ref = keyed_system.ref("counter", key="s1")
    assert (await ref.ask(7, timeout=5))[2] == 7
    await wait_for(  # the key is let go once its lease is given back, after on_stop
        lambda: keyed_system.statistics()[-1].keys == 0, 10, "the idle instance to end"
    )
    assert Counter.stopped == ["s1"]
    assert (await ref.ask(1, timeout=5))[2] == 8  # a fresh instance, the state kept
    assert Counter.started == ["s1", "s1"]


class Lingering(Actor):
    """Its first instance's ``on_stop`` lasts until released; logs its life and handling."""

    state: ClassVar[Any] = {"n": 0}
    log: ClassVar[list[str]] = []
    ending: ClassVar[asyncio.Event]
    end: ClassVar[asyncio.Event]

    async def on_start(self) -> None:
        Lingering.log.append("start")

    async def on_stop(self) -> None:
        Lingering.log.append("stopping")
        if not Lingering.end.is_set():
            Lingering.ending.set()
            await Lingering.end.wait()
        Lingering.log.append("stopped")

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Lingering.log.append(f"handle {msg}")
        if msg == "slow":
            await asyncio.sleep(0.3)  # far inside the shutdown grace
        self.state["n"] += 1
        return self.state["n"]


async def test_a_message_for_a_key_being_ended_waits_for_the_end_then_starts_it_again(
    keyed_system: ActorSystem,
) -> None:
    # The idle sweep ends the instance; a message coming while its on_stop runs made a
    # second instance at once, beside the first (two instances of one key).
    Lingering.log, Lingering.ending, Lingering.end = [], asyncio.Event(), asyncio.Event()
    await keyed_system.spawn_keyed(Lingering, kind="linger", idle_after=0.2)
    cell = keyed_system.root._children[-1].node  # the kind's cell: b's place is inside
    ref = keyed_system.ref("linger", key="k")
    try:
        assert await ref.ask("a", timeout=5) == 1
        await asyncio.wait_for(Lingering.ending.wait(), 10)  # the sweep is ending it
        asking = asyncio.create_task(ref.ask("b", timeout=10))
        await wait_for(
            lambda: ("k" in cell._active and cell._active["k"].pending)
            or Lingering.log.count("start") == 2,
            5, "b to be taken in (queued for the key, or a second instance)",
        )  # fmt: skip
        assert Lingering.log == ["start", "handle a", "stopping"]  # b waits for the end
    finally:
        Lingering.end.set()
    assert await asking == 2  # the state kept across
    assert Lingering.log == ["start", "handle a", "stopping", "stopped", "start", "handle b"]


async def test_a_crash_ends_only_its_key_and_loses_only_the_unsaved_change(
    keyed_system: ActorSystem,
) -> None:
    await keyed_system.spawn_keyed(Counter, kind="counter", idle_after=30)
    a, b = keyed_system.ref("counter", key="a"), keyed_system.ref("counter", key="b")
    await a.ask(1, timeout=5)
    await b.ask(2, timeout=5)
    with pytest.raises(RemoteError, match="boom"):
        await a.ask("boom", timeout=5)
    assert (await a.ask(1, timeout=5))[2] == 2  # the +1000 was never saved
    assert (await b.ask(0, timeout=5))[2] == 2
    assert Counter.started.count("a") == 2 and Counter.started.count("b") == 1
    assert "a" not in Counter.stopped  # a crashed instance gets no on_stop


class Notes(Actor):
    """A plain agent with state: a list of notes."""

    state: ClassVar[Any] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "crash":
            raise RuntimeError("crash")
        if msg != "read":
            self.state.append(msg)
        return list(self.state)


async def test_a_restarted_plain_agent_finds_its_state(keyed_system: ActorSystem) -> None:
    ref = await keyed_system.spawn(Notes, name="notes")
    await ref.ask("one", timeout=5)
    await ref.ask("two", timeout=5)
    with pytest.raises(RemoteError):
        await ref.ask("crash", timeout=5)
    await wait_for(lambda: keyed_system.statistics()[0].restarts == 1, 10, "the restart")
    assert await ref.ask("read", timeout=5) == ["one", "two"]


async def test_state_survives_the_process_on_nats(nats_server: NatsServer, tenant: str) -> None:
    for expected in (["one"], ["one", "two"]):
        async with ActorSystem(
            tenant, transport=await connect(nats_server), handle_signals=False
        ) as system:
            ref = await system.spawn(Notes, name="notes")
            assert await ref.ask(expected[-1], timeout=5) == expected


async def test_a_stale_save_is_refused_never_overwriting_newer_state(tenant: str) -> None:
    transport = InProcessTransport()
    async with ActorSystem(
        tenant, transport=transport, settings=Settings(enable_nats=False), handle_signals=False
    ) as system:
        store = await transport.key_value(f"SDK_STATE_{tenant}")
        rt = system._runtime
        stale, fresh = Notes(), Notes()
        old, new = StateSlot(store, "notes", rt), StateSlot(store, "notes", rt)
        await old.load(stale)
        await new.load(fresh)
        fresh.state.append("newer")
        assert await new.save(fresh)
        stale.state.append("stale")
        with pytest.raises(StateConflict, match="stale"):
            await old.save(stale)
        assert isinstance(StateConflict("x"), SequenceConflict)
        await new.load(fresh)
        assert fresh.state == ["newer"]
        assert not await new.save(fresh)  # unchanged: nothing written


async def test_key_value_buckets_are_compare_and_set() -> None:
    now = [0.0]
    kv = MemoryKeyValue("SDK_LEASES_t", ttl=5.0, max_value_size=8, now=lambda: now[0])
    rev = await kv.create("a", b"1")
    with pytest.raises(SequenceConflict):
        await kv.create("a", b"2")
    with pytest.raises(SequenceConflict):
        await kv.update("a", b"2", rev + 1)
    rev2 = await kv.update("a", b"2", rev)
    with pytest.raises(SequenceConflict):
        await kv.delete("a", rev)
    now[0] = 5.0  # past the ttl: forgotten
    assert await kv.get("a") is None
    assert await kv.create("a", b"3") > rev2
    await kv.delete("a")
    assert await kv.keys() == []
    with pytest.raises(Exception, match="exceeds"):
        await kv.create("b", b"123456789")


async def test_keyed_misuse_is_a_clear_error(system: ActorSystem) -> None:
    with pytest.raises(ConfigError, match="not an instance"):
        await system.spawn_keyed(Counter(), kind="counter")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="idle_after"):
        await system.spawn_keyed(Counter, kind="counter", idle_after=0)
    with pytest.raises(ConfigError, match="core mailboxes"):
        system.ref("counter", key="a", mailbox="durable")
    with pytest.raises(SubjectError):
        system.ref("counter", key="a.b")
    with pytest.raises(ConfigError, match="keeps no state"):
        await Actor().save_state()


async def test_two_systems_on_one_server_activate_each_key_once(
    nats_server: NatsServer, tenant: str
) -> None:
    policy = AskPolicy(timeout=2.0, attempts=3)
    async with (
        ActorSystem(tenant, transport=await connect(nats_server), handle_signals=False) as one,
        ActorSystem(tenant, transport=await connect(nats_server), handle_signals=False) as two,
    ):
        await one.spawn_keyed(Counter, kind="counter", idle_after=30)
        await two.spawn_keyed(Counter, kind="counter", idle_after=30)
        keys = [f"k{i}" for i in range(40)]

        async def send(system: ActorSystem, key: str) -> None:
            await system.ref("counter", key=key, ask=policy).ask(1, timeout=5)

        await asyncio.gather(*(send(s, k) for k in keys for s in (one, two) for _ in range(3)))
        assert sorted(Counter.started) == sorted(keys)  # exactly one activation per key
        totals = [(await one.ref("counter", key=k).ask(0, timeout=5))[2] for k in keys]
        assert totals == [6] * len(keys)
        assert one.statistics()[-1].keys + two.statistics()[-1].keys == len(keys)


async def test_status_lists_active_keys_per_kind_and_process(
    nats_server: NatsServer, tenant: str
) -> None:
    from io import StringIO

    from motadata_actors._status_cli import show_status

    settings = Settings(nats_urls=(nats_server.url,))
    async with ActorSystem(tenant, settings=settings, handle_signals=False) as system:
        await system.spawn_keyed(Counter, kind="counter", idle_after=30)
        for key in ("a", "b"):
            await system.ref("counter", key=key).ask(1, timeout=5)
        out = StringIO()
        assert await show_status(settings, tenant, 1.0, out) == 1
        text = out.getvalue()
        assert [line.split()[:2] for line in text.splitlines() if line.startswith("counter")] == [
            ["counter", "keyed"]
        ]
        assert "keyed counter in client (pid" in text and "2 active key(s)" in text
        rows = [line.split() for line in text.splitlines() if line.startswith("  ")]
        assert [row[0] for row in rows if row[1] == "idle"] == ["b", "a"]  # latest first
        assert all(int(row[-2]) > 0 for row in rows if row[1] == "idle")  # state bytes


async def test_activations_and_state_are_traced_and_measured(tenant: str) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=Settings(enable_nats=False),
        handle_signals=False, tracer_provider=tracing,
        meter_provider=MeterProvider(metric_readers=[reader]),
    ) as system:  # fmt: skip
        await system.spawn_keyed(Counter, kind="counter", idle_after=0.2)
        await system.ref("counter", key="a").ask(5, timeout=5)
        await wait_for(lambda: Counter.stopped == ["a"], 10, "the idle deactivation")
        data = reader.get_metrics_data()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    activation = spans["activate counter"]
    assert activation.attributes is not None
    assert activation.attributes["sdk.agent.key"] == "a"
    assert activation.attributes["sdk.lease.token"] >= 1  # type: ignore[operator]
    assert "deactivate counter" in spans
    points: dict[str, int] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    value = getattr(p, "value", None)
                    count = int(value if value is not None else p.count)
                    points[metric.name] = points.get(metric.name, 0) + count
    assert points["sdk.keyed.activations"] == 1
    assert points["sdk.keyed.deactivations"] == 1
    assert points["sdk.state.size"] == 2  # a load and a save
    assert points["sdk.state.duration"] == 2


class Growing(Actor):
    """Keyed, its state a string that grows by what it is told."""

    state: ClassVar[Any] = {"text": ""}

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.state["text"] += msg
        return len(self.state["text"])


async def test_state_over_the_size_limit_is_refused_and_the_saved_one_kept(tenant: str) -> None:
    settings = Settings(enable_nats=False, max_message_size=4096)
    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=settings, handle_signals=False
    ) as system:
        await system.spawn_keyed(Growing, kind="grow", idle_after=30)
        ref = system.ref("grow", key="g")
        assert await ref.ask("x" * 1000, timeout=5) == 1000
        with pytest.raises(RemoteError, match="MessageTooLarge"):
            await ref.ask("y" * 4000, timeout=5)  # over the limit: not saved, instance ends
        assert await ref.ask("z", timeout=5) == 1001  # from the last saved state


async def test_a_kept_state_is_upgraded_like_a_message(
    nats_server: NatsServer, tenant: str
) -> None:
    from motadata_actors import message
    from motadata_actors.codecs import TypeRegistry

    old, new = TypeRegistry(), TypeRegistry()  # before and after the upgrade ships

    @message("tests.memory.v1", registry=old)
    class MemoryV1:
        turns: list[str]

    new.register(MemoryV1, "tests.memory.v1")

    @message(
        "tests.memory.v2", registry=new,
        upgrade={MemoryV1: lambda old: MemoryV2(turns=old.turns, summary="")},
    )  # fmt: skip
    class MemoryV2:
        turns: list[str]
        summary: str

    class ChatV1(Actor):
        state: ClassVar[Any] = MemoryV1(turns=[])

        async def on_message(self, msg: Any, ctx: Context) -> Any:
            self.state.turns.append(msg)
            return type(self.state).__name__

    class ChatV2(Actor):
        state: ClassVar[Any] = MemoryV2(turns=[], summary="")

        async def on_message(self, msg: Any, ctx: Context) -> Any:
            return [type(self.state).__name__, list(self.state.turns)]

    async with ActorSystem(
        tenant, transport=await connect(nats_server), registry=old, handle_signals=False
    ) as system:
        await system.spawn_keyed(ChatV1, kind="chat", idle_after=30)
        assert await system.ref("chat", key="a").ask("hi", timeout=5) == "MemoryV1"
    async with ActorSystem(  # a new version of the program, the same bucket
        tenant, transport=await connect(nats_server), registry=new, handle_signals=False
    ) as system:
        await system.spawn_keyed(ChatV2, kind="chat", idle_after=30)
        assert await system.ref("chat", key="a").ask("?", timeout=5) == ["MemoryV2", ["hi"]]


async def test_a_keyed_handler_past_the_shutdown_grace_is_cancelled_like_a_plain_ones(
    nats_server: NatsServer, tenant: str
) -> None:
    entered: list[str] = []
    cancelled: list[str] = []
    stopped: list[str] = []

    class Slow(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            entered.append(str(self.key))
            if msg == "boom":
                await asyncio.sleep(0.3)  # working while "go" queues for the key
                raise RuntimeError("boom")  # the key starts again for what waits
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(str(self.key))
                raise

        async def on_stop(self) -> None:
            stopped.append(str(self.key))

    host_settings = Settings(nats_urls=(nats_server.url,), shutdown_grace=0.5)
    asker_settings = Settings(nats_urls=(nats_server.url,))
    async with ActorSystem(tenant, settings=asker_settings, handle_signals=False) as asker:
        with anyio.fail_after(20):  # the check: the handlers would hold the exit up for 60 s
            async with ActorSystem(tenant, settings=host_settings, handle_signals=False) as host:
                await host.spawn_keyed(Slow, kind="slow", concurrency=1)
                k1, k2 = asker.ref("slow", key="k1"), asker.ref("slow", key="k2")
                boom = asyncio.create_task(k1.ask("boom", timeout=30, attempts=1))
                slow = asyncio.create_task(k1.ask("go", timeout=30, attempts=1))
                queued = asyncio.create_task(k2.ask("go", timeout=1, attempts=1))
                await wait_for(lambda: entered == ["k1", "k1"], 10, "k1 started again")
        with pytest.raises(RemoteError, match="boom"):
            await boom
        with pytest.raises(RemoteError, match="cancelled at the grace deadline"):
            await slow  # told at once, as a plain actor's asker is
        with pytest.raises(AskTimeout):
            await queued  # never started after the grace: left to its asker's retries
    assert entered == ["k1", "k1"]
    assert cancelled == ["k1"]
    assert stopped == ["k1"]  # the instance started again ended as the others do


async def test_a_key_the_idle_sweep_started_again_is_held_to_the_grace_as_a_workers(
    nats_server: NatsServer, tenant: str
) -> None:
    # A message that waited while the sweep ended its key is handled by a drain the
    # sweep starts. The shutdown waited for the workers only: that drain was cancelled at
    # once (its asker told "cancelled at the grace deadline"), not given the grace.
    Lingering.log, Lingering.ending, Lingering.end = [], asyncio.Event(), asyncio.Event()
    host_settings = Settings(nats_urls=(nats_server.url,), shutdown_grace=10)
    asker_settings = Settings(nats_urls=(nats_server.url,))
    async with ActorSystem(tenant, settings=asker_settings, handle_signals=False) as asker:
        ref = asker.ref("linger", key="k")
        try:
            async with ActorSystem(tenant, settings=host_settings, handle_signals=False) as host:
                await host.spawn_keyed(Lingering, kind="linger", idle_after=0.2)
                cell = host.root._children[-1].node
                assert await ref.ask("a", timeout=5) == 1
                await asyncio.wait_for(Lingering.ending.wait(), 10)  # the sweep ends it
                asking = asyncio.create_task(ref.ask("slow", timeout=10, attempts=1))
                await wait_for(
                    lambda: "k" in cell._active and cell._active["k"].pending,
                    5, "slow to wait for the key's end",
                )  # fmt: skip
                Lingering.end.set()
                await wait_for(lambda: "handle slow" in Lingering.log, 5, "slow handled")
        finally:
            Lingering.end.set()
        assert await asking == 2  # handled to its end inside the grace
    assert Lingering.log == [
        "start", "handle a", "stopping", "stopped",
        "start", "handle slow", "stopping", "stopped",
    ]  # fmt: skip


async def test_leases_a_server_does_not_answer_do_not_hold_the_exit_up(
    nats_server: NatsServer, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server gone at exit: the key's release and the node's removal each waited out
    # the key-value timeout (10 s together). They are given a second each; what is not
    # removed expires with the node's lease.
    async def no_answer(self: MemoryKeyValue, key: str, last: int | None = None) -> None:
        await asyncio.sleep(30)

    async with system_on("inprocess", nats_server, tenant) as system:
        await system.spawn_keyed(Counter, kind="counter")
        assert await system.ref("counter", key="k1").ask(1, timeout=5) == ["k1", "counter~k1", 1]
        monkeypatch.setattr(MemoryKeyValue, "delete", no_answer)
        start = asyncio.get_running_loop().time()
    # About two seconds; the guard is far from the 60 s of two unanswered deletes.
    assert asyncio.get_running_loop().time() - start < 15
    assert Counter.stopped == ["k1"]  # the instance still ended properly
