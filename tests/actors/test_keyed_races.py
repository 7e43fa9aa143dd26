"""Keyed agents where things happen at once: a lease lost mid-handling, errors of the
lease buckets, a failed start, the shutdown grace, a key given up by another node.

Each test here failed before its fix (found by a review of the keyed cell). They run in
process: the races are the cell's own, whatever the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConnectionLost,
    Context,
    RemoteError,
    Settings,
)
from motadata_actors.actors._keyed import KeyedCell
from motadata_actors.mailbox import InProcessTransport
from motadata_actors.mailbox._kv import bucket_name

from ..conftest import wait_for

pytestmark = pytest.mark.anyio


def in_process(bus: InProcessTransport | None = None, **settings: Any) -> ActorSystem:
    return ActorSystem(
        "acme", transport=bus or InProcessTransport(), handle_signals=False, lease_time=30.0,
        settings=Settings(enable_nats=False, **settings),
    )  # fmt: skip


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with in_process() as system:
        yield system


def cell_of(system: ActorSystem) -> KeyedCell:
    cell = system.root._children[-1].node
    assert isinstance(cell, KeyedCell)
    return cell


def waiting(system: ActorSystem, key: str) -> int:
    """How many messages wait for ``key``'s activation (being made, handling or ending)."""
    act = cell_of(system)._active.get(key)
    return len(act.pending or ()) if act is not None else 0


async def lose_lease(system: ActorSystem) -> None:
    """Lose the node's lease as a long pause does: its node key gone, a renewal finds it."""
    rt = system._runtime
    assert rt.leases is not None
    nodes = await rt.transport.key_value(  # type: ignore[attr-defined]
        bucket_name("nodes", rt.tenant), ttl=rt.leases.lease_time
    )
    await nodes.delete(rt.leases.node)
    await rt.leases.renew()
    assert rt.leases.lost == 1


async def hosting(system: ActorSystem) -> tuple[Any, Any]:
    """Spawn ``Logged`` keyed; the system's leases and its node bucket."""
    await system.spawn_keyed(Logged, kind="k", idle_after=60)
    leases = system._runtime.leases
    assert leases is not None and leases._nodes is not None
    return leases, leases._nodes


async def paused_past_the_lease(system: ActorSystem) -> None:
    """A long pause: the node key expired, the lease past its validity (found at its use)."""
    leases = system._runtime.leases
    assert leases is not None and leases._nodes is not None
    await leases._nodes.delete(leases.node)
    leases._valid_until = 0.0


class Logged(Actor):
    """Logs its starts, stops and handlings; "slow" waits for ``gate``; keeps what it saw."""

    state: ClassVar[Any] = {"seen": []}
    log: ClassVar[list[str]]
    gate: ClassVar[asyncio.Event]
    starting: ClassVar[asyncio.Event | None] = None  # the first start waits for it

    async def on_start(self) -> None:
        Logged.log.append("start")
        if Logged.starting is not None and Logged.log.count("start") == 1:
            await Logged.starting.wait()

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Logged.log.append(f"handle {msg}")
        if msg == "slow":
            await Logged.gate.wait()
        self.state["seen"].append(msg)
        return list(self.state["seen"])


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    Logged.log, Logged.gate, Logged.starting = [], asyncio.Event(), None


async def test_a_lease_lost_while_a_key_is_handled_never_makes_it_two_instances(
    system: ActorSystem,
) -> None:
    # The lost lease forgot the key at once: the next message made a second instance
    # beside the running one, and the message queued before it ran after it.
    await system.spawn_keyed(Logged, kind="k", idle_after=60, concurrency=4)
    ref = system.ref("k", key="a")
    await ref.tell("slow")
    await wait_for(lambda: Logged.log == ["start", "handle slow"], 5, "slow to be handled")
    await ref.tell("m2")
    await wait_for(lambda: waiting(system, "a") == 1, 5, "m2 to wait")
    await lose_lease(system)
    await ref.tell("m3")
    await wait_for(
        lambda: waiting(system, "a") == 2 or Logged.log.count("start") == 2,
        5, "m3 to be taken in",
    )  # fmt: skip
    assert Logged.log == ["start", "handle slow"]  # m3 waits; no second instance
    Logged.gate.set()
    assert await ref.ask("m4", timeout=5) == ["slow", "m2", "m3", "m4"]
    assert Logged.log == ["start", "handle slow", "start", "handle m2", "handle m3", "handle m4"]


async def test_a_lease_lost_while_a_key_starts_loses_none_of_its_messages(
    system: ActorSystem,
) -> None:
    # The message the instance was started for was skipped without a word (its asker
    # waited out its timeout), and the one behind it was handled.
    Logged.starting = asyncio.Event()
    await system.spawn_keyed(Logged, kind="k", idle_after=60, concurrency=4)
    ref = system.ref("k", key="a")
    first = asyncio.create_task(ref.ask("m1", timeout=10))
    await wait_for(lambda: Logged.log == ["start"], 5, "the instance to be starting")
    second = asyncio.create_task(ref.ask("m2", timeout=10))
    await wait_for(lambda: waiting(system, "a") == 1, 5, "m2 to wait")
    await lose_lease(system)
    Logged.starting.set()
    assert await first == ["m1"]
    assert await second == ["m1", "m2"]


