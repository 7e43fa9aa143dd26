"""Streaming replies: order, flow control, cancellation, errors and deadlines; both transports."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import (
    Actor,
    ActorStatistics,
    ActorSystem,
    AskStream,
    AskTimeout,
    CodecError,
    ConfigError,
    Context,
    DecodeError,
    EncodeError,
    NoResponders,
    RemoteError,
    Settings,
    StreamError,
    TransportClosed,
    message,
)
from motadata_actors.codecs import TypeRegistry
from motadata_actors.mailbox import (
    STREAM_END,
    STREAM_SEQ,
    STREAM_WINDOW,
    Incoming,
    Mailbox,
    NatsServer,
    Transport,
    agent_inbox,
)

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio


async def stream_of(
    actor: type[Actor], transport: Transport, tenant: str, **window: int
) -> list[Any]:
    """Every part ``actor`` streams for an ``ask_stream(1)`` with ``window``."""
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(actor, name="streamer")
        return [p async for p in ref.ask_stream(1, timeout=30, **window)]  # type: ignore[arg-type]


class Counter(Actor):
    """Yields 0..n-1; records how far it got and whether it was closed."""

    produced = 0
    closed = False

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[int]:  # type: ignore[override]
        type(self).produced = 0
        type(self).closed = False
        try:
            for i in range(msg):
                type(self).produced = i + 1
                yield i
        finally:
            type(self).closed = True


class Writer(Actor):
    """Streams through ctx.stream and returns a final value; fails on request."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        for word in ("the", "quick", "fox"):
            await ctx.stream(word)
        if msg == "fail":
            raise ValueError("the model went away")
        if msg == "stall":
            await asyncio.sleep(3600)
        return "." if msg == "final" else None


