"""Durable mailboxes (JetStream) beside raw nats-py JetStream with the same payloads.

Tell: every message is published and waited for (its PubAck), then pulled, handled and
acked by the consumer; a batch is timed until the consumer has handled the last one. Ask: a stored
request naming an inbox in ``Sdk-Reply-To``, answered on core NATS by the consumer, which
then acks it; sequential. The raw side does the same with nats-py's JetStream API: a
work-queue stream, a durable pull consumer fetching in batches, the same headers. Each
side has its own tenant or stream, set up once per scenario; its consumer counts what it
handled, for the suite's answered-exactly-once check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import CONTENT_TYPE, MESSAGE_ID, REPLY_TO, new_message_id

from .ledger import Tally
from .measure import Batch, Timing

__all__ = ("our_durable", "raw_jetstream")

_TIMEOUT = 120.0


class _Counter(Actor):
    def __init__(self, tally: Tally, handled: asyncio.Event) -> None:
        self.tally, self.handled = tally, handled

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.tally.count += 1
        self.handled.set()
        return msg


async def _until(tally: Tally, total: int, handled: asyncio.Event) -> None:
    async with asyncio.timeout(_TIMEOUT):
        while tally.count < total:
            handled.clear()
            await handled.wait()


@contextlib.asynccontextmanager
async def our_durable(
    url: str, tenant: str, payload: str, mode: str, tally: Tally
) -> AsyncIterator[Batch]:
    """Tells or sequential asks to an actor with a durable mailbox, in its own tenant."""
    handled = asyncio.Event()
    async with ActorSystem(tenant, settings=Settings(nats_urls=(url,))) as system:
        ref = await system.spawn(lambda: _Counter(tally, handled), name="sink", mailbox="durable")

        async def batch(n: int) -> Timing:
            total = tally.count + n
            start = time.perf_counter()
            if mode == "tell":
                for _ in range(n):
                    await ref.tell(payload)
                await _until(tally, total, handled)
            else:
                for _ in range(n):
                    await ref.ask(payload, timeout=10)
            return Timing(time.perf_counter() - start, n)

        yield batch


@contextlib.asynccontextmanager
async def raw_jetstream(
    url: str, subject: str, stream: str, body: bytes, mode: str, tally: Tally
) -> AsyncIterator[Batch]:
    """The same with nats-py: publish with PubAck, a pull consumer that handles and acks."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    handled = asyncio.Event()
    await js.add_stream(
        StreamConfig(name=stream, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE)
    )
    await js.add_consumer(
        stream, ConsumerConfig(durable_name="sink", ack_policy=AckPolicy.EXPLICIT)
    )
    psub = await js.pull_subscribe_bind("sink", stream=stream)

    async def consume() -> None:
        while True:
            try:
                msgs = await psub.fetch(batch=64, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in msgs:
                reply = (msg.headers or {}).get(REPLY_TO)
                if reply:
                    await nc.publish(reply, msg.data, headers={CONTENT_TYPE: "application/json"})
                tally.count += 1  # handled: counted before the ack, as ours is
                handled.set()
                await msg.ack()

    consumer = asyncio.create_task(consume())
    inbox = nc.new_inbox()
    replies: asyncio.Queue[Any] = asyncio.Queue()

    async def on_reply(msg: Any) -> None:
        replies.put_nowait(msg)

    await nc.subscribe(f"{inbox}.*", cb=on_reply)
    sequence = 0

    async def batch(n: int) -> Timing:
        nonlocal sequence
        total = tally.count + n
        start = time.perf_counter()
        for _ in range(n):
            sequence += 1
            message_id = new_message_id()
            headers = {CONTENT_TYPE: "application/json", MESSAGE_ID: message_id,
                       "Nats-Msg-Id": message_id}  # fmt: skip
            if mode == "ask":
                headers[REPLY_TO] = f"{inbox}.{sequence}"
                headers["Sdk-Timeout-Ms"] = "10000"
                await js.publish(subject, body, headers=headers)
                await asyncio.wait_for(replies.get(), 10)
            else:
                await js.publish(subject, body, headers=headers)
        if mode == "tell":
            await _until(tally, total, handled)
        return Timing(time.perf_counter() - start, n)

    try:
        yield batch
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await js.delete_stream(stream)
        await nc.close()
