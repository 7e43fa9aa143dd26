"""The sides the suite measures: ours and its baselines, each set up once per scenario.

Each maker is an async context manager that connects, subscribes or spawns what the side
needs, on the names of its own scenario, and yields a
:data:`~motadata_actors.benchmarks.measure.Batch`. The responder (or sink, for tells)
counts every message it handles in a :class:`~motadata_actors.benchmarks.ledger.Tally`.

* Tell: ``ref.tell`` to an actor that counts them, vs raw nats-py publish to a subscriber
  on the same connection; a batch is timed until the last message is handled. Both sinks
  hold up to :data:`SINK_BOUND` undelivered messages.
* Ask: ``ref.ask`` vs raw nats-py ``request``, with our headers or none; the responder in
  this process on the asker's connection (as our asker and actor share the system's), or
  a :class:`~motadata_actors.benchmarks.responder.ResponderProcess` in another process.
* In process: tell and ask vs a plain asyncio-queue actor and Pykka.
* The peer: FastStream's NATS broker (tell and ask, the responder in this process on the
  asker's connection), the framework users would otherwise pick; needs the ``bench`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import MESSAGE_ID, TIMEOUT_MS, new_message_id

from .ledger import Tally
from .measure import MAX_BATCH, Batch, Timing, ask_batch
from .responder import CountingEcho, raw_reply

if TYPE_CHECKING:
    from faststream.nats import NatsBroker

__all__ = (
    "SINK_BOUND",
    "CountingSink",
    "faststream_ask",
    "faststream_available",
    "faststream_tell",
    "our_ask",
    "our_tell",
    "pykka_ask",
    "pykka_tell",
    "queue_ask",
    "queue_tell",
    "raw_ask",
    "raw_tell",
)

SINK_BOUND = 2 * MAX_BATCH
"""Undelivered messages a sink holds, ours (mailbox capacity) and raw (pending limit) alike."""
TIMEOUT = 60.0
"""Seconds one batch may take before the scenario fails."""


def our_settings(url: str | None) -> Settings:
    """Settings of our side: on ``url`` (None: in process), sinks bounded like raw's."""
    if url is None:
        return Settings(enable_nats=False, mailbox_capacity=SINK_BOUND)
    return Settings(nats_urls=(url,), mailbox_capacity=SINK_BOUND)


class _Until:
    """Counts into a tally; ``await until(total)`` returns once the tally reaches it."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self._target = 0
        self._done = asyncio.Event()

    def handled(self) -> None:
        self.tally.count += 1
        if self.tally.count == self._target:
            self._done.set()

    async def until(self, total: int) -> None:
        if self.tally.count < total:
            self._target = total
            self._done.clear()
            await asyncio.wait_for(self._done.wait(), TIMEOUT)


class CountingSink(Actor):
    """Counts the tells it handles."""

    def __init__(self, until: _Until) -> None:
        self.until = until

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.until.handled()


def _tell_batch(send: Any, until: _Until) -> Batch:
    async def batch(n: int) -> Timing:
        total = until.tally.count + n
        start = time.perf_counter()
        for _ in range(n):
            await send()
        await until.until(total)
        return Timing(time.perf_counter() - start, n)

    return batch


@contextlib.asynccontextmanager
async def our_tell(
    url: str | None, tenant: str, payload: str, tally: Tally
) -> AsyncIterator[Batch]:
    """``ref.tell`` to a counting actor (``url`` None: the in-process transport)."""
    async with ActorSystem(tenant, settings=our_settings(url)) as system:
        until = _Until(tally)
        ref = await system.spawn(lambda: CountingSink(until), name="sink")
        yield _tell_batch(lambda: ref.tell(payload), until)


@contextlib.asynccontextmanager
async def raw_tell(
    url: str, subject: str, body: bytes, headers: dict[str, str] | None, tally: Tally
) -> AsyncIterator[Batch]:
    """Raw nats-py publish -> subscribe callback on one connection, with ``headers`` or none."""
    import nats

    nc = await nats.connect(url)
    try:
        until = _Until(tally)

        async def cb(msg: Any) -> None:
            until.handled()

        await nc.subscribe(subject, cb=cb, pending_msgs_limit=SINK_BOUND, pending_bytes_limit=0)
        await nc.flush()
        if headers is None:
            yield _tell_batch(lambda: nc.publish(subject, body), until)
        else:
            yield _tell_batch(lambda: nc.publish(subject, body, headers=dict(headers)), until)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def our_ask(
    url: str | None, tenant: str, payload: str, in_flight: int, tally: Tally | None
) -> AsyncIterator[Batch]:
    """``ref.ask`` to ``echo``: spawned here counting in ``tally``, or (None) served elsewhere."""
    async with ActorSystem(tenant, settings=our_settings(url)) as system:
        if tally is None:
            ref = system.ref("echo")
        else:
            ref = await system.spawn(lambda: CountingEcho(tally), name="echo")
        yield ask_batch(lambda: ref.ask(payload, timeout=5), in_flight)


@contextlib.asynccontextmanager
async def raw_ask(
    url: str, subject: str, body: bytes, in_flight: int, *, headers: bool, tally: Tally | None
) -> AsyncIterator[Batch]:
    """Raw nats-py ``request`` with our asks' two headers (``headers``) or none.

    With a ``tally`` the responder shares this connection and counts in it (its reply has
    no header, as ours); with None another process serves it.
    """
    import nats

    nc = await nats.connect(url)
    try:
        if tally is not None:
            counted = tally

            async def reply(msg: Any) -> None:
                await raw_reply(nc, msg, counted)

            await nc.subscribe(subject, cb=reply)
            await nc.flush()

        async def with_headers() -> Any:
            sent = {MESSAGE_ID: new_message_id(), TIMEOUT_MS: "5000"}  # as ours: no Content-Type
            return await nc.request(subject, body, timeout=5, headers=sent)

        async def bare() -> Any:
            return await nc.request(subject, body, timeout=5)

        yield ask_batch(with_headers if headers else bare, in_flight)
    finally:
        await nc.close()


# -- the peer: FastStream ---------------------------------------------------------------------


def faststream_available() -> bool:
    """Whether FastStream's NATS broker can be imported (``pip install '...[bench]'``)."""
    try:
        import faststream.nats  # noqa: F401
    except ImportError:
        return False
    return True


