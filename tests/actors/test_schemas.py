"""The tenant's schema registry: every process publishes its types; a refusal names who knows."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import orjson
import pytest

from motadata_actors import Actor, ActorSystem, CodecError, Context, Settings
from motadata_actors.codecs import TypeRegistry, field, message
from motadata_actors.mailbox import NatsServer

from ..conftest import connect, system_on

pytestmark = pytest.mark.anyio

known_here = TypeRegistry()


@message("test.schemas.order.v1", registry=known_here)
class Order:
    """An order to place."""

    item: str = field(proto=1)
    quantity: int = field(proto=2, default=1)


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


async def _published(system: ActorSystem, wire_name: str) -> dict[str, Any]:
    schemas = system._runtime.schemas
    assert schemas is not None
    for _ in range(200):  # published in the background once the system started
        found = await schemas.known(wire_name)
        if found is not None:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"{wire_name} never published")


@pytest.mark.parametrize("bus", ["inprocess", "nats"])
async def test_every_system_publishes_the_schemas_of_its_types(
    bus: str, nats_server: NatsServer, tenant: str
) -> None:
    async with system_on(bus, nats_server, tenant, registry=known_here) as system:
        found = await _published(system, "test.schemas.order.v1")
        assert found["schema"]["title"] == "test.schemas.order.v1"
        assert found["schema"]["required"] == ["item"]
        assert found["process"].endswith(f":{__import__('os').getpid()}")
        assert await system._runtime.schemas.known("test.schemas.unknown.v1") is None  # type: ignore[union-attr]


async def test_a_receiver_that_does_not_know_a_type_says_which_process_does(
    nats_server: NatsServer, tenant: str
) -> None:
    settings = Settings(nats_urls=(nats_server.url,))
    async with (
        ActorSystem(tenant, settings=settings, handle_signals=False, registry=known_here) as near,
        ActorSystem(
            tenant, settings=settings, handle_signals=False, registry=TypeRegistry()
        ) as far,
    ):
        await far.spawn(Echo, name="echo")
        await _published(near, "test.schemas.order.v1")
        with pytest.raises(CodecError, match=r"schema registry says process \S+ knows it"):
            await near.ref("echo").ask(Order("tea"), timeout=5)
        # The asker is told first; the letter is stored beside it: wait for it.
        with anyio.fail_after(10):
            while not (dead := await far.dead_letters()):
                await anyio.sleep(0.05)
        assert "knows it" in dead[-1].reason
        raw = orjson.loads(
            (await (await near._runtime.schemas._store()).get("test.schemas.order.v1")).value  # type: ignore[union-attr]
        )
        assert raw["schema"]["properties"]["quantity"]["type"] == "integer"


async def test_a_schema_publish_that_never_answers_does_not_hold_up_the_exit(
    nats_server: NatsServer, tenant: str
) -> None:
    # A server that died mid-publish: its key-value calls wait out their timeouts (25 s
    # at exit before the fix); a system stopping gives the background publish up instead.
    transport = await connect(nats_server)
    asked = anyio.Event()

    async def never_answers(bucket: str, **_: Any) -> Any:
        asked.set()
        await anyio.sleep_forever()

    transport.key_value = never_answers  # type: ignore[method-assign]
    with anyio.fail_after(10):  # the check: without the fix the exit waits for ever
        async with ActorSystem(tenant, transport=transport, registry=known_here) as system:
            await system.spawn(Echo, name="echo")
            await asked.wait()  # the publish is under way, and stuck
