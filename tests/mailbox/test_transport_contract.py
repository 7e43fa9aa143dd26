"""The transport contract: run unchanged against the in-process and the NATS transport."""

from __future__ import annotations

import anyio
import pytest

from motadata_actors import (
    AskTimeout,
    MessageTooLarge,
    NoResponders,
    SubjectError,
    TransportClosed,
)
from motadata_actors.mailbox import Incoming, InProcessTransport, Mailbox, Transport

pytestmark = pytest.mark.anyio


async def settle(transport: Transport) -> None:
    """Give deliveries already under way time to land (a round trip through the bus)."""
    box: Mailbox[Incoming] = Mailbox(1)
    sub = await transport.subscribe("_settle.x", mailbox=box)
    await transport.publish("_settle.x", b"")
    with anyio.fail_after(5):
        await box.receive()
    await sub.unsubscribe()


async def drain(box: Mailbox[Incoming]) -> list[Incoming]:
    items = []
    while box.statistics().queued:
        items.append(await box.receive())
    return items


async def test_exact_subject_delivers_body_and_headers(transport: Transport, tenant: str) -> None:
    box: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"a.{tenant}", mailbox=box)
    await transport.publish(
        f"a.{tenant}", b"hello", headers={"Content-Type": "application/json", "X-K": "v 1"}
    )
    with anyio.fail_after(5):
        msg = await box.receive()
    assert (msg.subject, msg.data, msg.reply) == (f"a.{tenant}", b"hello", "")
    assert msg.headers == {"Content-Type": "application/json", "X-K": "v 1"}


async def test_no_headers_arrive_as_none(transport: Transport, tenant: str) -> None:
    box: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"a.{tenant}", mailbox=box)
    await transport.publish(f"a.{tenant}", b"x")
    with anyio.fail_after(5):
        msg = await box.receive()
    assert msg.headers is None


async def test_star_matches_one_token_and_gt_the_rest(transport: Transport, tenant: str) -> None:
    star: Mailbox[Incoming] = Mailbox(10)
    tail: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"w.*.{tenant}", mailbox=star)
    await transport.subscribe(f"w.{tenant}.>", mailbox=tail)
    for subject in (
        f"w.x.{tenant}",
        f"w.x.y.{tenant}",
        f"w.{tenant}.a",
        f"w.{tenant}.a.b",
        f"w.{tenant}",
    ):
        await transport.publish(subject, subject.encode())
    await settle(transport)
    assert [m.subject for m in await drain(star)] == [f"w.x.{tenant}"]
    # "w.<tenant>" has no token for ">" to match; "w.x.<tenant>" does not start with w.<tenant>.
    assert [m.subject for m in await drain(tail)] == [f"w.{tenant}.a", f"w.{tenant}.a.b"]


async def test_queue_group_delivers_each_message_once(transport: Transport, tenant: str) -> None:
    boxes: list[Mailbox[Incoming]] = [Mailbox(200) for _ in range(3)]
    for box in boxes:
        await transport.subscribe(f"q.{tenant}", queue="workers", mailbox=box)
    watcher: Mailbox[Incoming] = Mailbox(200)
    await transport.subscribe(f"q.{tenant}", mailbox=watcher)  # outside the group: sees all
    for i in range(90):
        await transport.publish(f"q.{tenant}", str(i).encode())
    await settle(transport)
    got = [int(m.data) for box in boxes for m in await drain(box)]
    assert sorted(got) == list(range(90))
    assert sum(1 for box in boxes if box.received) >= 2, "the group should share the load"
    assert len(await drain(watcher)) == 90


async def test_order_is_kept_per_sender_with_one_subscriber(
    transport: Transport, tenant: str
) -> None:
    box: Mailbox[Incoming] = Mailbox(1000)
    await transport.subscribe(f"o.{tenant}", mailbox=box)
    for i in range(500):
        await transport.publish(f"o.{tenant}", str(i).encode())
    await settle(transport)
    assert [int(m.data) for m in await drain(box)] == list(range(500))


