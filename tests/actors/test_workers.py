"""Concurrency per actor, threads for blocking handlers, and the event-loop lag warning."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from motadata_actors import Actor, ActorSystem, ConfigError, Context

from ..conftest import wait_for

pytestmark = pytest.mark.anyio


class Gauge(Actor):
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.now += 1
        self.peak = max(self.peak, self.now)
        await anyio.sleep(0.05)
        self.now -= 1
        return msg


async def test_concurrency_lets_an_actor_handle_several_messages_at_once(
    system: ActorSystem,
) -> None:
    one, four = Gauge(), Gauge()
    ref1 = await system.spawn(lambda: one, name="one")
    ref4 = await system.spawn(lambda: four, name="four", concurrency=4)
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(ref1.ask, i)
            tg.start_soon(ref4.ask, i)
    assert one.peak == 1
    assert four.peak == 4
    with pytest.raises(ConfigError, match="concurrency"):
        await system.spawn(Gauge, name="bad", concurrency=0)


class Blocking(Actor):
    seconds = 0.3

    def on_message(self, msg: Any, ctx: Context) -> Any:  # type: ignore[override]
        time.sleep(self.seconds)  # a synchronous SDK call
        return threading.current_thread() is threading.main_thread()


async def test_offload_runs_a_synchronous_handler_in_a_thread(system: ActorSystem) -> None:
    started, release = threading.Event(), threading.Event()

    class WaitsForTheLoop(Actor):
        def on_message(self, msg: Any, ctx: Context) -> Any:  # type: ignore[override]
            started.set()
            # Only the event loop sets it: on the loop's own thread this would wait it out.
            released = release.wait(10)
            return released, threading.current_thread() is threading.main_thread()

    ref = await system.spawn(WaitsForTheLoop, name="blocking", offload=True)
    async with anyio.create_task_group() as tg:
        answer: list[Any] = []

        async def ask() -> None:
            answer.append(await ref.ask("x", timeout=15))

        tg.start_soon(ask)
        await wait_for(started.is_set, 5, "the handler to start")
        release.set()  # the loop runs while the handler blocks its thread
    assert answer == [[True, False]]  # released by the loop; not on the loop's thread


async def test_a_blocking_handler_on_the_loop_is_reported_as_loop_lag(system: ActorSystem) -> None:
    class VeryBlocking(Blocking):
        seconds = 0.6

    ref = await system.spawn(VeryBlocking, name="blocking")
    assert await ref.ask("x", timeout=5) is True  # ran on the loop, blocking it
    # The monitor wakes late once, then reports.
    await wait_for(lambda: bool(system.events("loop_lag")), 5, "the loop-lag report")
    lags = system.events("loop_lag")
    assert lags and int(lags[0].detail.split()[0]) >= 100


async def test_offload_needs_a_synchronous_handler(system: ActorSystem) -> None:
    with pytest.raises(ConfigError, match="offload=True runs a synchronous on_message"):
        await system.spawn(Gauge, name="gauge", offload=True)
