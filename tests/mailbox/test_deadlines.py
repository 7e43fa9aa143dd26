"""One timer for every waiting request's deadline (mailbox/_deadlines.py ``Deadlines``)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from motadata_actors import AskTimeout, TransportClosed
from motadata_actors.mailbox._deadlines import Deadlines

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Deadlines is asyncio's: the transports run on asyncio


async def test_each_waiting_request_fails_at_its_own_deadline_and_answered_ones_do_not() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    late: asyncio.Future[Any] = loop.create_future()
    early: asyncio.Future[Any] = loop.create_future()
    answered: asyncio.Future[Any] = loop.create_future()
    deadlines.watch(loop, late, "svc.late", 0.4)
    deadlines.watch(loop, early, "svc.early", 0.1)
    deadlines.watch(loop, answered, "svc.answered", 0.05)
    answered.set_result("reply")
    with anyio.fail_after(5):
        with pytest.raises(AskTimeout, match=r"'svc\.early' within 0\.1s"):
            await early
        assert not late.done()
        with pytest.raises(AskTimeout, match=r"'svc\.late' within 0\.4s"):
            await late
    assert answered.result() == "reply"
    assert len(deadlines) == 0


async def test_the_future_itself_is_failed_whatever_map_held_it() -> None:
    # nats-py replaces its map of waiting requests when it makes its reply inbox anew: a
    # deadline that looked its request up there would never fire.
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    waiting = {"q1": loop.create_future()}
    future = waiting["q1"]
    deadlines.watch(loop, future, "svc.x", 0.05)
    waiting.clear()  # gone from the client's map, as when nats-py makes a new one
    with anyio.fail_after(5), pytest.raises(AskTimeout):
        await future


async def test_answered_entries_are_dropped_once_the_heap_has_doubled() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    open_ones = [loop.create_future() for _ in range(10)]
    for future in open_ones:
        deadlines.watch(loop, future, "svc.open", 60)
    for _ in range(5000):
        future = loop.create_future()
        deadlines.watch(loop, future, "svc.answered", 60)
        future.set_result(None)
        assert len(deadlines) <= 2 * (len(open_ones) + 1) + 1024 + 1
    assert not any(f.done() for f in open_ones)  # every open request is still watched
    deadlines.clear(TransportClosed("closed"))
    for future in open_ones:
        with pytest.raises(TransportClosed):
            future.result()
    assert len(deadlines) == 0
