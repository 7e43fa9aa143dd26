"""Timers and durable reminders: the same contract in process and on NATS, and a reminder
that outlives the process that set it."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConfigError,
    Context,
    Reminder,
    RemoteError,
    SubjectError,
)
from motadata_actors.mailbox import NatsServer

from ..conftest import connect, start_child, stop_child, system_on, wait_for

pytestmark = pytest.mark.anyio


class Nag(Actor):
    """Sets reminders and timers when told; records what reaches it."""

    seen: ClassVar[list[tuple[str, str, Any]]] = []
    instances: ClassVar[list[Actor]] = []

    async def on_start(self) -> None:
        Nag.instances.append(self)

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        assert self.key is not None
        if isinstance(msg, Reminder):
            Nag.seen.append((self.key, msg.name, msg.payload))
            return None
        op, *args = msg
        if op == "remind":
            when = dict(args[2])
            if "at" in when:  # datetimes are not in the value model: sent as ISO text
                when["at"] = datetime.datetime.fromisoformat(when["at"])
            await self.remind(args[0], args[1], **when)
            return None
        if op == "list":
            return [(r.name, r.schedule.split()[0]) for r in await self.reminders()]
        if op == "cancel":
            return await self.cancel_reminder(args[0])
        if op == "timer":
            self.start_timer(args[0], args[1], ("fired", args[0]), repeat=args[2])
            return None
        if op == "fired":
            Nag.seen.append((self.key, f"timer:{args[0]}", None))
            return None
        if op == "stop-timer":
            return self.cancel_timer(args[0])
        raise ValueError(op)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    Nag.seen, Nag.instances = [], []


@pytest.fixture(params=["inprocess", "nats"])
async def system(
    request: pytest.FixtureRequest, nats_server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    """A system hosting the keyed kind ``nag`` on each transport in turn."""
    async with system_on(request.param, nats_server, tenant, lease_time=3.0) as system:
        await system.spawn_keyed(Nag, kind="nag", idle_after=0.3)
        yield system


def _names(key: str) -> list[str]:
    return [name for k, name, _ in Nag.seen if k == key]


async def test_a_one_shot_reminder_wakes_its_deactivated_agent(system: ActorSystem) -> None:
    ref = system.ref("nag", key="u1")
    await ref.ask(("remind", "call-back", {"topic": "refund"}, {"after": 1.0}))
    assert await ref.ask(("list",)) == [["call-back", "@at"]]
    await wait_for(lambda: system.statistics()[-1].keys == 0, 10, "the idle instance to end")
    await wait_for(lambda: _names("u1") == ["call-back"], 15, "the reminder")
    assert Nag.seen == [("u1", "call-back", {"topic": "refund"})]
    assert len(Nag.instances) == 2  # woken: a second activation
    assert await ref.ask(("list",)) == []  # one-shot: gone once fired
    assert any(e.kind == "reminded" for e in system.events())


async def test_a_periodic_reminder_fires_until_cancelled(system: ActorSystem) -> None:
    ref = system.ref("nag", key="u2")
    await ref.ask(("remind", "tick", None, {"every": 1}))
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    await ref.ask(("remind", "later", None, {"at": later.isoformat()}))
    assert await ref.ask(("list",)) == [["later", "@at"], ["tick", "@every"]]
    await wait_for(lambda: _names("u2").count("tick") >= 2, 15, "two ticks")
    assert await ref.ask(("cancel", "tick")) is True
    assert await ref.ask(("cancel", "tick")) is False
    assert await ref.ask(("list",)) == [["later", "@at"]]
    assert await ref.ask(("cancel", "later")) is True


async def test_setting_a_reminder_again_replaces_it(system: ActorSystem) -> None:
    ref = system.ref("nag", key="u3")
    await ref.ask(("remind", "r", 1, {"after": 3600.0}))
    await ref.ask(("remind", "r", 2, {"after": 0.5}))
    await wait_for(lambda: _names("u3") == ["r"], 15, "the replacing reminder")
    assert Nag.seen == [("u3", "r", 2)]
    assert await ref.ask(("list",)) == []


async def test_bad_reminders_are_clear_errors(system: ActorSystem) -> None:
    ref = system.ref("nag", key="u4")
    for kwargs, error in (
        ({}, "exactly one"),
        ({"after": 1.0, "every": 2}, "exactly one"),
        ({"every": 0.5}, "whole seconds"),
        ({"after": -1.0}, ">= 0"),
        ({"at": "2030-01-01T00:00:00"}, "aware"),
    ):
        with pytest.raises(RemoteError, match=error) as info:
            await ref.ask(("remind", "x", None, kwargs))
        assert info.value.type_name == ConfigError.__name__
    with pytest.raises(RemoteError) as bad_name:
        await ref.ask(("remind", "bad.name", None, {"after": 1.0}))
    assert bad_name.value.type_name == SubjectError.__name__


async def test_timers_fire_in_memory_and_end_with_their_instance(system: ActorSystem) -> None:
    ref = system.ref("nag", key="u5")
    await ref.ask(("timer", "once", 0.05, False))
    await wait_for(lambda: "timer:once" in _names("u5"), 10, "the timer")
    await ref.ask(("timer", "again", 0.05, True))
    await wait_for(lambda: _names("u5").count("timer:again") >= 2, 10, "a repeating timer")
    assert await ref.ask(("stop-timer", "again")) is True
    await ref.ask(("timer", "never", 3600.0, False))
    first = Nag.instances[0]
    assert first._sdk_timers is not None and first._sdk_timers.names() == ["never"]
    await wait_for(lambda: system.statistics()[-1].keys == 0, 10, "the idle instance to end")
    assert first._sdk_timers.names() == []  # cancelled with the instance


CHILD = """
import asyncio, sys
from motadata_actors import Actor, ActorSystem

