"""Sealed bodies: AES-GCM end to end, keys by id, rotation, tampering refused."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConfigError,
    Context,
    SealError,
    Settings,
)
from motadata_actors.codecs import KeyRing
from motadata_actors.mailbox import InProcessTransport, Mailbox, NatsServer

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio

K1, K2 = os.urandom(32), os.urandom(16)
SECRET = "the launch code is 0000"


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if ctx.is_stream:
            for word in str(msg).split():
                await ctx.stream(word)
            return "done"
        return msg


async def _system(kind: str, server: NatsServer, tenant: str, keys: KeyRing) -> ActorSystem:
    if kind == "nats":
        return ActorSystem(tenant, transport=await connect(server), keys=keys,
                           handle_signals=False)  # fmt: skip
    return ActorSystem(tenant, transport=InProcessTransport(), keys=keys,
                       settings=Settings(enable_nats=False), handle_signals=False)  # fmt: skip


@pytest.fixture(params=["inprocess", "nats"])
async def system(
    request: pytest.FixtureRequest, nats_server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    """A sealing system with ``echo``, on each transport in turn."""
    async with await _system(request.param, nats_server, tenant, KeyRing({"k1": K1})) as system:
        await system.spawn(Echo, name="echo")
        yield system


async def test_bodies_travel_as_ciphertext_and_arrive_as_they_were(system: ActorSystem) -> None:
    tap: Mailbox[Any] = Mailbox(100)
    await system.transport.subscribe(f"sdk.agent.*.echo.{system.tenant}", mailbox=tap)
    assert await system.ref("echo").ask({"note": SECRET}, timeout=5) == {"note": SECRET}
    wire = await tap.receive()
    assert wire.headers["Sdk-Key-Id"] == "k1"
    assert SECRET.encode() not in wire.data and b"launch" not in wire.data
    async with system.ref("echo").ask_stream(SECRET, timeout=5) as parts:
        assert [p async for p in parts] == [*SECRET.split(), "done"]


async def test_tampered_or_retyped_ciphertext_is_refused(system: ActorSystem) -> None:
    tap: Mailbox[Any] = Mailbox(100)
    await system.transport.subscribe(f"sdk.agent.*.echo.{system.tenant}", mailbox=tap)
    await system.ref("echo").tell(SECRET)
    wire = await tap.receive()
    subject = f"sdk.agent.client.echo.{system.tenant}"
    flipped = wire.data[:-1] + bytes([wire.data[-1] ^ 1])
    headers = dict(wire.headers)
    headers.pop("Sdk-Message-Id")
    reply = await system.transport.request(subject, flipped, headers=headers, timeout=5)
    assert reply.headers["Sdk-Error"] == "SealError"
    retyped = {**headers, "Content-Type": "application/msgpack"}
    reply = await system.transport.request(subject, wire.data, headers=retyped, timeout=5)
    assert reply.headers["Sdk-Error"] == "SealError"
    await wait_for(lambda: system.statistics()[0].dead_lettered == 2, 10, "two dead letters")


async def test_keys_rotate_without_downtime(nats_server: NatsServer, tenant: str) -> None:
    added = KeyRing({"k1": K1, "k2": K2})  # step 1: the new key everywhere, k1 still seals
    moved = KeyRing({"k1": K1, "k2": K2}, current="k2")  # step 2: k2 seals, here first
    async with (
        await _system("nats", nats_server, tenant, moved) as newer,
        await _system("nats", nats_server, tenant, added) as older,
    ):
        await newer.spawn(Echo, name="echo-new")
        await older.spawn(Echo, name="echo-old")
        assert await older.ref("echo-new").ask("hi", timeout=5) == "hi"  # k1 in, k2 back
        assert await newer.ref("echo-old").ask("hi", timeout=5) == "hi"  # k2 in, k1 back
    # A process that has not got the new key yet fetches it by id through its provider.
    fetched = KeyRing({"k1": K1}, provider=lambda kid: K2 if kid == "k2" else None)
    async with (
        await _system("nats", nats_server, tenant, moved) as newer,
        await _system("nats", nats_server, tenant, fetched) as catching_up,
    ):
        await newer.spawn(Echo, name="echo-new")
        assert await catching_up.ref("echo-new").ask("hi", timeout=5) == "hi"


async def test_a_receiver_without_the_key_refuses_and_says_which(
    nats_server: NatsServer, tenant: str
) -> None:
    async with (
        await _system("nats", nats_server, tenant, KeyRing({"k2": K2})) as sender,
        await _system("nats", nats_server, tenant, KeyRing({"k1": K1})) as receiver,
    ):
        await receiver.spawn(Echo, name="echo")
        with pytest.raises(SealError, match=r"rejected by 'echo'.*'k2'"):
            await sender.ref("echo").ask("hi", timeout=5)


def test_key_rings_from_settings_and_their_errors() -> None:
    text = f"a:{base64.b64encode(K1).decode()},b:{base64.b64encode(K2).decode()}"
    settings = Settings.from_env({"SDK_SEAL_KEYS": text})
    assert base64.b64encode(K1).decode() not in repr(settings)
    ring = KeyRing.parse(text)
    assert ring.current == "a" and "a" in repr(ring) and K1.hex() not in repr(ring)
    for bad, error in (
        ("nokey", "id:base64key"),
        ("a:***", "not base64"),
        (f"a:{base64.b64encode(b'short').decode()}", "16, 24 or 32"),
        (f"bad id:{base64.b64encode(K1).decode()}", "key id"),
    ):
        with pytest.raises(ConfigError, match=error):
            KeyRing.parse(bad)
    with pytest.raises(ConfigError, match="at least one key"):
        KeyRing({})


class Listener(Actor):
    """Keeps the events it receives."""

    events = ("note",)
    got: ClassVar[list[Any]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Listener.got.append(msg)


async def test_events_are_sealed_too(system: ActorSystem) -> None:
    Listener.got = []
    tap: Mailbox[Any] = Mailbox(100)
    await system.transport.subscribe(f"sdk.events.note.{system.tenant}", mailbox=tap)
    await system.spawn(Listener, name="listener")
    await system.publish({"note": SECRET}, event_type="note")
    await wait_for(lambda: Listener.got == [{"note": SECRET}], 10, "the event")
    wire = await tap.receive()
    assert wire.headers["Sdk-Key-Id"] == "k1" and b"launch" not in wire.data