def _faststream_broker(url: str) -> NatsBroker:
    from faststream.nats import NatsBroker

    # No logger: by default FastStream logs two INFO lines per message, which would measure
    # logging; ours logs nothing per message either.
    return NatsBroker(url, logger=None)


@contextlib.asynccontextmanager
async def faststream_tell(
    url: str, subject: str, payload: str, tally: Tally
) -> AsyncIterator[Batch]:
    """FastStream ``broker.publish`` -> a ``@broker.subscriber`` counting, on one connection.

    The subscriber holds up to :data:`SINK_BOUND` undelivered messages, as raw's; FastStream
    has no "no byte limit", so its byte limit is set where the message limit binds first.
    """
    broker = _faststream_broker(url)
    until = _Until(tally)
    limit = SINK_BOUND * max(len(payload.encode()), 1)

    @broker.subscriber(subject, pending_msgs_limit=SINK_BOUND, pending_bytes_limit=limit)
    async def sink(msg: str) -> None:
        until.handled()

    async with broker:
        await broker.start()
        await broker.connection.flush()
        yield _tell_batch(lambda: broker.publish(payload, subject), until)


@contextlib.asynccontextmanager
async def faststream_ask(
    url: str, subject: str, payload: str, in_flight: int, tally: Tally
) -> AsyncIterator[Batch]:
    """FastStream ``broker.request`` to a ``@broker.subscriber`` returning its input.

    The responder shares the asker's broker (one connection), as our asker and actor share
    the system's; the reply is decoded, as ours is.
    """
    broker = _faststream_broker(url)

    @broker.subscriber(subject)
    async def echo(msg: str) -> str:
        tally.count += 1
        return msg

    async def one() -> Any:
        reply = await broker.request(payload, subject, timeout=5)
        return await reply.decode()

    async with broker:
        await broker.start()
        await broker.connection.flush()
        yield ask_batch(one, in_flight)


# -- in process ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def queue_tell(payload: str, tally: Tally) -> AsyncIterator[Batch]:
    """A plain asyncio-queue actor counting tells."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    until = _Until(tally)

    async def actor() -> None:
        while True:
            await queue.get()
            until.handled()

    task = asyncio.create_task(actor())
    try:
        yield _tell_batch(lambda: queue.put(payload), until)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def queue_ask(payload: str, tally: Tally) -> AsyncIterator[Batch]:
    """A plain asyncio-queue actor answering sequential asks through futures."""
    queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()

    async def actor() -> None:
        while True:
            msg, fut = await queue.get()
            tally.count += 1
            fut.set_result(msg)

    task = asyncio.create_task(actor())
    loop = asyncio.get_running_loop()

    async def one() -> Any:
        fut = loop.create_future()
        await queue.put((payload, fut))
        return await fut

    try:
        yield ask_batch(one, 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def _pykka_actor(tally: Tally) -> Iterator[tuple[Any, threading.Event, list[int]]]:
    import pykka

    done = threading.Event()
    target = [0]

    class Counting(pykka.ThreadingActor):  # type: ignore[misc, unused-ignore]
        def on_receive(self, message: Any) -> Any:
            tally.count += 1  # only this actor's thread writes it
            if message == "tell":
                if tally.count == target[0]:
                    done.set()
                return None
            return message

    ref = Counting.start()
    try:
        yield ref, done, target
    finally:
        ref.stop()


@contextlib.asynccontextmanager
async def pykka_tell(tally: Tally) -> AsyncIterator[Batch]:
    """Pykka ``tell`` to a counting actor, timed in a thread until the last is handled."""
    with _pykka_actor(tally) as (ref, done, target):

        def run(n: int) -> Timing:
            done.clear()
            target[0] = tally.count + n
            start = time.perf_counter()
            for _ in range(n):
                ref.tell("tell")
            if not done.wait(TIMEOUT):
                raise TimeoutError("Pykka did not handle its tells in time")
            return Timing(time.perf_counter() - start, n)

        async def batch(n: int) -> Timing:
            return await asyncio.to_thread(run, n)

        yield batch


@contextlib.asynccontextmanager
async def pykka_ask(payload: str, tally: Tally) -> AsyncIterator[Batch]:
    """Pykka sequential ``ask``, timed in a thread, with latencies."""
    with _pykka_actor(tally) as (ref, _, _):

        def run(n: int) -> Timing:
            clock = time.perf_counter
            latencies = []
            start = clock()
            for _ in range(n):
                t0 = clock()
                ref.ask(payload)
                latencies.append((clock() - t0) * 1e6)
            return Timing(clock() - start, n, tuple(latencies))

        async def batch(n: int) -> Timing:
            return await asyncio.to_thread(run, n)

        yield batch
