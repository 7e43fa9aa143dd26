"""Streaming replies beside raw nats-py publishing the same parts.

Ours: one ``ref.ask_stream`` of ``n`` parts per batch, from an actor whose handler is an
async generator, read to the end; a batch is timed from the request to the last part. The
asker and the responder are two systems in this process, each on its own connection to
the same server, so each part crosses the server once, as in the baseline. Every part
is published with ``Sdk-Stream-Seq``, its number (a JSON part names no ``Content-Type``);
the asker reports its progress on the control subject every half window, and the
producer waits when it is a whole window ahead.

Raw: nats-py publishes the same bodies from one connection to a subscriber on another,
timed until the subscriber has them all; with the same header as ours (the part
number, ``Sdk-Stream-Seq``), and with none. It
has no flow control at all, so it is the ceiling.

Each side has a tenant or subject of its own, set up once per scenario. The streaming
actor counts the asks it answered, the raw subscriber the parts it got, for the suite's
answered-exactly-once check; every streaming reply must deliver all its parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import STREAM_SEQ

from .ledger import MeasurementError, Tally
from .measure import Batch, Timing
from .sides import SINK_BOUND

__all__ = ("our_stream", "raw_stream")

_TIMEOUT = 120.0


class _Streamer(Actor):
    """Streams ``msg`` parts (an int), each the same payload; counts the asks."""

    def __init__(self, payload: str, tally: Tally) -> None:
        self.payload = payload
        self.tally = tally

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[Any]:
        self.tally.count += 1
        payload = self.payload
        for _ in range(msg):
            yield payload


@contextlib.asynccontextmanager
async def our_stream(
    url: str, tenant: str, payload: str, window: int, tally: Tally
) -> AsyncIterator[Batch]:
    """Parts of one streaming reply of ``n`` parts per batch, read to the end."""
    settings = Settings(nats_urls=(url,))
    async with (
        ActorSystem(tenant, settings=settings) as responder,
        ActorSystem(tenant, settings=settings) as asker,
    ):
        await responder.spawn(lambda: _Streamer(payload, tally), name="streamer")
        ref = asker.ref("streamer")

        async def batch(n: int) -> Timing:
            got = 0
            start = time.perf_counter()
            async with ref.ask_stream(n, timeout=_TIMEOUT, window=window) as parts:
                async for _ in parts:
                    got += 1
            elapsed = time.perf_counter() - start
            if got != n:
                raise MeasurementError(
                    f"streaming reply, window {window}", [f"{got} parts of {n} arrived"]
                )
            return Timing(elapsed, 1)

        yield batch


@contextlib.asynccontextmanager
async def raw_stream(
    url: str, subject: str, body: bytes, headers: bool, tally: Tally
) -> AsyncIterator[Batch]:
    """Raw nats-py publish on one connection -> subscriber on another, parts counted."""
    import nats

    sender = await nats.connect(url)
    receiver = await nats.connect(url)
    target = 0
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        tally.count += 1
        if tally.count == target:
            done.set()

    async def batch(n: int) -> Timing:
        nonlocal target
        target = tally.count + n
        done.clear()
        start = time.perf_counter()
        if headers:
            for i in range(1, n + 1):
                await sender.publish(subject, body, headers={STREAM_SEQ: str(i)})
        else:
            for _ in range(n):
                await sender.publish(subject, body)
        await asyncio.wait_for(done.wait(), _TIMEOUT)
        return Timing(time.perf_counter() - start, n)

    try:
        await receiver.subscribe(
            subject, cb=cb, pending_msgs_limit=SINK_BOUND, pending_bytes_limit=0
        )
        await receiver.flush()
        yield batch
    finally:
        await sender.close()
        await receiver.close()
