"""Faults around actors: slow consumers, oversized messages, a server that dies mid-ask."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    AskTimeout,
    ConnectionLost,
    Context,
    MessageTooLarge,
    Settings,
)
from motadata_actors.mailbox import InProcessTransport, NatsServer

from ..conftest import connect

pytestmark = pytest.mark.anyio


class Gate(Actor):
    """Blocks in its handler until released; counts what it handled."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.count = 0

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        await self.release.wait()
        self.count += 1
        return msg


async def test_slow_consumer_on_nats_counts_every_drop(
    nats_server: NatsServer, tenant: str
) -> None:
    transport = await connect(nats_server)
    settings = Settings(mailbox_capacity=20)
    async with ActorSystem(tenant, transport=transport, settings=settings) as system:
        gate = Gate()
        ref = await system.spawn(lambda: gate, name="gate")
        sent = 300
        for i in range(sent):
            await ref.tell(i)
        # Wait until the flood has arrived: the drop count stops moving.
        last = -1
        with anyio.fail_after(10):
            while True:
                await anyio.sleep(0.2)
                dropped = system.statistics()[0].dropped
                if dropped and dropped == last:
                    break
                last = dropped
        gate.release.set()
        assert await ref.ask("after", timeout=10) == "after"
        stats = system.statistics()[0]
    assert stats.dropped > 0
    # Nothing vanished silently: each message was handled or counted as dropped.
    assert gate.count - 1 + stats.dropped == sent
    assert stats.handled == gate.count


async def test_full_in_process_mailbox_makes_the_sender_wait(tenant: str) -> None:
    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=Settings(mailbox_capacity=5)
    ) as system:
        gate = Gate()
        ref = await system.spawn(lambda: gate, name="gate")
        sent = 0
        with anyio.move_on_after(0.3):
            for i in range(100):
                await ref.tell(i)
                sent += 1
        assert sent < 100  # backpressure: the sender was held up, nothing dropped
        gate.release.set()
        assert await ref.ask("after", timeout=10) == "after"
        assert gate.count == sent + 1
        assert system.statistics()[0].dropped == 0


async def test_oversized_message_is_refused_before_sending_and_the_actor_lives(
    transport_any: Any, tenant: str
) -> None:
    async with ActorSystem(tenant, transport=transport_any) as system:
        ref = await system.spawn(Gate, name="gate")
        big = "x" * system.transport.max_payload
        with pytest.raises(MessageTooLarge, match="exceeds the limit"):
            await ref.tell(big)
        with pytest.raises(MessageTooLarge):
            await ref.ask(big, timeout=1)


@pytest.fixture(params=["inprocess", "nats"])
async def transport_any(request: pytest.FixtureRequest, nats_server: NatsServer) -> Any:
    if request.param == "nats":
        return await connect(nats_server)
    return InProcessTransport()


async def test_ask_in_flight_when_the_server_dies_fails_within_its_timeout(
    fresh_nats_server: NatsServer, tenant: str
) -> None:
    transport = await connect(fresh_nats_server)
    async with ActorSystem(tenant, transport=transport) as system:
        gate = Gate()
        ref = await system.spawn(lambda: gate, name="gate")

        async def kill_soon() -> None:
            await anyio.sleep(0.2)
            fresh_nats_server.kill()

        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_soon)
            with pytest.raises((AskTimeout, ConnectionLost)):
                await ref.ask("lost", timeout=1.0)
        assert anyio.current_time() - start < 3.0  # bounded by the ask's own timeout, no hang
        gate.release.set()
