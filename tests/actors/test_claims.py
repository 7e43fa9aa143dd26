"""Claim checks: bodies over SDK_CLAIM_ABOVE travel through the tenant's object store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from motadata_actors import Actor, ActorSystem, AskTimeout, Context, Settings
from motadata_actors.actors import BodyReader
from motadata_actors.mailbox import (
    InProcessTransport,
    Mailbox,
    NatsServer,
    NatsTransport,
    ObjectStore,
)

from ..conftest import connect, start_child, stop_child, wait_for

pytestmark = pytest.mark.anyio

CLAIM_ABOVE = 64 * 1024
DOCUMENT = os.urandom(3 * 1024 * 1024 + 17)  # 3 MiB: three times the server's max_payload


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class Digest(Actor):
    """Answers the SHA-256 of a bytes message (so the reply stays small)."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return hashlib.sha256(msg).hexdigest()


class Chunked(Actor):
    claimed_bodies = "reader"

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if not isinstance(msg, BodyReader):
            return ["inline", len(msg)]
        sizes = [len(chunk) async for chunk in msg.chunks()]
        value = await msg.value()
        return ["reader", msg.size, msg.content_type, msg.plain, sum(sizes), len(value)]


def _settings(transport: str, **more: Any) -> Settings:
    return Settings(enable_nats=transport == "nats", claim_above=CLAIM_ABOVE, **more)


@pytest.fixture(params=["inprocess", "nats"])
async def bus(request: pytest.FixtureRequest, nats_server: NatsServer) -> AsyncIterator[Any]:
    """A transport of each kind in turn; the NATS one on the shared test server."""
    if request.param == "inprocess":
        yield InProcessTransport()
        return
    transport = await connect(nats_server)
    try:
        yield transport
    finally:
        await transport.aclose()


def _kind(bus: Any) -> str:
    return "nats" if isinstance(bus, NatsTransport) else "inprocess"


async def _store(system: ActorSystem) -> ObjectStore:
    claims = system._runtime.claims
    assert claims is not None
    return await claims.store()


async def _empty(store: ObjectStore) -> None:
    names: list[str] = ["?"]

    async def poll() -> None:
        names[:] = await store.names()

    deadline = asyncio.get_running_loop().time() + 10
    while True:
        await poll()
        if not names:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"objects left behind: {names}")
        await asyncio.sleep(0.05)


async def test_a_large_ask_and_its_reply_travel_by_claim_and_leave_nothing(
    bus: Any, tenant: str
) -> None:
    async with ActorSystem(
        tenant, transport=bus, settings=_settings(_kind(bus)), handle_signals=False
    ) as system:
        await system.spawn(Echo, name="echo")
        tap: Mailbox[Any] = Mailbox(10)
        await system.transport.subscribe(f"sdk.agent.*.echo.{tenant}", mailbox=tap)
        back = await system.ref("echo").ask(DOCUMENT, timeout=30)
        assert back == DOCUMENT
        wire = await tap.receive()
        assert wire.data == b""  # the message carries the claim, not the body
        _, size = wire.headers["Sdk-Claim"].split(" ")
        assert int(size) > len(DOCUMENT)  # the encoded body
        assert "Content-Type" not in wire.headers  # JSON, the default: never sent
        # small bodies still travel in the message
        assert await system.ref("echo").ask("small", timeout=5) == "small"
        small = await tap.receive()
        assert "Sdk-Claim" not in (small.headers or {})
        await _empty(await _store(system))  # the ask's object and the reply's, both gone


