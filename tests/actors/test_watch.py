"""Watching: a termination notice when a watched agent stops, crashes (keyed) or its
process dies; on both transports, and across a killed process on NATS."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from motadata_actors import Actor, ActorSystem, Context, RemoteError, Terminated
from motadata_actors.mailbox import NatsServer

from ..conftest import connect, start_child, stop_child, system_on, wait_for

pytestmark = pytest.mark.anyio


class Watcher(Actor):
    """Watches what it is told to; records the notices."""

    notices: ClassVar[list[tuple[str, str]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, Terminated):
            Watcher.notices.append((msg.name, msg.reason))
            return None
        op, name, key = msg
        target = ctx.ref(name, key=key)
        if op == "watch":
            await self.watch(target)
            return None
        return await self.unwatch(target)


class Worker(Actor):
    """Answers, crashes or stops on request."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "crash":
            raise RuntimeError("worker crashed")
        if msg == "stop":
            ctx.stop()
        return os.getpid()


@pytest.fixture(autouse=True)
def _fresh() -> None:
    Watcher.notices = []


@pytest.fixture(params=["inprocess", "nats"])
async def system(
    request: pytest.FixtureRequest, nats_server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    """A system with a watcher, on each transport in turn."""
    async with system_on(request.param, nats_server, tenant, lease_time=2.0) as system:
        await system.spawn(Watcher, name="watcher")
        yield system


async def test_a_stopped_agent_is_announced_to_its_watcher_once(system: ActorSystem) -> None:
    await system.spawn(Worker, name="worker", restart="temporary")
    watcher = system.ref("watcher")
    await watcher.ask(("watch", "worker", None))
    await system.stop("worker")
    await wait_for(lambda: Watcher.notices == [("worker", "stopped")], 10, "the notice")
    await system.spawn(Worker, name="worker", restart="temporary")
    await system.stop("worker")  # not watched any more: no second notice
    await watcher.ask(("watch", "worker", None))
    assert await watcher.ask(("unwatch", "worker", None)) is True
    assert await watcher.ask(("unwatch", "worker", None)) is False
    assert Watcher.notices == [("worker", "stopped")]


async def test_a_keyed_instance_is_announced_when_it_crashes_not_when_idle(
    system: ActorSystem,
) -> None:
    await system.spawn_keyed(Worker, kind="job", idle_after=0.2)
    watcher, job = system.ref("watcher"), system.ref("job", key="j1")
    await job.ask("hello")
    await watcher.ask(("watch", "job", "j1"))
    await wait_for(lambda: system.statistics()[-1].keys == 0, 10, "the idle deactivation")
    with pytest.raises(RemoteError):
        await job.ask("crash")
    await wait_for(lambda: Watcher.notices != [], 10, "the notice")
    assert Watcher.notices == [("job~j1", "crashed: RuntimeError: worker crashed")]


CHILD = """
import asyncio, os, sys
from motadata_actors import Actor, ActorSystem

class Worker(Actor):
    async def on_message(self, msg, ctx):
        return os.getpid()

async def main():
    async with ActorSystem(sys.argv[1], lease_time=1.0) as system:
        await system.spawn(Worker, name="remote")
        await system.spawn_keyed(Worker, kind="job")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def test_the_death_of_a_watched_agents_process_is_announced(
    nats_server: NatsServer, tenant: str
) -> None:
    child = start_child(CHILD, tenant, env={"NATS_URL": nats_server.url, "PYTHONPATH": os.getcwd()})
    try:
        async with ActorSystem(
            tenant, transport=await connect(nats_server), handle_signals=False, lease_time=1.0
        ) as system:
            watcher = await system.spawn(Watcher, name="watcher")
            assert await system.ref("remote").ask("hi") == child.pid
            assert await system.ref("job", key="k").ask("hi") == child.pid
            await watcher.ask(("watch", "remote", None))
            await watcher.ask(("watch", "job", "k"))
            child.send_signal(signal.SIGKILL)
            child.wait()
            await wait_for(lambda: len(Watcher.notices) == 2, 15, "two notices")
        assert sorted(Watcher.notices) == [
            ("job~k", "its process died"),
            ("remote", "no process runs it (its process died or it stopped)"),
        ]
    finally:
        stop_child(child)
