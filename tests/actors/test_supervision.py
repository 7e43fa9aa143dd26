"""The supervision tree: strategies, intensity, escalation, restart types, hooks.

Actors crash on command. The in-process transport and a manual clock make every
decision deterministic; one test repeats the essentials on a real nats-server.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    Context,
    ManualClock,
    RemoteError,
    Settings,
    SupervisionError,
    Supervisor,
)
from motadata_actors.actors import Strategy
from motadata_actors.mailbox import InProcessTransport, NatsServer

from ..conftest import connect

pytestmark = pytest.mark.anyio

NO_BACKOFF = Backoff(0.0, 0.0, jitter=0.0)


class Worker(Actor):
    """Replies with (name, instance number); crashes on "crash", exits on "exit"."""

    log: ClassVar[list[str]] = []
    instances: ClassVar[int] = 0

    def __init__(self) -> None:
        Worker.instances += 1
        self.number = Worker.instances

    async def on_start(self) -> None:
        self.log.append(f"start {self.name}")

    async def on_restart(self, exc: BaseException | None) -> None:
        self.log.append(f"restart {self.name} {type(exc).__name__ if exc else None}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "crash":
            raise RuntimeError(f"{self.name} crashed on command")
        if msg == "exit":
            ctx.stop()
            return "bye"
        if msg == "slow":
            await anyio.sleep(0.2)
        return (self.name, self.number)


async def workers(
    system: ActorSystem, strategy: Strategy, *names: str
) -> tuple[Supervisor, list[ActorRef]]:
    """A supervisor "workers" with ``strategy`` (no backoff) over a Worker of each name."""
    sup = await system.spawn_supervisor(name="workers", strategy=strategy, backoff=NO_BACKOFF)
    return sup, [await sup.spawn(Worker, name=name) for name in names]


@pytest.fixture(autouse=True)
def reset_worker() -> None:
    Worker.log = []
    Worker.instances = 0


async def crash(ref: Any) -> None:
    with pytest.raises(RemoteError, match="crashed on command"):
        await ref.ask("crash", timeout=5)


async def settle(system: ActorSystem, kind: str, count: int) -> None:
    with anyio.fail_after(5):
        while system.event_counts().get(kind, 0) < count:
            await anyio.sleep(0.01)


async def test_one_for_one_restarts_only_the_failed_child_with_a_fresh_instance(
    system: ActorSystem,
) -> None:
    _, (a, b) = await workers(system, "one_for_one", "a", "b")
    assert await a.ask("hi", timeout=5) == ["a", 1]
    await crash(a)
    assert await a.ask("hi", timeout=5) == ["a", 3]  # a fresh instance, same name and subject
    assert await b.ask("hi", timeout=5) == ["b", 2]  # untouched
    assert Worker.log == ["start a", "start b", "stop a", "restart a RuntimeError"]
    assert [e.actor for e in system.events("restarted")] == ["/workers/a"]
    assert [e.actor for e in system.events("crashed")] == ["/workers/a"]


async def test_one_for_all_restarts_every_child_newest_stopped_first(system: ActorSystem) -> None:
    sup, (a, _, c) = await workers(system, "one_for_all", "a", "b", "c")
    Worker.log.clear()
    await crash(b := sup.ref("b"))
    await settle(system, "restarted", 3)
    assert Worker.log == [
        "stop c",
        "stop b",
        "stop a",
        "restart a None",
        "restart b RuntimeError",
        "restart c None",
    ]
    assert [await r.ask("hi", timeout=5) for r in (a, b, c)] == [["a", 4], ["b", 5], ["c", 6]]


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it(
    system: ActorSystem,
) -> None:
    _, (a, b, _) = await workers(system, "rest_for_one", "a", "b", "c")
    Worker.log.clear()
    await crash(b)
    await settle(system, "restarted", 2)
    assert Worker.log == ["stop c", "stop b", "restart b RuntimeError", "restart c None"]
    assert await a.ask("hi", timeout=5) == ["a", 1]
    why = {e.actor: e.detail for e in system.events("restarted")}
    assert why["/workers/b"].startswith("RuntimeError")
    assert why["/workers/c"] == "rest_for_one: its sibling /workers/b failed"


async def test_messages_sent_during_a_restart_wait_in_the_mailbox(tenant: str) -> None:
    clock = ManualClock()
    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=Settings(enable_nats=False), clock=clock
    ) as system:
        sup = await system.spawn_supervisor(name="workers", backoff=Backoff(1.0, 1.0, jitter=0.0))
        a = await sup.spawn(Worker, name="a")
        await crash(a)
        with anyio.fail_after(5):
            while clock.sleepers == 0:  # the supervisor waits out its backoff
                await anyio.sleep(0.01)
        for i in range(5):
            await a.tell(i)
        assert system.statistics()[0].queued == 5
        clock.advance(1.0)
        assert await a.ask("after", timeout=5) == ["a", 2]
        stats = system.statistics()[0]
        assert (stats.handled, stats.queued, stats.restarts) == (6, 0, 1)


async def test_restart_intensity_escalates_and_the_parent_restarts_the_subtree(
    system: ActorSystem,
) -> None:
    outer = await system.spawn_supervisor(name="outer", backoff=NO_BACKOFF)
    inner = await outer.spawn_supervisor(
        name="inner", max_restarts=2, within=60, backoff=NO_BACKOFF
    )
    a = await inner.spawn(Worker, name="a")
    for _ in range(3):
        await crash(a)
    await settle(system, "escalated", 1)
    await settle(system, "restarted", 4)
    escalated = system.events("escalated")
    assert [e.actor for e in escalated] == ["/outer/inner"]
    assert "exceeded 2 restarts in 60s" in escalated[0].detail
    assert any(e.actor == "/outer/inner" for e in system.events("restarted"))
    assert (await a.ask("hi", timeout=5))[0] == "a"  # the subtree runs again


async def test_escalation_past_the_root_stops_the_system_with_a_clear_error(tenant: str) -> None:
    settings = Settings(enable_nats=False, root_max_restarts=1, root_within=60)
    reached_end = False

    async def run() -> None:
        nonlocal reached_end
        async with ActorSystem(tenant, transport=InProcessTransport(), settings=settings) as system:
            a = await system.spawn(Worker, name="a")
            await crash(a)
            await crash(a)
            await anyio.sleep(5)  # cancelled by the escalation
            reached_end = True

    with pytest.raises(SupervisionError, match="supervisor / exceeded 1 restarts"):
        await run()
    assert not reached_end
    assert "stop a" in Worker.log


async def test_restart_types(system: ActorSystem) -> None:
    sup = await system.spawn_supervisor(name="workers", backoff=NO_BACKOFF)
    perm = await sup.spawn(Worker, name="perm", restart="permanent")
    trans = await sup.spawn(Worker, name="trans", restart="transient")
    temp = await sup.spawn(Worker, name="temp", restart="temporary")
    # A normal exit: permanent comes back, transient goes.
    assert await perm.ask("exit", timeout=5) == "bye"
    assert await trans.ask("exit", timeout=5) == "bye"
    await settle(system, "stopped", 1)
    # A failure: transient would come back, temporary goes.
    await crash(temp)
    await settle(system, "stopped", 2)
    assert sup.children == ["perm"]
    assert (await perm.ask("hi", timeout=5))[0] == "perm"
    from motadata_actors import NoResponders

    for gone in (trans, temp):
        with pytest.raises(NoResponders):
            await gone.ask("hi", timeout=5)


class FailsToRestart(Worker):
    async def on_restart(self, exc: BaseException | None) -> None:
        raise OSError("cannot reconnect")


async def test_a_failing_restart_counts_toward_intensity_and_escalates(tenant: str) -> None:
    settings = Settings(enable_nats=False, root_max_restarts=100, root_within=60)
    async with ActorSystem(tenant, transport=InProcessTransport(), settings=settings) as system:
        sup = await system.spawn_supervisor(
            name="workers", max_restarts=3, within=60, backoff=NO_BACKOFF, restart="temporary"
        )
        a = await sup.spawn(FailsToRestart, name="a")
        await crash(a)
        await settle(system, "escalated", 1)
        crashes = [e.detail for e in system.events("crashed", "/workers/a")]
        assert crashes[0].startswith("RuntimeError") and all(
            c.startswith("OSError") for c in crashes[1:]
        )
        await settle(system, "stopped", 2)  # a temporary supervisor is removed, with its child
        assert system.root.children == []


async def test_on_start_failure_fails_spawn_and_leaves_nothing_behind(system: ActorSystem) -> None:
    class Broken(Actor):
        async def on_start(self) -> None:
            raise LookupError("no config")

    with pytest.raises(LookupError):
        await system.spawn(Broken, name="broken")
    assert system.root.children == []


async def test_tell_that_crashes_the_handler_is_dead_lettered(
    system: ActorSystem, tenant: str
) -> None:
    a = await system.spawn(Worker, name="a")
    await a.tell("crash")
    await settle(system, "restarted", 1)
    letters = await system.dead_letters()
    assert [letter.reason for letter in letters] == [
        "handler crashed: RuntimeError: a crashed on command"
    ]
    assert letters[0].to == "a" and letters[0].subject == f"sdk.dlq.a.{tenant}"


async def test_supervision_on_a_real_nats_server(nats_server: NatsServer, tenant: str) -> None:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        sup = await system.spawn_supervisor(
            name="workers", strategy="one_for_all", backoff=NO_BACKOFF
        )
        a = await sup.spawn(Worker, name="a")
        b = await sup.spawn(Worker, name="b")
        await crash(a)
        assert await b.ask("hi", timeout=5) == ["b", 4]
        assert await a.ask("hi", timeout=5) == ["a", 3]
        await b.tell("crash")
        await settle(system, "restarted", 4)
        letters = await system.dead_letters()
        assert [letter.reason for letter in letters] == [
            "handler crashed: RuntimeError: b crashed on command"
        ]


async def test_supervisor_stop_stops_its_subtree_newest_first(system: ActorSystem) -> None:
    sup = await system.spawn_supervisor(name="workers")
    inner = await sup.spawn_supervisor(name="inner")
    await sup.spawn(Worker, name="a")
    await inner.spawn(Worker, name="b")
    await sup.spawn(Worker, name="c")
    Worker.log.clear()
    await sup.stop()
    assert Worker.log == ["stop c", "stop a", "stop b"]  # children: inner, a, c
    assert system.root.children == []
    from motadata_actors import SupervisionError as Stopped

    with pytest.raises(Stopped, match="is stopped"):
        await sup.spawn(Worker, name="late")
