"""Graceful shutdown under load: every accepted message is handled or dead-lettered, once."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import (
    DEAD_REASON,
    Incoming,
    InProcessTransport,
    Mailbox,
    NatsServer,
    Transport,
)

from ..conftest import connect

pytestmark = pytest.mark.anyio


class Slow(Actor):
    handled: ClassVar[list[int]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        await anyio.sleep(0.01)
        Slow.handled.append(msg)


@pytest.mark.parametrize("kind", ["inprocess", "nats"])
async def test_messages_in_flight_at_shutdown_are_handled_or_dead_lettered(
    kind: str, nats_server: NatsServer, tenant: str
) -> None:
    Slow.handled = []
    transport: Transport = (
        InProcessTransport() if kind == "inprocess" else await connect(nats_server)
    )
    tap: Mailbox[Incoming] = Mailbox(10_000)
    sent = list(range(300))
    async with ActorSystem(
        tenant, transport=transport, settings=Settings(shutdown_grace=0.5)
    ) as system:
        await transport.subscribe(f"sdk.dlq.*.{tenant}", mailbox=tap)
        ref = await system.spawn(Slow, name="slow", concurrency=2)
        for i in sent:
            await ref.tell(i)
    # The system is closed; its transport too. What the tap caught is all there is.
    letters = []
    while tap.statistics().queued:
        letters.append(await tap.receive())
    dead = []
    for letter in letters:
        assert letter.headers is not None
        assert letter.headers[DEAD_REASON].startswith("shutdown:")
        dead.append(int(letter.data))
    assert Slow.handled, "some were handled within the grace"
    assert dead, (
        "the grace (0.5 s for 300 x 10 ms on two workers) ran out: the rest were dead-lettered"
    )
    assert not set(Slow.handled) & set(dead)
    assert sorted(Slow.handled + dead) == sent
