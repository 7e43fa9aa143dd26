from __future__ import annotations

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
        await anyio.sleep(0.05)
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
        await anyio.sleep(0.01)
        await box.send(1)
        await anyio.sleep(0.01)
        box.close()
    assert got == [1]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        Mailbox(0)