async def test_every_asker_waiting_on_a_key_that_fails_to_start_is_told(
    system: ActorSystem,
) -> None:
    # Only the first asker was told; the messages that queued meanwhile were dropped.
    release = asyncio.Event()

    class Broken(Actor):
        async def on_start(self) -> None:
            await release.wait()
            raise RuntimeError("database down")

    await system.spawn_keyed(Broken, kind="k", idle_after=60)
    ref = system.ref("k", key="a")
    asks = [asyncio.create_task(ref.ask(f"m{i}", timeout=10)) for i in range(3)]
    await wait_for(lambda: waiting(system, "a") == 2, 5, "m1 and m2 to wait")
    release.set()
    for ask in asks:
        with pytest.raises(RemoteError, match="database down"):
            await ask


async def test_a_lease_bucket_that_does_not_answer_refuses_the_message_not_the_system(
    system: ActorSystem,
) -> None:
    # A read error of the node bucket (a NATS blip) left the worker, and took the whole
    # system down with it.
    await system.spawn_keyed(Logged, kind="k", idle_after=60, concurrency=2)
    leases = system._runtime.leases
    assert leases is not None and leases._nodes is not None
    leases._remember("k.a", "another-node")  # held elsewhere, its liveness to be read
    real_get = leases._nodes.get

    async def unanswered(key: str) -> Any:
        raise ConnectionLost("the server does not answer (injected)")

    leases._nodes.get = unanswered  # type: ignore[method-assign]
    try:
        with pytest.raises(RemoteError, match="lease could not be taken"):
            await system.ref("k", key="a").ask("m", timeout=5)
    finally:
        leases._nodes.get = real_get  # type: ignore[method-assign]
    assert await system.ref("k", key="b").ask("n", timeout=5) == ["n"]
    assert cell_of(system)._workers_left == 2


