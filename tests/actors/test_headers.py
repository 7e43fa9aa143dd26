"""Headers of the user's own and a codec per message, on both transports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from motadata_actors import Actor, ActorSystem, CodecError, ConfigError, Context
from motadata_actors.mailbox import NatsServer

from ..conftest import system_on

pytestmark = pytest.mark.anyio


class Mirror(Actor):
    """Answers with the headers it got that are not the framework's, and the content type."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        own = {k: v for k, v in ctx.headers.items() if k.lower().startswith("x-")}
        if ctx.is_stream:
            await ctx.stream(own)
            return None
        return [own, ctx.content_type, msg]


@pytest.fixture(params=["inprocess", "nats"])
async def system(
    request: pytest.FixtureRequest, nats_server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    """A system with ``mirror``, on each transport in turn."""
    async with system_on(request.param, nats_server, tenant) as system:
        await system.spawn(Mirror, name="mirror")
        yield system


async def test_own_headers_reach_the_handler_and_a_codec_is_chosen_per_message(
    system: ActorSystem,
) -> None:
    ref = system.ref("mirror")
    sent = {"X-Request-Id": "r-1", "X-Model": "gpt-x"}
    assert await ref.ask({"q": 1}, headers=sent, codec="cbor", timeout=5) == [
        sent,
        "application/cbor",
        {"q": 1},
    ]
    assert (await ref.ask("plain", timeout=5))[:2] == [{}, "application/json"]
    async with ref.ask_stream("s", headers={"X-Stream": "yes"}, codec="msgpack") as parts:
        assert [part async for part in parts] == [{"X-Stream": "yes"}]
    await ref.tell("t", headers={"X-Tell": "1"}, codec="protobuf")  # protobuf: plain values


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Sdk-Tenant-Id": "other"}, "reserved"),
        ({"sdk-message-id": "x"}, "reserved"),
        ({"Nats-Msg-Id": "x"}, "reserved"),
        ({"Content-Type": "text/plain"}, "reserved"),
        ({"traceparent": "00-x"}, "reserved"),
        ({"X Bad": "v"}, "not a token"),
        ({"X-Ok": "line\r\nInjected: yes"}, "line breaks"),
        ({"X-Ok": 3}, "printable text"),
        (["X-Ok"], "mapping"),
    ],
)
async def test_reserved_or_malformed_headers_are_refused_before_sending(
    system: ActorSystem, headers: Any, error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        await system.ref("mirror").tell("x", headers=headers)


async def test_an_unknown_codec_is_a_clear_error(system: ActorSystem) -> None:
    with pytest.raises(CodecError, match="unknown codec 'yaml'"):
        await system.ref("mirror").ask("x", codec="yaml", timeout=5)
