"""Workflows: ordered, kept steps; concurrent publishers; compare-and-set; followers."""

from __future__ import annotations

import asyncio
import re
from typing import Any, ClassVar

import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConfigError,
    Context,
    SequenceConflict,
    Settings,
    SubjectError,
    message,
)
from motadata_actors.mailbox import NatsServer

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio


@message("test.step.v1")
class Step:
    publisher: int
    n: int


class Follower(Actor):
    """Follows workflow ``wf``; records (seq, value); fails once on the step named 'flaky'."""

    seen: ClassVar[list[tuple[int | None, Any]]] = []
    failed: ClassVar[int] = 0

    async def on_start(self) -> None:
        await self.follow("wf")

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        assert ctx.workflow_id == "wf"
        if msg == "flaky" and Follower.failed == 0:
            Follower.failed += 1
            raise RuntimeError("not yet")
        Follower.seen.append((ctx.sequence, msg))


@pytest.fixture(autouse=True)
def _clear() -> None:
    Follower.seen.clear()
    Follower.failed = 0


async def test_order_under_concurrent_publishers(nats_server: NatsServer, tenant: str) -> None:
    """Four publishers at once: one order for every reader, each publisher's steps in its order."""
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        await system.spawn(Follower, name="follower")
        wf = system.workflow("wf")

        async def publisher(p: int) -> list[int]:
            return [await wf.publish(Step(publisher=p, n=n)) for n in range(25)]

        acked = await asyncio.gather(*(publisher(p) for p in range(4)))
        history = await wf.history()
        assert len(history) == 100
        seqs = [step.seq for step in history]
        assert seqs == sorted(seqs) and len(set(seqs)) == 100
        assert sorted(s for run in acked for s in run) == seqs  # what publish returned
        for p in range(4):
            mine = [step.value.n for step in history if step.value.publisher == p]
            assert mine == list(range(25))
        interleaved = [step.value.publisher for step in history]
        assert interleaved != sorted(interleaved)  # they did run at the same time
        await wait_for(lambda: len(Follower.seen) == 100, 20, "the follower to see 100 steps")
        assert Follower.seen == [(step.seq, step.value) for step in history]


async def test_follower_keeps_order_across_a_failure(nats_server: NatsServer, tenant: str) -> None:
    settings = Settings(nats_urls=(nats_server.url,), durable_backoff=0.05)
    async with ActorSystem(tenant, settings=settings) as system:
        wf = system.workflow("wf")
        for step in ("plan", "flaky", "write", "review"):
            await wf.publish(step)
        await system.spawn(Follower, name="follower")  # joins late: replays from the start
        await wait_for(lambda: len(Follower.seen) == 4, 20, "every step")
        assert [v for _, v in Follower.seen] == ["plan", "flaky", "write", "review"]
        assert Follower.failed == 1


class BusyFollower(Actor):
    """Follows ``wf`` with four workers; fails twice on step 7 (published while it runs)."""

    seen: ClassVar[list[int]] = []
    failed: ClassVar[int] = 0

    async def on_start(self) -> None:
        await self.follow("wf")

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == 7 and BusyFollower.failed < 2:
            BusyFollower.failed += 1
            raise RuntimeError("step 7 failed")
        await asyncio.sleep(0.001 * (msg % 3))  # uneven handling times
        BusyFollower.seen.append(msg)


async def test_a_live_follower_keeps_step_order_under_injected_failures(
    nats_server: NatsServer, tenant: str
) -> None:
    BusyFollower.seen, BusyFollower.failed = [], 0
    settings = Settings(nats_urls=(nats_server.url,), durable_backoff=0.05)
    async with ActorSystem(tenant, settings=settings) as system:
        await system.spawn(BusyFollower, name="busy", concurrency=4)
        wf = system.workflow("wf")
        for n in range(20):
            await wf.publish(n)
        await wait_for(lambda: len(BusyFollower.seen) == 20, 30, "twenty steps")
        assert BusyFollower.seen == list(range(20))
        assert BusyFollower.failed == 2


