"""The pull loop alone (no actors): what it delivers stays alive until settled, and no longer.

Ack-wait is one second here, so "not redelivered" means: nothing came for more than two
ack-waits, to this mailbox or to another replica's on the same consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from motadata_actors.mailbox import (
    DurableConfig,
    DurableMessage,
    Incoming,
    Mailbox,
    NatsServer,
    NatsTransport,
    Subscription,
    agent_subject,
)
from motadata_actors.mailbox._jetstream import JetStreamMailboxes, agents_stream, consumer_name

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio

CONFIG = DurableConfig(ack_wait=1.0, max_deliver=5, prefetch=4)
LONGER_THAN_ACK_WAIT = 2.5


@pytest.fixture
async def transport(nats_server: NatsServer) -> AsyncIterator[NatsTransport]:
    t = await connect(nats_server)
    try:
        yield t
    finally:
        await t.aclose()


def pull_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("durable:")]


async def receive(mailbox: Mailbox[Incoming], within: float) -> DurableMessage | None:
    try:
        async with asyncio.timeout(within):
            msg = await mailbox.receive()
    except TimeoutError:
        return None
    assert isinstance(msg, DurableMessage)
    return msg


async def tell(store: JetStreamMailboxes, tenant: str, *bodies: bytes) -> None:
    for body in bodies:
        await store.publish(agent_subject("test", "worker", tenant), body, headers={})


async def open_box(
    store: JetStreamMailboxes, tenant: str
) -> tuple[Mailbox[Incoming], Subscription]:
    """A worker's mailbox on the consumer, as one replica of ``worker`` opens it."""
    mailbox: Mailbox[Incoming] = Mailbox(10)
    return mailbox, await store.open_mailbox(tenant, "worker", mailbox, CONFIG)


async def receive_all(mailbox: Mailbox[Incoming], n: int, within: float) -> list[DurableMessage]:
    """``n`` messages, each taken as a worker takes it (``started``: the loop pulls on)."""
    got = []
    for _ in range(n):
        msg = await receive(mailbox, within)
        assert msg is not None, f"fewer than {n} came"
        msg.started = True
        got.append(msg)
    return got


async def ack_all(msgs: list[DurableMessage]) -> None:
    for m in msgs:
        await m.ack()


async def two_waiting_then_unsubscribed(
    store: JetStreamMailboxes, tenant: str
) -> Mailbox[Incoming]:
    """A mailbox with two messages waiting in it, whose replica stopped pulling."""
    mine, sub = await open_box(store, tenant)
    await tell(store, tenant, b"a", b"b")
    await wait_for(lambda: mine.statistics().queued == 2, 5, "two waiting")
    await sub.unsubscribe()
    return mine


async def both_taken(replica: Mailbox[Incoming], sub: Subscription) -> list[DurableMessage]:
    """The replica gets "a" and "b", acks them and stops."""
    got = await receive_all(replica, 2, 5)
    assert sorted(m.data for m in got) == [b"a", b"b"]
    await ack_all(got)
    await sub.unsubscribe()
    return got


async def taken_by_a_worker(
    store: JetStreamMailboxes, tenant: str, mailbox: Mailbox[Incoming]
) -> DurableMessage:
    """Store "long", receive it, and take it as a worker does (no task of its own keeps it)."""
    await tell(store, tenant, b"long")
    msg = await receive(mailbox, 5)
    assert msg is not None
    msg.started = True
    return msg


async def unsettled(transport: NatsTransport, tenant: str) -> int:
    info = await transport.client.jetstream().consumer_info(
        agents_stream(tenant), consumer_name("worker")
    )
    return int(info.num_ack_pending or 0) + int(info.num_pending or 0)


async def test_a_message_being_handled_is_kept_past_ack_wait_until_settled(
    transport: NatsTransport, tenant: str
) -> None:
    store = transport.durable
    mailbox, sub = await open_box(store, tenant)
    msg = await taken_by_a_worker(store, tenant, mailbox)
    assert msg.data == b"long" and msg.delivered == 1
    assert await receive(mailbox, LONGER_THAN_ACK_WAIT) is None, "redelivered while handled"
    await msg.ack()
    assert msg.settled
    await msg.ack()  # settled once: a second verdict is a no-op
    await wait_for_gone(transport, tenant)
    await sub.unsubscribe()


async def wait_for_gone(transport: NatsTransport, tenant: str) -> None:
    for _ in range(50):
        if await unsettled(transport, tenant) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the acked message is still on the consumer")


