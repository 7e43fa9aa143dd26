"""Compressed bodies (zstd): on the wire when large, bounded when read, refused clearly."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import zstandard

from motadata_actors import Actor, ActorSystem, ConfigError, Context, Settings
from motadata_actors.mailbox import InProcessTransport, Mailbox, NatsServer, _compress

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


@pytest.fixture(params=["inprocess", "nats"])
async def system(
    request: pytest.FixtureRequest, nats_server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    """A system compressing bodies above 1 KiB, with ``echo``, on each transport in turn."""
    if request.param == "nats":
        transport: Any = await connect(nats_server)
        settings = Settings(compress_above=1024)
    else:
        transport, settings = InProcessTransport(), Settings(enable_nats=False, compress_above=1024)
    async with ActorSystem(
        tenant, transport=transport, settings=settings, handle_signals=False
    ) as system:
        await system.spawn(Echo, name="echo")
        yield system


async def _tap(system: ActorSystem) -> Mailbox[Any]:
    box: Mailbox[Any] = Mailbox(100)
    await system.transport.subscribe(f"sdk.agent.*.echo.{system.tenant}", mailbox=box)
    return box


async def test_large_bodies_travel_compressed_and_come_back_whole(system: ActorSystem) -> None:
    box = await _tap(system)
    text = "the same sentence again and again. " * 3000  # 105 KB, compresses well
    assert await system.ref("echo").ask(text, timeout=5) == text
    wire = await box.receive()
    assert wire.headers["Content-Encoding"] == "zstd"
    assert len(wire.data) < len(text) // 20
    assert await system.ref("echo").ask("short", timeout=5) == "short"
    small = await box.receive()
    assert "Content-Encoding" not in (small.headers or {})


async def _raw_ask(system: ActorSystem, data: bytes, encoding: str) -> Any:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    return await system.transport.request(
        f"sdk.agent.client.echo.{system.tenant}", data, headers=headers, timeout=5
    )


async def test_a_decompression_bomb_is_refused_and_dead_lettered(system: ActorSystem) -> None:
    bomb = zstandard.ZstdCompressor().compress(b"[" + b"0," * 50_000_000 + b"0]")  # 100 MB
    assert len(bomb) < 100_000
    reply = await _raw_ask(system, bomb, "zstd")
    assert reply.headers["Sdk-Error"] == "DecodeError"
    assert "unfolds past" in json.loads(reply.data)["message"]
    await wait_for(lambda: system.statistics()[0].dead_lettered == 1, 10, "the dead letter")


@pytest.mark.parametrize(
    ("data", "encoding", "error"),
    [(b"{}", "gzip", "CodecError"), (b"not zstd", "zstd", "DecodeError")],
)
async def test_unknown_encodings_and_broken_frames_are_refused(
    system: ActorSystem, data: bytes, encoding: str, error: str
) -> None:
    reply = await _raw_ask(system, data, encoding)
    assert reply.headers["Sdk-Error"] == error


async def test_a_receiver_without_zstandard_says_what_to_install(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_compress, "_zstd", lambda: None)
    frame = zstandard.ZstdCompressor().compress(b'"hello"')
    reply = await _raw_ask(system, frame, "zstd")
    assert reply.headers["Sdk-Error"] == "CodecError"
    assert "motadata-actors[compress]" in json.loads(reply.data)["message"]
    with pytest.raises(ConfigError, match=r"motadata-actors\[compress\]"):
        await system.ref("echo").ask("x" * 5000, timeout=5)  # nor can it compress


async def test_compression_settings_are_checked(
    tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings.from_env({"SDK_COMPRESS_ABOVE": "4096"}).compress_above == 4096
    assert Settings.from_env({}).compress_above == 0
    with pytest.raises(ConfigError, match="SDK_COMPRESS_ABOVE"):
        Settings.from_env({"SDK_COMPRESS_ABOVE": "-1"})
    monkeypatch.setattr(_compress, "_zstd", lambda: None)
    with pytest.raises(ConfigError, match=r"motadata-actors\[compress\]"):
        async with ActorSystem(
            tenant, transport=InProcessTransport(),
            settings=Settings(enable_nats=False, compress_above=1), handle_signals=False,
        ):  # fmt: skip
            pass