async def test_a_large_tell_is_handled_then_its_object_deleted(bus: Any, tenant: str) -> None:
    got: list[str] = []

    class Keeper(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> None:
            got.append(hashlib.sha256(msg).hexdigest())

    async with ActorSystem(
        tenant, transport=bus, settings=_settings(_kind(bus)), handle_signals=False
    ) as system:
        await system.spawn(Keeper, name="keeper")
        await system.ref("keeper").tell(DOCUMENT, codec="msgpack")
        await wait_for(lambda: bool(got), 30, "the tell to be handled")
        assert got == [hashlib.sha256(DOCUMENT).hexdigest()]
        await _empty(await _store(system))


async def test_an_actor_can_read_a_claimed_body_in_chunks(bus: Any, tenant: str) -> None:
    async with ActorSystem(
        tenant, transport=bus, settings=_settings(_kind(bus)), handle_signals=False
    ) as system:
        await system.spawn(Chunked, name="chunked")
        answer = await system.ref("chunked").ask(DOCUMENT, timeout=30, codec="cbor")
        kind, size, content_type, plain, read, decoded = answer
        assert (kind, content_type, plain, decoded) == (
            "reader",
            "application/cbor",
            True,
            len(DOCUMENT),
        )
        assert size == read > len(DOCUMENT)
        assert await system.ref("chunked").ask(b"tiny", timeout=5) == ["inline", 4]
        await _empty(await _store(system))


async def test_claimed_bodies_are_compressed_and_sealed_first(
    nats_server: NatsServer, tenant: str
) -> None:
    from motadata_actors.codecs import KeyRing

    text = os.urandom(1536 * 1024).hex()  # 3 MiB of hex digits: compresses to about half
    keys = KeyRing({"k1": os.urandom(32)})
    settings = Settings(claim_above=1024, compress_above=1024)
    transport = await connect(nats_server)
    async with ActorSystem(
        tenant, transport=transport, settings=settings, keys=keys, handle_signals=False
    ) as system:
        await system.spawn(Chunked, name="chunked")
        answer = await system.ref("chunked").ask(text, timeout=30)
        assert answer[0] == "reader"
        assert answer[3] is False  # compressed and sealed: not the codec's own bytes
        assert answer[5] == len(text)
        assert 1024 < answer[1] < len(text) * 0.6  # what the store held: compressed
        await _empty(await _store(system))


async def test_a_receiver_without_claims_refuses_clearly(
    nats_server: NatsServer, tenant: str
) -> None:
    sender = await connect(nats_server)
    receiver = await connect(nats_server)
    async with (
        ActorSystem(tenant, transport=receiver, settings=Settings(), handle_signals=False) as far,
        ActorSystem(
            tenant, transport=sender, settings=_settings("nats"), handle_signals=False
        ) as near,
    ):
        await far.spawn(Echo, name="echo")
        with pytest.raises(Exception, match="SDK_CLAIM_ABOVE") as caught:
            await near.ref("echo").ask(DOCUMENT, timeout=30)
        assert "DecodeError" in repr(caught.value) or "CodecError" in repr(caught.value)
        # The asker is told first; the letter is stored beside it: wait for it.
        with anyio.fail_after(10):
            while not any("SDK_CLAIM_ABOVE" in d.reason for d in await far.dead_letters()):
                await anyio.sleep(0.05)


async def test_a_gone_or_malformed_claim_is_refused_and_dead_lettered(
    bus: Any, tenant: str
) -> None:
    async with ActorSystem(
        tenant, transport=bus, settings=_settings(_kind(bus)), handle_signals=False
    ) as system:
        await system.spawn(Echo, name="echo")
        subject = f"sdk.agent.client.echo.{tenant}"
        for claim, reason in [
            ("0123abcd 100", "is not in object store"),
            ("../etc 100", "malformed Sdk-Claim"),
            ("name", "malformed Sdk-Claim"),
        ]:
            reply = await system.transport.request(
                subject, b"", headers={"Sdk-Claim": claim}, timeout=10
            )
            assert reply.headers is not None
            assert reply.headers["Sdk-Error"] == "DecodeError"
            assert reason in reply.data.decode()
        # a body beside a claim is refused too: the claim does not say what it is
        reply = await system.transport.request(
            subject, b'"x"', headers={"Sdk-Claim": "abc 3"}, timeout=10
        )
        assert reply.headers is not None and "beside Sdk-Claim" in reply.data.decode()
        # The asker is told first; the letter is stored beside it: wait for the last one.
        with anyio.fail_after(10):
            while len(dead := await system.dead_letters()) < 4:
                await anyio.sleep(0.05)
        assert len(dead) == 4


async def test_an_event_with_a_claim_is_refused(bus: Any, tenant: str) -> None:
    seen: list[Any] = []

    class Listener(Actor):
        events = ("news",)

        async def on_message(self, msg: Any, ctx: Context) -> None:
            seen.append(msg)

    async with ActorSystem(
        tenant, transport=bus, settings=_settings(_kind(bus)), handle_signals=False
    ) as system:
        await system.spawn(Listener, name="listener")
        await system.transport.publish(
            f"sdk.events.news.{tenant}", b"", headers={"Sdk-Claim": "abcd 10"}
        )
        await system.publish("plain", event_type="news")
        await wait_for(lambda: bool(seen), 10, "the plain event")
        assert seen == ["plain"]  # the claimed one never reached the handler
        dead = await system.dead_letters()
        assert [d.reason for d in dead] == [
            "DecodeError: claim cannot decode an untyped message: Sdk-Claim on a message "
            "that is never claimed"
        ]


async def test_objects_left_by_a_crash_expire_with_the_ttl(bus: Any, tenant: str) -> None:
    async with ActorSystem(
        tenant, transport=bus, settings=_settings(_kind(bus), claim_ttl=1.0), handle_signals=False
    ) as system:
        store = await _store(system)
        await store.put("left-by-a-crashed-sender", b"x" * 300_000)
        assert await store.names() == ["left-by-a-crashed-sender"]
        await _empty(store)


async def test_a_bucket_with_another_ttl_is_a_clear_error(
    nats_server: NatsServer, tenant: str
) -> None:
    async with ActorSystem(
        tenant, transport=await connect(nats_server), settings=_settings("nats"),
        handle_signals=False,
    ):  # fmt: skip
        pass
    with pytest.raises(Exception, match="SDK_CLAIM_TTL"):
        async with ActorSystem(
            tenant, transport=await connect(nats_server),
            settings=_settings("nats", claim_ttl=60.0), handle_signals=False,
        ):  # fmt: skip
            pass


async def test_a_durable_claim_survives_a_crash_and_goes_after_the_ack(
    nats_server: NatsServer, tenant: str
) -> None:
    attempts: list[str] = []

    class Flaky(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> None:
            attempts.append(hashlib.sha256(msg).hexdigest())
            if len(attempts) == 1:
                raise RuntimeError("first delivery fails")

    settings = _settings("nats", durable_backoff=0.1)
    async with ActorSystem(
        tenant, transport=await connect(nats_server), settings=settings, handle_signals=False
    ) as system:
        await system.spawn(Flaky, name="flaky", mailbox="durable")
        await system.ref("flaky", mailbox="durable").tell(DOCUMENT)
        await wait_for(lambda: len(attempts) >= 2, 30, "the redelivery")
        assert attempts == [hashlib.sha256(DOCUMENT).hexdigest()] * 2
        await _empty(await _store(system))


_RECEIVER = """
import asyncio, hashlib, resource, sys, tracemalloc
from motadata_actors import Actor, ActorSystem, Settings

def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024

class Agent(Actor):
    async def on_message(self, msg, ctx):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        held = tracemalloc.get_traced_memory()[1] // 1024
        return [hashlib.sha256(msg).hexdigest(), len(msg), peak - BEFORE, held]

async def main():
    global BEFORE
    settings = Settings(claim_above=1024 * 1024, claim_max_size=128 * 1024 * 1024)
    async with ActorSystem(sys.argv[1], settings=settings) as system:
        await system.spawn(Agent, name="reader", mailbox=sys.argv[2])
        BEFORE = rss_kib()
        tracemalloc.start()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@pytest.mark.parametrize("mailbox", ["core", "durable"])
async def test_a_64_mib_document_reaches_another_process_in_bounded_memory(
    nats_server: NatsServer, tenant: str, mailbox: str
) -> None:
    document = os.urandom(64 * 1024 * 1024)
    child = start_child(
        textwrap.dedent(_RECEIVER), tenant, mailbox, env={"NATS_URL": nats_server.url}
    )
    try:
        settings = Settings(claim_above=1024 * 1024, claim_max_size=128 * 1024 * 1024)
        async with ActorSystem(
            tenant, transport=await connect(nats_server), settings=settings, handle_signals=False
        ) as system:
            digest, size, grew_kib, held_kib = await system.ref("reader", mailbox=mailbox).ask(
                document, timeout=120, codec="msgpack"
            )
            assert digest == hashlib.sha256(document).hexdigest()
            assert size == len(document)
            # What the receiver held at the peak (tracemalloc): the fetched body and the
            # decoded bytes, 2x, never a queue of chunks. Its resident high-water mark is
            # no measure of that: the allocator keeps freed chunks' pages (2.0x core,
            # 3.2-4.2x durable on this machine), so it is reported, not asserted.
            assert held_kib * 1024 < 2.5 * len(document), (
                f"held {held_kib} KiB at the peak (resident grew {grew_kib} KiB)"
            )
            await _empty(await _store(system))
    finally:
        stop_child(child)


async def test_an_object_deleted_while_the_store_is_listed_is_left_out(
    nats_server: NatsServer, tenant: str
) -> None:
    # A claim is released (deleted) once handled, which can fall between listing the
    # store's meta records and reading one of them: the listing skips it, it does not fail.
    transport = await connect(nats_server)
    try:
        store = await transport.object_store(f"OBJ_RACE_{tenant}", ttl=60)
        await store.put("kept", b"k" * 1000)
        await store.put("released", b"r" * 1000)
        js = store._js
        read = js.get_last_msg
        deleted: list[str] = []

        async def delete_first_then_read(stream: str, subject: str) -> Any:
            if not deleted:  # the release lands between the listing and this read
                deleted.append(subject)
                await store.delete("released")
            return await read(stream, subject)

        js.get_last_msg = delete_first_then_read
        try:
            assert await store.names() == ["kept"]
        finally:
            js.get_last_msg = read
        assert deleted and await store.names() == ["kept"]
    finally:
        await transport.aclose()


async def test_storing_an_asks_body_counts_against_its_timeout(
    tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upload ran before the ask's time started, unbounded: with the server gone
    # mid-upload an ask of 3 s took 10 s. A store that never answers shows it plainly.
    class NoAnswer:
        async def put(self, name: str, data: bytes) -> None:
            await anyio.sleep(30)

    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=_settings("inprocess"),
        handle_signals=False,
    ) as system:  # fmt: skip
        await system.spawn(Echo, name="echo")
        claims = system._runtime.claims
        assert claims is not None
        monkeypatch.setattr(claims, "_store", NoAnswer())
        with anyio.fail_after(10), pytest.raises(AskTimeout, match="not stored in the object"):
            await system.ref("echo").ask(DOCUMENT, timeout=0.5)
        assert await system.ref("echo").ask("small", timeout=5) == "small"  # inline: unaffected