async def test_compare_and_set_publishing(nats_server: NatsServer, tenant: str) -> None:
    """Coordinators that append only on the latest view: no lost or doubled decision."""
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        wf = system.workflow("claims")
        assert await wf.publish("open", expect_seq=0) >= 1
        with pytest.raises(SequenceConflict, match="another publisher"):
            await wf.publish("open again", expect_seq=0)
        conflicts = 0

        async def claimer(who: int) -> None:
            nonlocal conflicts
            for _ in range(5):
                while True:
                    last = (await wf.history())[-1].seq
                    try:
                        await wf.publish({"claim": who}, expect_seq=last)
                        break
                    except SequenceConflict:
                        conflicts += 1

        await asyncio.gather(*(claimer(w) for w in range(3)))
        values = [step.value for step in await wf.history()]
        assert values[0] == "open" and len(values) == 16
        assert sorted(v["claim"] for v in values[1:]) == sorted(list(range(3)) * 5)
        assert conflicts > 0  # the claimers did collide, and every collision was refused


async def test_streams_show_lists_events_and_workflows(
    nats_server: NatsServer, tenant: str
) -> None:
    import io

    from motadata_actors._streams import show_streams

    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        await system.spawn(Follower, name="follower")
        await system.workflow("wf").publish("plan")
        await system.publish("e", event_type="tick", durable=True)
        await wait_for(lambda: len(Follower.seen) == 1, 10, "the step")
        out = io.StringIO()
        await show_streams(Settings(nats_urls=(nats_server.url,)), tenant, out)
        text = out.getvalue()
        assert f"stream SDK_WORKFLOWS_{tenant}: 1 message(s)" in text
        assert f"stream SDK_EVENTS_{tenant}: 1 message(s)" in text
        assert re.search(r"consumer wf_follower_wf_[0-9a-f]{12}: 0 waiting", text), text


class BadFollower(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        try:
            await self.follow(msg[0], start=msg[1])
        except (SubjectError, ConfigError) as exc:
            return type(exc).__name__
        return "followed"


async def test_workflow_ids_are_checked(nats_server: NatsServer, tenant: str) -> None:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        follower = await system.spawn(BadFollower, name="bad")
        assert await follower.ask(["a.b", "all"]) == "SubjectError"
        assert await follower.ask(["w", 0]) == "ConfigError"  # not a stream sequence
        assert await follower.ask(["w", "bogus"]) == "ConfigError"
        assert await follower.ask(["w", 1]) == "followed"
        with pytest.raises(SubjectError, match="workflow id"):
            system.workflow("a.b")
        with pytest.raises(SubjectError, match="workflow id"):
            system.workflow("*")
        assert await system.workflow("empty").history() == []


class Named(Actor):
    """Follows the workflow named in its messages; records (own name, workflow, step)."""

    seen: ClassVar[list[tuple[str, str | None, Any]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, dict):
            await self.follow(msg["follow"])
            return "ok"
        Named.seen.append((self.name, ctx.workflow_id, msg))
        return None


async def test_followers_whose_names_look_alike_get_only_their_workflow(
    nats_server: NatsServer, tenant: str
) -> None:
    """Actor a_b follows c, actor a follows b_c: their consumers must not be one."""
    Named.seen.clear()
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        ab = await system.spawn(Named, name="a_b")
        a = await system.spawn(Named, name="a")
        assert await ab.ask({"follow": "c"}) == "ok"
        assert await a.ask({"follow": "b_c"}) == "ok"
        for i in range(4):
            await system.workflow("c").publish(f"c{i}")
            await system.workflow("b_c").publish(f"bc{i}")
        await wait_for(lambda: len(Named.seen) == 8, 10, "every step")
        assert sorted(Named.seen) == sorted(
            [("a_b", "c", f"c{i}") for i in range(4)] + [("a", "b_c", f"bc{i}") for i in range(4)]
        )


async def test_a_deleted_workflow_stream_is_made_again(
    nats_server: NatsServer, tenant: str
) -> None:
    import nats

    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        wf = system.workflow("w1")
        await wf.publish("before")
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().delete_stream(f"SDK_WORKFLOWS_{tenant}")
        finally:
            await nc.close()
        assert await wf.history() == []
        await wf.publish("after")
        assert [step.value for step in await wf.history()] == ["after"]


async def test_a_resend_with_the_same_id_is_stored_once(
    nats_server: NatsServer, tenant: str
) -> None:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        wf = system.workflow("idem")
        first = await wf.publish("charge", message_id="charge-order-42")
        again = await wf.publish("charge", message_id="charge-order-42")  # after ConnectionLost
        assert again == first
        assert [step.message_id for step in await wf.history()] == ["charge-order-42"]