async def test_messages_waiting_in_the_mailbox_are_kept_too(
    transport: NatsTransport, tenant: str
) -> None:
    store = transport.durable
    mailbox, sub = await open_box(store, tenant)
    await tell(store, tenant, b"a", b"b", b"c")
    await wait_for(lambda: mailbox.statistics().queued == 3, 5, "three waiting")
    await asyncio.sleep(LONGER_THAN_ACK_WAIT)  # nobody takes them
    got = await receive_all(mailbox, 3, 1)
    assert [m.data for m in got] == [b"a", b"b", b"c"]
    assert all(m.delivered == 1 for m in got), "redelivered while waiting"
    assert mailbox.statistics().queued == 0
    await ack_all(got)
    await sub.unsubscribe()


async def test_after_unsubscribe_a_message_being_handled_is_kept_then_the_loop_ends(
    transport: NatsTransport, tenant: str
) -> None:
    store = transport.durable
    mine, sub = await open_box(store, tenant)
    msg = await taken_by_a_worker(store, tenant, mine)
    await sub.unsubscribe()  # the actor stops taking messages; its handler still runs
    assert len(pull_tasks()) == 1, "the keeper stopped with the fetching"
    replica, other = await open_box(store, tenant)
    assert await receive(replica, LONGER_THAN_ACK_WAIT) is None, "redelivered while handled"
    await msg.ack()
    await wait_for(lambda: len(pull_tasks()) == 1, 2, "the stopped loop to end")
    await other.unsubscribe()


async def test_after_unsubscribe_messages_left_waiting_in_an_open_mailbox_are_let_go(
    transport: NatsTransport, tenant: str
) -> None:
    store = transport.durable
    # Nobody will take them here (a start that failed, say).
    await two_waiting_then_unsubscribed(store, tenant)
    await wait_for(lambda: not pull_tasks(), 3, "the loop to end: nothing left to keep")
    replica, other = await open_box(store, tenant)
    got = await both_taken(replica, other)
    assert all(m.delivered == 2 for m in got)


async def test_a_closed_mailbox_being_drained_keeps_its_waiting_messages(
    transport: NatsTransport, tenant: str
) -> None:
    store = transport.durable
    mine = await two_waiting_then_unsubscribed(store, tenant)
    mine.close()  # its owner drains it: each will be handled or released
    replica, other = await open_box(store, tenant)
    assert await receive(replica, LONGER_THAN_ACK_WAIT) is None, "let go while queued"
    for _ in range(2):
        msg = await receive(mine, 1)
        assert msg is not None and msg.delivered == 1
        await msg.nak()  # released: the replica takes them now
    await both_taken(replica, other)


async def test_closing_the_transport_ends_every_pull_loop(
    nats_server: NatsServer, tenant: str
) -> None:
    transport = await connect(nats_server)
    store = transport.durable
    mailbox, sub = await open_box(store, tenant)
    await store.open_mailbox(tenant, "other", Mailbox(10), CONFIG)  # never unsubscribed
    await taken_by_a_worker(store, tenant, mailbox)
    await sub.unsubscribe()  # its keeper lingers for the message being handled
    assert len(pull_tasks()) == 2
    await transport.aclose()
    assert not pull_tasks()


async def test_a_worker_waiting_takes_what_was_fetched_before_the_next_pull_request(
    transport: NatsTransport, tenant: str
) -> None:
    """The order that keeps a durable ask's latency down: the woken worker runs first.

    Each pull request is a round trip through the server; made before the worker took the
    message, it would stand between the message and its handler (and its reply).
    """
    store = transport.durable
    mailbox, sub = await open_box(store, tenant)
    (pull,) = store._pulls.values()
    assert pull._psub is not None
    client_psub = pull._psub._psub  # nats-py's, which our pull loop calls
    delivered: list[bytes] = []
    taken: list[bytes] = []
    at_each_pull: list[tuple[list[bytes], list[bytes]]] = []
    fetch = client_psub.fetch

    async def watched_fetch(batch: int, timeout: float) -> list[Any]:
        at_each_pull.append((list(delivered), list(taken)))
        msgs = await fetch(batch=batch, timeout=timeout)
        delivered.extend(m.data for m in msgs)
        return msgs

    client_psub.fetch = watched_fetch

    async def worker() -> None:
        while True:
            msg = await mailbox.receive()
            assert isinstance(msg, DurableMessage)
            msg.started = True
            taken.append(msg.data)
            await msg.ack()

    task = asyncio.create_task(worker())
    try:
        for body in (b"one", b"two", b"three"):
            await tell(store, tenant, body)
            await wait_for(lambda body=body: body in taken, 5, f"{body!r} taken")
        pulls = len(at_each_pull)
        await wait_for(lambda: len(at_each_pull) > pulls, 5, "the pull after the last")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sub.unsubscribe()
    assert delivered == [b"one", b"two", b"three"]
    for delivered_before, taken_before in at_each_pull:
        assert set(delivered_before) <= set(taken_before), "pulled before the worker took it"
