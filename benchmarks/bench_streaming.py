"""Streaming replies beside raw nats-py publishing the same parts.

Ours: one ``ref.ask_stream`` of ``n`` parts from an actor whose handler is an async
generator, read to the end; the rate counts from the request to the last part. The
asker and the responder are two systems in this process, each on its own connection to
the same server, so each part crosses the server once, as in the baseline. Every part
is published with ``Content-Type`` and ``Sdk-Stream-Seq``; the asker reports its
progress on the control subject every half window, and the producer waits when it is a
whole window ahead.

Raw: nats-py publishes the same bodies from one connection to a subscriber on another,
timed until the subscriber has them all; with the same two headers, and with none. It
has no flow control at all, so it is the ceiling.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import CONTENT_TYPE, STREAM_SEQ

__all__ = ("our_stream", "raw_stream")

_TIMEOUT = 120.0


class _Streamer(Actor):
    """Streams ``msg`` parts (an int), each the same payload."""

    def __init__(self, payload: str) -> None:
        self.payload = payload

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[Any]:
        payload = self.payload
        for _ in range(msg):
            yield payload


async def our_stream(url: str, n: int, payload: str, window: int) -> float:
    """Parts per second of one streaming reply of ``n`` parts, read to the end."""
    tenant = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(nats_urls=(url,))
    async with (
        ActorSystem(tenant, settings=settings) as responder,
        ActorSystem(tenant, settings=settings) as asker,
    ):
        await responder.spawn(lambda: _Streamer(payload), name="streamer")
        ref = asker.ref("streamer")
        async with ref.ask_stream(200, timeout=_TIMEOUT, window=window) as parts:
            async for _ in parts:  # warm up: both connections, the actor, the codecs
                pass
        got = 0
        start = time.perf_counter()
        async with ref.ask_stream(n, timeout=_TIMEOUT, window=window) as parts:
            async for _ in parts:
                got += 1
        elapsed = time.perf_counter() - start
        if got != n:
            raise RuntimeError(f"streaming benchmark: {got} parts of {n}")
        return n / elapsed


async def raw_stream(url: str, n: int, body: bytes, headers: bool) -> float:
    """Parts per second, raw nats-py publish on one connection -> subscriber on another."""
    import nats

    sender = await nats.connect(url)
    receiver = await nats.connect(url)
    subject = f"bench.raw.stream.{uuid.uuid4().hex[:8]}"
    got = 0
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        nonlocal got
        got += 1
        if got == n:
            done.set()

    await receiver.subscribe(subject, cb=cb, pending_msgs_limit=n + 10)
    await receiver.flush()
    start = time.perf_counter()
    if headers:
        for i in range(1, n + 1):
            await sender.publish(
                subject, body, headers={CONTENT_TYPE: "application/json", STREAM_SEQ: str(i)}
            )
    else:
        for _ in range(n):
            await sender.publish(subject, body)
    await asyncio.wait_for(done.wait(), _TIMEOUT)
    elapsed = time.perf_counter() - start
    await sender.close()
    await receiver.close()
    return n / elapsed