async def test_request_reply_with_headers(transport: Transport, tenant: str) -> None:
    box: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"svc.{tenant}", mailbox=box)

    async def serve() -> None:
        msg = await box.receive()
        assert msg.reply
        await transport.publish(
            msg.reply, msg.data.upper(), headers={"Sdk-Echo": msg.headers["Sdk-In"]}
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        reply = await transport.request(
            f"svc.{tenant}", b"ping", headers={"Sdk-In": "1"}, timeout=5
        )
    assert reply.data == b"PING"
    assert reply.headers == {"Sdk-Echo": "1"}


async def test_request_without_subscriber_fails_fast_with_no_responders(
    transport: Transport, tenant: str
) -> None:
    with anyio.fail_after(10):  # well under the request's own timeout
        with pytest.raises(NoResponders):
            await transport.request(f"nobody.{tenant}", b"x", timeout=60)


async def test_request_with_silent_subscriber_times_out(transport: Transport, tenant: str) -> None:
    box: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"silent.{tenant}", mailbox=box)
    start = anyio.current_time()
    with pytest.raises(AskTimeout):
        await transport.request(f"silent.{tenant}", b"x", timeout=0.2)
    assert anyio.current_time() - start >= 0.2
    assert box.statistics().queued == 1


async def test_a_request_waiting_when_the_transport_closes_fails_at_once(
    transport: Transport, tenant: str
) -> None:
    box: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"silent.{tenant}", mailbox=box)
    outcome: list[BaseException] = []

    async def ask() -> None:
        try:
            await transport.request(f"silent.{tenant}", b"x", timeout=60)
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        with anyio.fail_after(5):
            while not box.statistics().queued:  # the request is out, waiting for a reply
                await anyio.sleep(0.005)
        with anyio.fail_after(10):  # well under the request's own timeout
            await transport.aclose()
    assert len(outcome) == 1 and isinstance(outcome[0], TransportClosed), outcome


async def test_unsubscribe_stops_delivery(transport: Transport, tenant: str) -> None:
    box: Mailbox[Incoming] = Mailbox(10)
    sub = await transport.subscribe(f"u.{tenant}", mailbox=box)
    await transport.publish(f"u.{tenant}", b"1")
    await settle(transport)
    await sub.unsubscribe()
    await sub.unsubscribe()  # idempotent
    await transport.publish(f"u.{tenant}", b"2")
    await settle(transport)
    assert [m.data for m in await drain(box)] == [b"1"]


async def test_oversized_message_is_refused_counting_headers(
    transport: Transport, tenant: str
) -> None:
    limit = transport.max_payload
    box: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"big.{tenant}", mailbox=box)
    body = b"x" * (limit - 10)
    await transport.publish(f"big.{tenant}", body)  # fits without headers
    with pytest.raises(MessageTooLarge) as info:
        await transport.publish(f"big.{tenant}", body, headers={"Sdk-Pad": "y" * 20})
    assert info.value.limit == limit
    with pytest.raises(MessageTooLarge):
        await transport.request(f"big.{tenant}", body + b"y" * 20, timeout=1)
    await settle(transport)  # the connection survived and still delivers
    assert [len(m.data) for m in await drain(box)] == [limit - 10]


@pytest.mark.parametrize("subject", ["", "a..b", "a b", "a.*", "a.>", "a\r\nb"])
async def test_bad_publish_subjects_are_typed_errors(transport: Transport, subject: str) -> None:
    with pytest.raises(SubjectError):
        await transport.publish(subject, b"x")


async def test_in_process_a_mailbox_reached_twice_waits_for_room_for_both(tenant: str) -> None:
    transport = InProcessTransport()
    box: Mailbox[Incoming] = Mailbox(2)
    await transport.subscribe(f"events.*.{tenant}", mailbox=box)
    await transport.subscribe(f"events.order.{tenant}", mailbox=box)
    await transport.publish(f"events.other.{tenant}", b"1")  # one slot left, two needed
    async with anyio.create_task_group() as tg:
        tg.start_soon(transport.publish, f"events.order.{tenant}", b"2")
        with anyio.fail_after(5):
            received = [(await box.receive()).data]
            while len(received) < 3:  # the publish waits for room, then delivers both
                received.append((await box.receive()).data)
    assert received == [b"1", b"2", b"2"]
    await transport.aclose()


