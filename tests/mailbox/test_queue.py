from __future__ import annotations

import asyncio

import anyio
import pytest

from motadata_actors import ConfigError, TransportClosed
from motadata_actors.mailbox import Mailbox
from motadata_actors.mailbox._queue import MailboxFull

pytestmark = pytest.mark.anyio


async def test_fifo_and_statistics() -> None:
    box: Mailbox[int] = Mailbox(3)
    for i in range(3):
        box.send_nowait(i)
    stats = box.statistics()
    assert (stats.queued, stats.capacity, stats.received, stats.closed) == (3, 3, 0, False)
    assert [await box.receive() for _ in range(3)] == [0, 1, 2]
    assert box.statistics().received == 3


async def test_full_mailbox_raises_on_send_nowait_and_blocks_send() -> None:
    box: Mailbox[int] = Mailbox(1)
    box.send_nowait(1)
    with pytest.raises(MailboxFull, match="full"):
        box.send_nowait(2)
    sent = anyio.Event()

    async def sender() -> None:
        await box.send(2)
        sent.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await waiting(box, senders=1)
        assert not sent.is_set()  # backpressure: the sender waits
        assert await box.receive() == 1
        with anyio.fail_after(5):
            await sent.wait()
    assert await box.receive() == 2


async def test_close_lets_the_receiver_drain_then_ends() -> None:
    for capacity in (1, 5):  # full and not full when closed
        box: Mailbox[int] = Mailbox(capacity)
        box.send_nowait(7)
        box.close()
        box.close()
        assert box.statistics().queued == 1
        with pytest.raises(TransportClosed):
            await box.send(8)
        assert [item async for item in box] == [7]
        with pytest.raises(StopAsyncIteration):
            await box.receive()


async def test_close_wakes_a_waiting_receiver() -> None:
    box: Mailbox[int] = Mailbox(2)
    got: list[int] = []

    async def receiver() -> None:
        async for item in box:
            got.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await waiting(box, receivers=1)
        await box.send(1)
        with anyio.fail_after(5):
            while got != [1] or not box._getters:  # it took the item and waits again
                await asyncio.sleep(0)
        box.close()
    assert got == [1]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        Mailbox(0)


async def waiting(box: Mailbox[int], receivers: int = 0, senders: int = 0) -> None:
    """Until the given numbers of tasks wait on ``box`` (a condition, not a sleep)."""
    with anyio.fail_after(5):
        while len(box._getters) < receivers or len(box._putters) < senders:
            await asyncio.sleep(0)


async def test_a_receiver_cancelled_after_its_wake_up_passes_the_item_on() -> None:
    box: Mailbox[int] = Mailbox(5)
    first = asyncio.create_task(box.receive())
    second = asyncio.create_task(box.receive())
    await waiting(box, receivers=2)
    box.send_nowait(1)  # wakes the first in line...
    first.cancel()  # ...which is cancelled before it runs
    with anyio.fail_after(5):
        assert await second == 1
    with pytest.raises(asyncio.CancelledError):
        await first
    assert box.statistics().queued == 0 and not box._getters


async def test_senders_waiting_for_room_go_in_their_order_and_a_cancelled_one_drops_out() -> None:
    box: Mailbox[int] = Mailbox(1)
    box.send_nowait(0)
    senders = [asyncio.create_task(box.send(i)) for i in (1, 2, 3)]
    await waiting(box, senders=3)
    senders[1].cancel()
    got = []
    with anyio.fail_after(5):
        while len(got) < 3:
            got.append(await box.receive())
    assert got == [0, 1, 3]
    with pytest.raises(asyncio.CancelledError):
        await senders[1]
    assert box.statistics().queued == 0


async def test_close_ends_every_waiting_receiver() -> None:
    box: Mailbox[int] = Mailbox(5)
    receivers = [asyncio.create_task(box.receive()) for _ in range(3)]
    await waiting(box, receivers=3)
    box.close()
    for receiver in receivers:
        with anyio.fail_after(5), pytest.raises(StopAsyncIteration):
            await receiver


def test_nats_py_read_loop_interface() -> None:
    # What nats-py's read loop and Subscription use of the queue it puts into.
    box: Mailbox[int] = Mailbox(2)
    assert box.empty() and box.qsize() == 0
    box.put_nowait(1)
    box.put_nowait(2)
    with pytest.raises(asyncio.QueueFull):
        box.put_nowait(3)
    assert box.qsize() == 2 and not box.empty() and box.full
