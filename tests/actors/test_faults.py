"""Faults around actors: slow consumers, oversized messages, a server that dies mid-ask."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from motadata_actors import (
    Actor,
    ActorRef,
    ActorSystem,
    AskTimeout,
    ConnectionLost,
    Context,
    MailboxFull,
    MessageTooLarge,
    Settings,
)
from motadata_actors.mailbox import InProcessTransport, Mailbox, NatsServer
from motadata_actors.mailbox import _nats as nats_transport

from ..conftest import connect, freeze

pytestmark = pytest.mark.anyio


class Gate(Actor):
    """Blocks in its handler until released; counts what it handled."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self.count = 0

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.entered.set()
        await self.release.wait()
        self.count += 1
        return msg


@contextlib.asynccontextmanager
async def gated(
    server: NatsServer, tenant: str, capacity: int
) -> AsyncIterator[tuple[ActorSystem, Gate, ActorRef]]:
    """A system whose mailboxes hold ``capacity`` messages, running a closed :class:`Gate`."""
    settings = Settings(mailbox_capacity=capacity)
    async with ActorSystem(tenant, transport=await connect(server), settings=settings) as system:
        gate = Gate()
        yield system, gate, await system.spawn(lambda: gate, name="gate")


async def test_slow_consumer_on_nats_counts_every_drop(
    nats_server: NatsServer, tenant: str
) -> None:
    async with gated(nats_server, tenant, 20) as (system, gate, ref):
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
            await gate.entered.wait()  # the ask is in flight: its handler holds it
            fresh_nats_server.kill()

        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_soon)
            with pytest.raises((AskTimeout, ConnectionLost)):
                await ref.ask("lost", timeout=1.0)
        # A hang guard only (the ask's own timeout is 1 s): no timing is measured here.
        assert anyio.current_time() - start < 10.0
        gate.release.set()


async def test_asks_a_slow_actor_cannot_take_fail_at_once_with_mailbox_full(
    nats_server: NatsServer, tenant: str
) -> None:
    async with gated(nats_server, tenant, 5) as (system, gate, ref):
        asks = [asyncio.create_task(ref.ask(i, timeout=30)) for i in range(100)]
        # The gate holds the handler: the mailbox fills, nats-py drops the overflow, and
        # each dropped ask is refused at once, long before its 30 s timeout.
        with anyio.fail_after(10):
            while sum(a.done() for a in asks) < 100 - 5 - 5:  # mailbox + client queue
                await anyio.sleep(0.05)
        gate.release.set()
        results = await asyncio.gather(*asks, return_exceptions=True)
        refused = [r for r in results if isinstance(r, MailboxFull)]
        answered = [r for i, r in enumerate(results) if r == i]
        assert refused and answered, results
        assert len(refused) + len(answered) == 100, results
        assert "slow actor" in str(refused[0])
        stats = system.statistics()[0]
        assert len(refused) == stats.dropped == system.event_counts()["dropped"]


async def test_connection_loss_and_recovery_are_recorded_and_a_tell_meanwhile_is_kept(
    tenant: str,
) -> None:
    first = NatsServer()
    first.start()
    port = int(first.url.rsplit(":", 1)[1])
    servers = [first]
    got: list[Any] = []

    class Keep(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            got.append(msg)

    try:
        async with ActorSystem(tenant, settings=Settings(nats_urls=(first.url,))) as system:
            ref = await system.spawn(Keep, name="keep")
            first.kill()
            with anyio.fail_after(10):
                while "disconnected" not in system.event_counts():
                    await anyio.sleep(0.05)
            await ref.tell("sent during the outage")  # held by nats-py, sent on reconnect
            again = NatsServer(port=port)
            servers.append(again)
            await again.astart()
            with anyio.fail_after(15):
                while not got:
                    await anyio.sleep(0.05)
            assert got == ["sent during the outage"]
            assert system.event_counts()["reconnected"] == 1
    finally:
        for server in servers:
            server.stop()


class Length(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return len(msg)


async def test_what_a_sender_accepts_its_receiver_takes(transport_any: Any, tenant: str) -> None:
    """SDK_MAX_MESSAGE_SIZE bounds the body on both sides: a body at the limit plus its
    headers is sent and handled; one byte more is refused before sending."""
    settings = Settings(max_message_size=10_000)
    async with ActorSystem(tenant, transport=transport_any, settings=settings) as system:
        ref = await system.spawn(Length, name="length")
        at_limit = "x" * (10_000 - 2)  # a JSON string: 10,000 bytes with its quotes
        assert await ref.ask(at_limit, timeout=5) == 9_998
        assert system.statistics()[0].rejected == 0
        with pytest.raises(MessageTooLarge, match="body of 10001 bytes"):
            await ref.tell("x" * (10_000 - 1))


async def test_a_frozen_server_holds_the_exit_up_for_one_drain_timeout_not_one_per_actor(
    fresh_nats_server: NatsServer, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Frozen: the socket stays open and nothing answers. Each actor's unsubscribe waited
    # out the drain timeout in turn, then the status subscription's, then the close's own
    # drain (nats-py's, 15 s): 35 s for three actors before, one timeout now.
    drain = 8.0
    monkeypatch.setattr(nats_transport, "_DRAIN_TIMEOUT", drain)
    pid = fresh_nats_server.pid
    assert pid is not None
    system = ActorSystem(tenant, transport=await connect(fresh_nats_server), handle_signals=False)
    try:
        async with system:
            for name in ("a", "b", "c"):
                await system.spawn(Gate, name=name)
            freeze(pid)
            start = anyio.current_time()
        # One drain timeout (8 s) and a little; the guard is far from the 5 x 8 s before.
        assert anyio.current_time() - start < 2 * drain
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_an_unanswered_round_trip_spares_later_ones_only_until_the_server_answers(
    fresh_nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_transport, "_DRAIN_TIMEOUT", 0.5)
    transport = await connect(fresh_nats_server)
    pid = fresh_nats_server.pid
    assert pid is not None
    try:
        first = await transport.subscribe("faults.first", mailbox=Mailbox(10))
        freeze(pid)
        try:
            await first.unsubscribe()  # waits out the drain timeout, unanswered
            # Set (its time, not whether it is still recent: a loaded machine can stall a
            # second between the two lines).
            assert transport._unanswered is not None
        finally:
            os.kill(pid, signal.SIGCONT)
        # Answered again: later unsubscribes keep what is in flight again (a flag left set
        # would make every one of them drop it, for the life of the connection).
        second = await transport.subscribe("faults.second", mailbox=Mailbox(10))
        assert not transport._unanswered_lately()
        await second.unsubscribe()
        assert not transport._unanswered_lately()
    finally:
        await transport.aclose()


async def test_an_unsubscribe_right_after_the_server_died_ends_when_the_client_sees_it(
    fresh_nats_server: NatsServer,
) -> None:
    # Killed, and nats-py had not read the end of the connection yet: the unsubscribe's
    # round trip was left waiting for a PONG nats-py had dropped, for the whole drain
    # timeout (every exit right after a server's death took 5 s more).
    transport = await connect(fresh_nats_server)
    try:
        sub = await transport.subscribe("faults.dying", mailbox=Mailbox(10))
        fresh_nats_server.kill()
        with anyio.fail_after(30):  # a hang guard only
            await sub.unsubscribe()
        assert transport._unanswered is None  # not ended by the timeout
    finally:
        await transport.aclose()
