"""Durable mailboxes (JetStream) beside raw nats-py JetStream with the same payloads.

Tell: every message is published and waited for (its PubAck), then pulled, handled and
acked by the consumer; the rate counts until the last one is acked. Ask: a stored request
naming an inbox in ``Sdk-Reply-To``, answered on core NATS by the consumer, which then
acks it. The raw side does the same with nats-py's JetStream API: a work-queue stream, a
durable pull consumer fetching in batches, the same headers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import CONTENT_TYPE, MESSAGE_ID, REPLY_TO, new_message_id

__all__ = ("our_durable", "raw_jetstream")


class _Counter(Actor):
    def __init__(self, n: int, done: asyncio.Event) -> None:
        self.n, self.count, self.done = n, 0, done

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.count += 1
        if self.count == self.n:
            self.done.set()
        return msg


async def our_durable(url: str, n: int, payload: str, mode: str) -> float:
    """Tells or sequential asks per second to an actor with a durable mailbox."""
    tenant = f"bench{uuid.uuid4().hex[:8]}"
    done = asyncio.Event()
    async with ActorSystem(tenant, settings=Settings(nats_urls=(url,))) as system:
        ref = await system.spawn(lambda: _Counter(n, done), name="sink", mailbox="durable")
        start = time.perf_counter()
        if mode == "tell":
            for _ in range(n):
                await ref.tell(payload)
            await asyncio.wait_for(done.wait(), 120)
        else:
            for _ in range(n):
                await ref.ask(payload, timeout=10)
        return n / (time.perf_counter() - start)


async def raw_jetstream(url: str, n: int, body: bytes, mode: str) -> float:
    """The same with nats-py: publish with PubAck, a pull consumer that handles and acks."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"BENCH_{uuid.uuid4().hex[:8]}"
    subject = f"bench.durable.{name}"
    await js.add_stream(
        StreamConfig(name=name, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE)
    )
    await js.add_consumer(name, ConsumerConfig(durable_name="sink", ack_policy=AckPolicy.EXPLICIT))
    psub = await js.pull_subscribe_bind("sink", stream=name)
    done = asyncio.Event()
    count = 0

    async def consume() -> None:
        nonlocal count
        while count < n:
            try:
                msgs = await psub.fetch(batch=64, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in msgs:
                reply = (msg.headers or {}).get(REPLY_TO)
                if reply:
                    await nc.publish(reply, msg.data, headers={CONTENT_TYPE: "application/json"})
                await msg.ack()
                count += 1
        done.set()

    consumer = asyncio.create_task(consume())
    inbox = nc.new_inbox()
    replies: asyncio.Queue[Any] = asyncio.Queue()

    async def on_reply(msg: Any) -> None:
        replies.put_nowait(msg)

    await nc.subscribe(f"{inbox}.*", cb=on_reply)
    start = time.perf_counter()
    for i in range(n):
        message_id = new_message_id()
        headers = {CONTENT_TYPE: "application/json", MESSAGE_ID: message_id,
                   "Nats-Msg-Id": message_id}  # fmt: skip
        if mode == "ask":
            headers[REPLY_TO] = f"{inbox}.{i}"
            headers["Sdk-Timeout-Ms"] = "10000"
            await js.publish(subject, body, headers=headers)
            await asyncio.wait_for(replies.get(), 10)
        else:
            await js.publish(subject, body, headers=headers)
    await asyncio.wait_for(done.wait(), 120)
    rate = n / (time.perf_counter() - start)
    consumer.cancel()
    await js.delete_stream(name)
    await nc.close()
    return rate