class Nag(Actor):
    async def on_message(self, msg, ctx):
        await self.remind("wake", "from the dead", after=float(msg))

async def main():
    async with ActorSystem(sys.argv[1], lease_time=1.0) as system:
        await system.spawn_keyed(Nag, kind="nag")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def test_a_reminder_outlives_the_process_that_set_it(
    nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    env = {"NATS_URL": nats_server.url, "PYTHONPATH": os.getcwd()}
    child = start_child(CHILD, tenant, env=env)
    try:
        async with ActorSystem(
            tenant, transport=await connect(nats_server), handle_signals=False, lease_time=1.0
        ) as system:
            await system.ref("nag", key="k").ask(("2",)[0], timeout=10)  # the child owns k
            child.send_signal(signal.SIGKILL)
            child.wait()
            await system.spawn_keyed(Nag, kind="nag", idle_after=30)
            await wait_for(lambda: Nag.seen == [("k", "wake", "from the dead")], 20,
                           "the dead process's reminder")  # fmt: skip
    finally:
        stop_child(child)


def test_timers_fire_in_a_program_run_by_asyncio_run() -> None:
    # A timer fires from an event loop callback, where anyio would not start a task: in a
    # program run by asyncio.run (not under the test runner's anyio context) every timer
    # was dropped without a word.
    script = textwrap.dedent(
        """
        import asyncio
        from motadata_actors import Actor, ActorSystem, Settings
        from motadata_actors.mailbox import InProcessTransport

        class Ticker(Actor):
            fired = asyncio.Event()

            async def on_message(self, msg, ctx):
                if msg == "go":
                    self.start_timer("t", 0.05, "tick")
                elif msg == "tick":
                    Ticker.fired.set()

        async def main():
            async with ActorSystem("acme", transport=InProcessTransport(),
                                   settings=Settings(enable_nats=False)) as system:
                await (await system.spawn(Ticker, name="ticker")).tell("go")
                await asyncio.wait_for(Ticker.fired.wait(), 10)
                print("fired")

        asyncio.run(main())
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.stdout.strip() == "fired", run.stderr[-2000:]