async def test_a_join_that_fails_after_a_lost_lease_is_tried_again_not_fatal(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found lost (the node key gone after a pause), the join under a new id failed on a
    # server away for a moment: the error left the renewal and took the system down.
    leases, nodes = await hosting(system)
    real_create = nodes.create
    away = True

    async def create(key: str, value: bytes) -> int:
        if away:
            raise ConnectionLost("the server is away (injected)")
        return await real_create(key, value)

    monkeypatch.setattr(nodes, "create", create)
    await paused_past_the_lease(system)
    with pytest.raises(RemoteError, match="lease lapsed"):
        await system.ref("k", key="a").ask("m1", timeout=5)
    assert leases.lost == 1 and not leases.valid()
    away = False
    assert await system.ref("k", key="a").ask("m2", timeout=5) == ["m2"]  # joined again
    assert leases.lost == 1


async def test_a_keys_start_is_held_to_the_shutdown_grace() -> None:
    # Made by a worker, an instance's start (lease, state, on_start) was outside what the
    # grace cancels: an on_start of 60 s held the exit up for 60 s.
    cancelled, began = asyncio.Event(), asyncio.Event()

    class Slow(Actor):
        async def on_start(self) -> None:
            began.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    with anyio.fail_after(20):  # the check: a hang guard far below the 60 s
        async with in_process(shutdown_grace=0.5) as system:
            await system.spawn_keyed(Slow, kind="k", idle_after=60)
            await system.ref("k", key="a").tell("m")
            await asyncio.wait_for(began.wait(), 5)  # on_start runs
    assert cancelled.is_set()
    assert any(e.kind == "dead_letter" for e in system.events())  # its message, as a handler's


async def test_an_instance_ending_at_the_grace_deadline_runs_its_on_stop_to_the_end() -> None:
    # The grace's cancel went through on_stop's shield (a task's own cancel does).
    stopping, ends = asyncio.Event(), []

    class Stopper(Actor):
        async def on_stop(self) -> None:
            stopping.set()
            try:
                await asyncio.sleep(1.5)
                ends.append("flushed")
            except asyncio.CancelledError:
                ends.append("cancelled")
                raise

        async def on_message(self, msg: Any, ctx: Context) -> Any:
            ctx.stop()
            return msg

    async with in_process(shutdown_grace=0.5) as system:
        await system.spawn_keyed(Stopper, kind="k", idle_after=60)
        await system.ref("k", key="a").tell("m")
        await asyncio.wait_for(stopping.wait(), 5)
    assert ends == ["flushed"]
    assert [e.detail for e in system.events("deactivated")] == ["idle or stopped"]


async def test_a_key_given_up_elsewhere_is_taken_by_the_node_it_is_placed_on() -> None:
    # A learned that B held a key now placed on A; B let it go (idle). A believed B for
    # as long as B lived and dropped its messages, and so did B (not placed there).
    class Where(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            return where[id(self._sdk_cell)]

    where: dict[int, str] = {}
    bus = InProcessTransport()
    kwargs = {"transport": bus, "handle_signals": False, "lease_time": 2.0}
    settings = Settings(enable_nats=False)
    async with ActorSystem("acme", settings=settings, **kwargs) as b:  # type: ignore[arg-type]
        await b.spawn_keyed(Where, kind="k", idle_after=60)  # kept until A learned it
        where[id(cell_of(b))] = "B"
        keys = [f"k{i}" for i in range(16)]
        for key in keys:  # alone: every key is B's
            assert await b.ref("k", key=key).ask("?", timeout=5) == "B"
        async with ActorSystem("acme", settings=settings, **kwargs) as a:  # type: ignore[arg-type]
            await a.spawn_keyed(Where, kind="k", idle_after=0.5)
            where[id(cell_of(a))] = "A"
            await b._runtime.leases.refresh()  # type: ignore[union-attr]
            leases = a._runtime.leases
            assert leases is not None
            key = next(k for k in keys if leases.placed_here("k", k))
            assert await a.ref("k", key=key).ask("?", timeout=5) == "B"  # A learns: B's
            cell_of(b).idle_after = 0.5
            cell_of(b)._nap.cancel()  # its sweep looks again now, not in 15 s
            await wait_for(lambda: cell_of(b).keys() == 0, 10, "B to let its keys go")
            retried = {"timeout": 10, "attempt_timeout": 0.5, "attempts": 20}
            assert await a.ref("k", key=key).ask("?", **retried) == "A"


async def test_a_key_the_idle_sweep_starts_again_is_held_to_the_shutdown_grace() -> None:
    # A message that waited while the sweep ended its key was started by the sweep itself,
    # outside what the grace cancels: an on_start of 60 s held the exit up for 60 s.
    ending, end, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()
    starts: list[int] = []

    class Slow(Actor):
        async def on_start(self) -> None:
            starts.append(len(starts))
            if len(starts) == 2:
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        async def on_stop(self) -> None:
            if not end.is_set():
                ending.set()
                await end.wait()

    with anyio.fail_after(20):  # the check: a hang guard far below the 60 s
        async with in_process(shutdown_grace=0.5) as system:
            await system.spawn_keyed(Slow, kind="k", idle_after=0.2)
            await system.ref("k", key="a").tell("m1")
            await asyncio.wait_for(ending.wait(), 10)  # the sweep is ending it
            await system.ref("k", key="a").tell("m2")
            await wait_for(lambda: waiting(system, "a") == 1, 5, "m2 to wait for the end")
            end.set()
            await wait_for(lambda: len(starts) == 2, 5, "the key to start again")
    assert cancelled.is_set()
    # Cut by the grace, as a handler is (its message dead-lettered), not by the teardown.
    assert [e.detail for e in system.events("dead_letter")] == [
        "shutdown: handler cancelled at the grace deadline"
    ]


async def test_an_instance_whose_start_outlived_a_lost_lease_is_dropped_with_its_timers(
    system: ActorSystem,
) -> None:
    # Made while the lease was lost, it was left behind (never stopped, a timer of its
    # own still set) when the key started again.
    made: list[Actor] = []
    starting = asyncio.Event()

    class Timed(Actor):
        async def on_start(self) -> None:
            made.append(self)
            self.start_timer("t", 3600, "late")
            if len(made) == 1:
                await starting.wait()

        async def on_message(self, msg: Any, ctx: Context) -> Any:
            return len(made)

    await system.spawn_keyed(Timed, kind="k", idle_after=60)
    asking = asyncio.create_task(system.ref("k", key="a").ask("m", timeout=10))
    await wait_for(lambda: len(made) == 1, 5, "the first start")
    await lose_lease(system)
    starting.set()
    assert await asking == 2  # handled by the instance made after the loss
    first, second = made
    assert first._sdk_timers is not None and first._sdk_timers.names() == []
    assert second._sdk_timers is not None and second._sdk_timers.names() == ["t"]


async def test_a_join_whose_answer_was_lost_is_taken_as_made(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The join after a lost lease reached the server, its answer did not: every later
    # join was refused (the key was there) until the node key expired, a lease later.
    leases, nodes = await hosting(system)
    real_create = nodes.create
    lost_answers = 1

    async def create(key: str, value: bytes) -> int:
        nonlocal lost_answers
        revision = await real_create(key, value)
        if lost_answers:
            lost_answers -= 1
            raise ConnectionLost("the answer was lost (injected)")
        return revision

    monkeypatch.setattr(nodes, "create", create)
    await paused_past_the_lease(system)
    with pytest.raises(RemoteError, match="lease lapsed"):
        await system.ref("k", key="a").ask("m1", timeout=5)
    assert await system.ref("k", key="a").ask("m2", timeout=5) == ["m2"]
    assert leases.lost == 1