class Plain(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return {"doubled": msg * 2}


async def drain(parts: AskStream, into: list[Any]) -> None:
    """Append every part of ``parts`` to ``into`` (what came before an error stays)."""
    async for part in parts:
        into.append(part)


def stats(system: ActorSystem, name: str) -> ActorStatistics:
    return next(s for s in system.statistics() if s.name == name)


async def test_ten_thousand_parts_arrive_in_order(transport: Transport, tenant: str) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(Counter, name="counter")
        got = [part async for part in ref.ask_stream(10_000, timeout=60, window=32)]
        assert got == list(range(10_000))
        assert stats(system, "counter").streams == 0  # closed on the producer's side


async def test_final_value_and_plain_handlers(transport: Transport, tenant: str) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        writer = await system.spawn(Writer, name="writer")
        plain = await system.spawn(Plain, name="plain")
        assert [p async for p in writer.ask_stream("final")] == ["the", "quick", "fox", "."]
        assert [p async for p in writer.ask_stream("none")] == ["the", "quick", "fox"]
        assert [p async for p in plain.ask_stream(21)] == [{"doubled": 42}]


async def test_slow_consumer_bounds_the_producer(nats_server: NatsServer, tenant: str) -> None:
    window = 8
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        ref = await system.spawn(Counter, name="counter")
        samples: list[int] = []
        ahead: list[int] = []
        async with ref.ask_stream(200, timeout=60, window=window) as parts:
            async for part in parts:
                if part % 5 == 0:
                    if 200 - (part + 1) >= window:  # a slow reader: the producer runs ahead
                        await wait_for(
                            lambda: stats(system, "counter").stream_outstanding >= window,
                            5, "the producer to fill the window",
                        )  # fmt: skip
                    samples.append(stats(system, "counter").stream_outstanding)
                    ahead.append(Counter.produced - (part + 1))
        assert len(samples) == 40
        assert max(samples) == window  # it did run ahead, and no further than the window
        # Produced, not only sent, stays bounded: the window plus the one part waiting for room.
        assert max(ahead) <= window + 1


class Big(Actor):
    """Streams ``msg`` parts of 10 KiB."""

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[str]:
        for _ in range(msg):
            yield "x" * 10_240


async def test_window_in_bytes_bounds_large_parts(nats_server: NatsServer, tenant: str) -> None:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        ref = await system.spawn(Big, name="big")
        samples: list[int] = []
        async with ref.ask_stream(60, window=1000, window_bytes=50_000) as parts:
            async for _ in parts:
                if 60 - (len(samples) + 1) >= 4:  # a slow reader: the producer fills the window
                    await wait_for(
                        lambda: stats(system, "big").stream_outstanding >= 4, 5, "four parts out"
                    )
                samples.append(stats(system, "big").stream_outstanding)
        assert len(samples) == 60
        # 50,000 bytes hold four 10 KiB parts (10,242 bytes of JSON each), never five.
        assert max(samples) == 4


async def test_cancel_mid_stream_stops_the_producer(transport: Transport, tenant: str) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(Counter, name="counter")
        async with ref.ask_stream(10**9, window=16) as parts:
            async for part in parts:
                if part == 100:
                    break
        await wait_for(lambda: Counter.closed, 5, "the producer to be cancelled")
        assert Counter.produced <= 101 + 16  # closed, so stopped, not just paused
        assert [e.actor for e in system.events("cancelled")] == ["/counter"]
        assert stats(system, "counter").restarts == 0  # a cancel is not a crash
        assert [p async for p in ref.ask_stream(3)] == [0, 1, 2]  # and it serves on


async def test_dropped_iterator_cancels_the_producer(tenant: str) -> None:
    async with ActorSystem(tenant, transport=_inprocess()) as system:
        ref = await system.spawn(Counter, name="counter")
        parts = ref.ask_stream(10**9, timeout=600, window=4)  # a deadline far away
        assert await anext(parts) == 0
        del parts  # no aclose: the iterator is collected mid-stream
        gc.collect()
        await wait_for(lambda: Counter.closed, 5, "the producer to be cancelled")
        assert Counter.produced <= 1 + 4


async def test_cancelled_consumer_task_cancels_the_producer(
    nats_server: NatsServer, tenant: str
) -> None:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        ref = await system.spawn(Counter, name="counter")
        seen: list[int] = []

        async def consume() -> None:
            async with ref.ask_stream(10**9, window=4) as parts:
                async for part in parts:
                    seen.append(part)
                    await asyncio.sleep(0.01)  # mostly cancelled here, outside the iterator

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await wait_for(lambda: len(seen) >= 5, 10, "the first parts")
            tg.cancel_scope.cancel()
        await wait_for(lambda: Counter.closed, 5, "the producer to be cancelled")
        assert Counter.produced <= len(seen) + 4 + 1  # the window, and one waiting for room


async def test_handler_error_mid_stream_reaches_the_consumer(
    transport: Transport, tenant: str
) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        writer = await system.spawn(Writer, name="writer")
        got: list[str] = []
        with pytest.raises(RemoteError) as caught:
            await drain(writer.ask_stream("fail"), got)
        assert got == ["the", "quick", "fox"]
        assert caught.value.type_name == "ValueError"
        assert "the model went away" in str(caught.value)


class Careless(Actor):
    """Streams one good part, then one it cannot encode or one over a size limit."""

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[Any]:
        yield "fine"
        if msg == "unencodable":
            yield object()
        yield "x" * (100_000 if msg == "big-for-the-server" else 2_000_000)


@pytest.mark.parametrize("bad", ["unencodable", "oversized"])
async def test_a_part_that_cannot_be_sent_ends_the_stream(
    transport: Transport, tenant: str, bad: str
) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(Careless, name="careless")
        got: list[str] = []
        with pytest.raises(RemoteError) as caught:
            await drain(ref.ask_stream(bad), got)
        assert got == ["fine"]
        assert caught.value.type_name == (
            "EncodeError" if bad == "unencodable" else "MessageTooLarge"
        )


async def test_deadline_ends_a_stalled_stream(transport: Transport, tenant: str) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        writer = await system.spawn(Writer, name="writer")
        got: list[str] = []
        with pytest.raises(AskTimeout, match=r"did not end within 0\.5s"):
            await drain(writer.ask_stream("stall", timeout=0.5), got)
        assert got == ["the", "quick", "fox"]
        # Cancelled by its own deadline (overran) or by the consumer's cancel sent at the
        # same moment, whichever lands first.
        await wait_for(
            lambda: bool(system.events("overran") or system.events("cancelled")),
            5,
            "the handler to be cancelled",
        )
        assert stats(system, "writer").restarts == 0


async def test_plain_ask_to_a_streaming_handler_is_refused(
    transport: Transport, tenant: str
) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(Counter, name="counter")
        with pytest.raises(StreamError, match="ask_stream"):
            await ref.ask(3)
        await ref.tell(3)  # a tell runs the generator; its parts go nowhere
        await wait_for(lambda: stats(system, "counter").handled == 1, 5, "the tell")
        assert stats(system, "counter").restarts == 0


@pytest.mark.parametrize(
    ("second", "error", "match"),
    [
        ((b'"part"', "3"), StreamError, "expected part 2, got 3"),  # a lost part
        ((b'"part"', None), StreamError, "without a part number"),  # a foreign message
        ((b"{not json", "2"), DecodeError, "malformed"),  # garbage bytes
    ],
)
async def test_a_broken_stream_is_a_typed_error(
    transport: Transport,
    tenant: str,
    second: tuple[bytes, str | None],
    error: type[Exception],
    match: str,
) -> None:
    """A forged producer's bad second part ends the stream with a typed error, first part kept."""
    async with ActorSystem(tenant, transport=transport) as system:
        box: Mailbox[Incoming] = Mailbox(10)
        await system.transport.subscribe(agent_inbox("forger", tenant), mailbox=box)
        cancels: Mailbox[Incoming] = Mailbox(10)

        async def forge() -> None:
            request = await box.receive()
            assert request.headers is not None and STREAM_WINDOW in request.headers
            await system.transport.subscribe(f"{request.reply}.ctl", mailbox=cancels)
            await system.transport.publish(request.reply, b'"part"', headers={STREAM_SEQ: "1"})
            data, seq = second
            await system.transport.publish(
                request.reply, data, headers={STREAM_SEQ: seq} if seq else None
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(forge)
            got: list[str] = []
            with pytest.raises(error, match=match):
                await drain(system.ref("forger").ask_stream("go"), got)
        assert got == ["part"]
        control = [await cancels.receive()]  # progress reports, then the cancel
        while control[-1].headers and STREAM_END not in control[-1].headers:
            control.append(await cancels.receive())
        assert control[-1].headers == {STREAM_END: "cancel"}  # the producer was told to stop


async def test_no_responders_and_bad_arguments(transport: Transport, tenant: str) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        with pytest.raises(NoResponders, match="nobody"):
            async for _ in system.ref("nobody").ask_stream("x"):
                pass
        ref = system.ref("counter")
        with pytest.raises(ConfigError, match="window"):
            ref.ask_stream(1, window=0)
        with pytest.raises(ConfigError, match="timeout"):
            ref.ask_stream(1, timeout=-1)
        with pytest.raises(EncodeError):
            ref.ask_stream(object())


async def test_foreign_window_header_is_tolerated(transport: Transport, tenant: str) -> None:
    """A malformed Sdk-Stream-Window from a foreign client falls back to the default."""
    async with ActorSystem(tenant, transport=transport) as system:
        await system.spawn(Counter, name="counter")
        box: Mailbox[Incoming] = Mailbox(100)
        inbox = f"_INBOX_{tenant}.foreign"
        await system.transport.subscribe(inbox, mailbox=box)
        await system.transport.publish(
            f"sdk.agent.x.counter.{tenant}",
            b"3",
            headers={STREAM_WINDOW: "lots", "Sdk-Timeout-Ms": "5000"},
            reply=inbox,
        )
        seqs = []
        for _ in range(4):
            msg = await box.receive()
            assert msg.headers is not None
            seqs.append(msg.headers[STREAM_SEQ])
        assert seqs == ["1", "2", "3", "4"]
        assert msg.headers[STREAM_END] == "empty"  # the handler returned nothing


async def test_streaming_from_a_durable_mailbox(nats_server: NatsServer, tenant: str) -> None:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        ref = await system.spawn(Writer, name="writer", mailbox="durable")
        assert [p async for p in ref.ask_stream("final", timeout=10)] == [
            "the", "quick", "fox", ".",
        ]  # fmt: skip


def _inprocess() -> Transport:
    from motadata_actors.mailbox import InProcessTransport

    return InProcessTransport()


class Uneven(Actor):
    """A small part, then one bigger than what is left of the byte window."""

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[str]:
        yield "x" * 100
        yield "y" * 950
        yield "z"


async def test_uneven_parts_do_not_deadlock_the_byte_window(
    transport: Transport, tenant: str
) -> None:
    parts = await stream_of(Uneven, transport, tenant, window_bytes=1000)
    assert [len(p) for p in parts] == [100, 950, 1]


class Busy(Actor):
    """Blocks on its first message until released; then streams whatever it is asked."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.produced = 0

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[int]:
        if msg == "block":
            await self.release.wait()
            return
        for i in range(msg):
            self.produced = i + 1
            yield i


async def test_cancel_before_the_producer_listens_still_stops_it(
    transport: Transport, tenant: str
) -> None:
    """The consumer leaves while its request waits in a busy mailbox: no part is wasted for long."""
    async with ActorSystem(tenant, transport=transport) as system:
        busy = Busy()
        ref = await system.spawn(lambda: busy, name="busy")
        await ref.tell("block")
        async with ref.ask_stream(10**9, timeout=60, window=4) as parts:
            with anyio.move_on_after(0.1):
                await anext(parts)  # nothing comes: the actor is busy
        busy.release.set()
        await wait_for(lambda: system.events("cancelled") != [], 10, "the stream to be cancelled")
        assert busy.produced <= 1 + 4 + 1
        assert stats(system, "busy").streams == 0
        assert [p async for p in ref.ask_stream(2, timeout=10)] == [0, 1]  # and it serves on


class Parallel(Actor):
    """Streams from three tasks at once through ctx.stream."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        async def source(name: str) -> None:
            for i in range(6):
                await ctx.stream(f"{name}{i}")

        await asyncio.gather(*(source(n) for n in "abc"))
        return "done"


async def test_concurrent_ctx_stream_keeps_order_and_window(
    transport: Transport, tenant: str
) -> None:
    parts = await stream_of(Parallel, transport, tenant, window=2)
    assert parts[-1] == "done" and len(parts) == 19
    for name in "abc":
        assert [p for p in parts if p[0] == name] == [f"{name}{i}" for i in range(6)]


class SlowCleanup(Actor):
    """Stalls after one part; its cleanup takes a while and must run to its end."""

    cleaned: ClassVar[list[str]] = []

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[Any]:
        if msg == "probe":  # how many cancel requests the worker task carries
            task = asyncio.current_task()
            assert task is not None
            yield task.cancelling()
            return
        try:
            yield "first"
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # e.g. closing an LLM connection
            SlowCleanup.cleaned.append("done")


async def test_deadline_cancels_once_and_cleanup_completes(
    transport: Transport, tenant: str
) -> None:
    SlowCleanup.cleaned.clear()
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(SlowCleanup, name="slow")
        got: list[str] = []
        with pytest.raises(AskTimeout):
            await drain(ref.ask_stream("stall", timeout=0.5), got)
        assert got == ["first"]
        await wait_for(lambda: SlowCleanup.cleaned == ["done"], 5, "the cleanup to finish")
        # Cancelled once: by its own deadline (overran) or by the consumer's cancel, sent at
        # the same moment from the other end (whichever lands first; under load, either).
        kinds = [e.kind for e in system.events() if e.actor == "/slow"]
        assert kinds in (["started", "overran"], ["started", "cancelled"]), kinds
        assert [p async for p in ref.ask_stream("probe", timeout=10)] == [0]  # no stale cancel


@message("test.unknown_elsewhere.v1")
class UnknownElsewhere:
    text: str


async def test_a_refused_streaming_ask_is_its_typed_error(
    nats_server: NatsServer, tenant: str
) -> None:
    """Refused before any stream began (a type the actor's registry lacks): a CodecError."""
    receiver = ActorSystem(tenant, transport=await connect(nats_server), registry=TypeRegistry())
    async with receiver, ActorSystem(tenant, transport=await connect(nats_server)) as sender:
        await receiver.spawn(Plain, name="plain")
        with pytest.raises(CodecError, match="rejected by 'plain'"):
            await drain(sender.ref("plain").ask_stream(UnknownElsewhere(text="hi"), timeout=5), [])


async def test_a_part_the_server_refuses_ends_the_stream_in_order(tmp_path: Path) -> None:
    """A part under the SDK's limit but over the server's max_payload: the right error, no gap."""
    conf = tmp_path / "small.conf"
    conf.write_text("max_payload: 65536\n")
    async with NatsServer(args=["-c", str(conf)]) as server:
        system = ActorSystem("small", transport=await connect(server))
        async with system:
            ref = await system.spawn(Careless, name="careless")
            got: list[str] = []
            with pytest.raises(RemoteError) as caught:
                await drain(ref.ask_stream("big-for-the-server"), got)
            assert got == ["fine"]
            assert caught.value.type_name == "MessageTooLarge"


class Gone(Actor):
    """Crashes mid-stream from a durable mailbox; counts its runs."""

    runs: ClassVar[int] = 0

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[int]:
        Gone.runs += 1
        yield 1
        raise ValueError("mid-stream")


async def test_a_failed_durable_streaming_ask_is_not_run_again(
    nats_server: NatsServer, tenant: str
) -> None:
    Gone.runs = 0
    settings = Settings(nats_urls=(nats_server.url,), durable_backoff=0.05)
    async with ActorSystem(tenant, settings=settings) as system:
        ref = await system.spawn(Gone, name="gone", mailbox="durable")
        got: list[int] = []
        with pytest.raises(RemoteError, match="mid-stream"):
            await drain(ref.ask_stream("go", timeout=10), got)
        assert got == [1]
        await wait_for(lambda: bool(system.events("dead_letter")), 5, "the dead letter")
        await asyncio.sleep(0.5)  # a redelivery would come within the backoff
        assert Gone.runs == 1
        assert "streaming handler failed" in (await system.dead_letters())[0].reason


async def test_a_stream_being_read_when_its_system_stops_is_cut_with_an_error(
    nats_server: NatsServer, tenant: str
) -> None:
    # The reader waited out the whole deadline (60 s here) for parts that could no longer
    # come; a plain ask in flight was told at once. And a mailbox closed under a stream
    # ended it as if complete. Now it is a TransportClosed, saying how far it got.
    async with ActorSystem(tenant, transport=await connect(nats_server)) as producer:
        await producer.spawn(Writer, name="writer")
        seen: list[Any] = []
        asker = ActorSystem(tenant, transport=await connect(nats_server), handle_signals=False)
        async with asker:
            reading = asyncio.create_task(
                drain(asker.ref("writer").ask_stream("stall", timeout=60), seen)
            )
            await wait_for(lambda: len(seen) == 3, 10, "the three parts before the stall")
        with anyio.fail_after(20):  # a hang guard, far below the 60 s deadline
            with pytest.raises(TransportClosed, match=r"cut after 3 part\(s\).*stopped"):
                await reading
        assert seen == ["the", "quick", "fox"]