async def test_in_process_a_request_waiting_for_room_times_out_at_its_deadline(
    tenant: str,
) -> None:
    transport = InProcessTransport()
    box: Mailbox[Incoming] = Mailbox(1)
    await transport.subscribe(f"full.{tenant}", mailbox=box)
    await transport.publish(f"full.{tenant}", b"fills it")
    start = anyio.current_time()
    with anyio.fail_after(5), pytest.raises(AskTimeout):
        await transport.request(f"full.{tenant}", b"x", timeout=0.2)
    assert anyio.current_time() - start >= 0.2
    assert [m.data for m in await drain(box)] == [b"fills it"]  # the request never got in
    # Room again: a request is delivered, and its reply arrives.
    asking = transport.request(f"full.{tenant}", b"y", timeout=5)
    async with anyio.create_task_group() as tg:

        async def answer() -> None:
            msg = await box.receive()
            await transport.publish(msg.reply, b"answer")

        tg.start_soon(answer)
        assert (await asking).data == b"answer"
    await transport.aclose()


async def test_in_process_each_request_times_out_at_its_own_deadline(tenant: str) -> None:
    transport = InProcessTransport()
    silent: Mailbox[Incoming] = Mailbox(100)
    await transport.subscribe(f"silent.{tenant}", mailbox=silent)
    answering: Mailbox[Incoming] = Mailbox(100)
    await transport.subscribe(f"answers.{tenant}", mailbox=answering)
    ended: dict[float, float] = {}
    start = anyio.current_time()

    async def ask(timeout: float) -> None:
        with pytest.raises(AskTimeout, match=f"within {timeout:g}s"):
            await transport.request(f"silent.{tenant}", b"x", timeout=timeout)
        ended[timeout] = anyio.current_time() - start

    async def answer() -> None:
        msg = await answering.receive()
        await transport.publish(msg.reply, b"in time")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for timeout in (0.3, 0.1, 0.2):  # the later first: the timer is re-armed
                tg.start_soon(ask, timeout)
            tg.start_soon(answer)
            reply = await transport.request(f"answers.{tenant}", b"y", timeout=0.15)
    assert reply.data == b"in time"
    assert sorted(ended, key=ended.__getitem__) == [0.1, 0.2, 0.3]
    assert all(ended[t] >= t for t in ended)
    await transport.aclose()


async def test_in_process_answered_requests_do_not_pile_up(tenant: str) -> None:
    transport = InProcessTransport()
    box: Mailbox[Incoming] = Mailbox(10)
    await transport.subscribe(f"echo.{tenant}", mailbox=box)

    async def echo() -> None:
        async for msg in box:
            await transport.publish(msg.reply, msg.data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(echo)
        for i in range(3000):  # each deadline 60 s away: none fires in this test
            assert (await transport.request(f"echo.{tenant}", b"%d" % i, timeout=60)).data
        # What is kept for answered requests is bounded (rebuilt past 2x open + slack).
        assert len(transport._deadlines) <= 1024 + 2
        tg.cancel_scope.cancel()
    await transport.aclose()


def test_in_process_a_transport_used_by_a_second_event_loop_still_times_out() -> None:
    import asyncio

    transport = InProcessTransport()

    async def answered(timeout: float) -> None:  # leaves the deadline timer armed
        box: Mailbox[Incoming] = Mailbox(10)
        await transport.subscribe("echo.loop", mailbox=box)

        async def echo() -> None:
            msg = await box.receive()
            await transport.publish(msg.reply, b"")

        answering = asyncio.create_task(echo())
        await transport.request("echo.loop", b"x", timeout=timeout)
        await answering

    async def silent(timeout: float) -> None:
        box: Mailbox[Incoming] = Mailbox(10)
        await transport.subscribe("silent.loop", mailbox=box)
        with pytest.raises(AskTimeout):
            await asyncio.wait_for(transport.request("silent.loop", b"x", timeout=timeout), 5)

    asyncio.run(answered(0.3))
    # The first loop is gone with its timer (due before this deadline): armed again here.
    asyncio.run(silent(0.6))
