"""A message's time to live: expired ones dropped and dead-lettered, durable ones removed by
their stream (the server's per-message TTL)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import Actor, ActorSystem, ConfigError, Context
from motadata_actors.mailbox import NatsServer

from ..conftest import connect, system_on, wait_for

pytestmark = pytest.mark.anyio


class Gated(Actor):
    """Blocks on its first message until the gate opens; records what it handled."""

    gate: ClassVar[anyio.Event]
    handled: ClassVar[list[Any]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "block":
            await Gated.gate.wait()
        Gated.handled.append(msg)


@pytest.fixture(params=["inprocess", "nats"])
async def system(
    request: pytest.FixtureRequest, nats_server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    """A system with ``gated``, on each transport in turn."""
    Gated.gate, Gated.handled = anyio.Event(), []
    async with system_on(request.param, nats_server, tenant) as system:
        await system.spawn(Gated, name="gated")
        yield system


async def test_a_message_past_its_time_to_live_is_dropped_and_dead_lettered(
    system: ActorSystem,
) -> None:
    ref = system.ref("gated")
    await ref.tell("block")
    await ref.tell("stale", ttl=0.05)
    await ref.tell("fresh", ttl=60)
    expired_at = time.time() + 0.05
    await wait_for(lambda: time.time() > expired_at + 0.01, 5, "the time to live to pass")
    Gated.gate.set()
    await wait_for(lambda: Gated.handled == ["block", "fresh"], 10, "the fresh message")
    stats = system.statistics()[0]
    assert stats.rejected == 1 and stats.dead_lettered == 1
    letters = await system.dead_letters()
    assert [d.reason.split(":")[0] for d in letters] == ["MessageExpired"]


@pytest.mark.parametrize("ttl", [0, -1, "5", float("inf")])
async def test_a_bad_time_to_live_is_refused(system: ActorSystem, ttl: Any) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        await system.ref("gated").tell("x", ttl=ttl)


async def test_a_stored_message_past_its_time_to_live_leaves_the_stream(
    nats_server: NatsServer, tenant: str
) -> None:
    async with ActorSystem(
        tenant, transport=await connect(nats_server), handle_signals=False
    ) as system:
        await system.spawn(Gated, name="later", mailbox="durable")
        await system.stop("later")  # the stream keeps its messages; nobody takes them
        ref = system.ref("later", mailbox="durable")
        await ref.tell("kept")
        await ref.tell("short-lived", ttl=1)
        js = system.transport.client.jetstream()  # type: ignore[attr-defined]
        stream = f"SDK_AGENTS_{tenant}"
        assert (await js.stream_info(stream)).state.messages == 2
        loop = anyio.current_time
        deadline = loop() + 10
        while (await js.stream_info(stream)).state.messages != 1:
            assert loop() < deadline, "the stream never removed the expired message"
            await anyio.sleep(0.1)
        kept = await js.get_msg(stream, seq=1)
        assert kept.data is not None and b"kept" in kept.data
