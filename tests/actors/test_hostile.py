"""Hostile input to an actor: replays, huge headers, invalid UTF-8 in headers.

Each is refused with a clear reason (an error reply for asks, a dead letter always, and a
metric through the dead-letter count), and the actor goes on working.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import (
    CONTENT_TYPE,
    MESSAGE_ID,
    NatsServer,
    Transport,
    agent_subject,
    new_message_id,
)

pytestmark = pytest.mark.anyio


class Count(Actor):
    handled: list[Any]

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        type(self).handled.append(msg)
        return msg


def counter() -> type[Count]:
    return type("C", (Count,), {"handled": []})


@contextlib.asynccontextmanager
async def target_system(
    transport: Transport, tenant: str, actor: type[Count]
) -> AsyncIterator[tuple[ActorSystem, str]]:
    """A system running ``actor`` as "target", and the subject mallory sends it on."""
    async with ActorSystem(tenant, transport=transport) as system:
        await system.spawn(actor, name="target")
        yield system, agent_subject("mallory", "target", tenant)


def headers(message_id: str) -> dict[str, str]:
    return {CONTENT_TYPE: "application/json", MESSAGE_ID: message_id}


async def letters(system: ActorSystem, n: int) -> list[Any]:
    for _ in range(100):
        found = await system.dead_letters()
        if len(found) >= n:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} dead letters kept")


async def test_a_known_message_id_with_another_body_is_a_refused_replay(
    transport: Transport, tenant: str
) -> None:
    actor = counter()
    async with target_system(transport, tenant, actor) as (system, subject):
        mid = new_message_id()
        first = await transport.request(subject, b'"pay 10"', headers=headers(mid), timeout=5)
        assert first.data == b'"pay 10"'
        # The same id again with the same body is a retry: answered from the cache.
        again = await transport.request(subject, b'"pay 10"', headers=headers(mid), timeout=5)
        assert again.data == b'"pay 10"'
        forged = await transport.request(subject, b'"pay 9999"', headers=headers(mid), timeout=5)
        assert forged.headers is not None and forged.headers["Sdk-Error"] == "ReplayError"
        assert b"seen before with another body" in forged.data
        assert actor.handled == ["pay 10"]
        [letter] = await letters(system, 1)
        assert "another body" in letter.reason and letter.data == b'"pay 9999"'
        assert await system.ref("target").ask("still fine", timeout=5) == "still fine"


async def test_an_old_message_id_is_a_replay_outside_the_window(
    transport: Transport, tenant: str
) -> None:
    actor = counter()
    settings = Settings(enable_nats=False, replay_window=60.0)
    async with ActorSystem(tenant, transport=transport, settings=settings) as system:
        await system.spawn(actor, name="target")
        prefix, born, _ = new_message_id().split(".")
        old = f"{prefix}.{int(born, 16) - 3600:08x}.1"  # made an hour before it was sent
        subject = agent_subject("mallory", "target", tenant)
        await transport.publish(subject, b'"replayed"', headers=headers(old))
        [letter] = await letters(system, 1)
        assert "outside the replay window (60s, SDK_REPLAY_WINDOW)" in letter.reason
        assert actor.handled == []
        assert system.statistics()[0].rejected == 1


async def test_a_repeated_core_tell_is_handled_once(transport: Transport, tenant: str) -> None:
    actor = counter()
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(actor, name="target")
        subject = agent_subject("x", "target", tenant)
        mid = new_message_id()
        for _ in range(3):
            await transport.publish(subject, b'"once"', headers=headers(mid))
        assert await ref.ask("marker", timeout=5) == "marker"
        assert actor.handled == ["once", "marker"]
        assert system.event_counts()["duplicate"] == 2


async def test_huge_headers_are_refused_and_the_actor_lives(
    transport: Transport, tenant: str
) -> None:
    actor = counter()
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(actor, name="target")
        subject = agent_subject("x", "target", tenant)
        big = {**headers(new_message_id()), "X-Padding": "p" * 20_000}
        reply = await transport.request(subject, b'"hi"', headers=big, timeout=5)
        assert reply.headers is not None and reply.headers["Sdk-Error"] == "MessageTooLarge"
        assert b"headers of 20" in reply.data and b"16384" in reply.data
        assert await ref.ask("after", timeout=5) == "after"
        assert actor.handled == ["after"]
        [letter] = await letters(system, 1)
        assert letter.reason.startswith("MessageTooLarge: headers of")


async def test_invalid_utf8_in_headers_is_refused_as_nats_py_hands_it_over(
    nats_server: NatsServer, tenant: str
) -> None:
    """A raw client writes bytes nats-py cannot decode; nats-py gives us U+FFFD instead."""
    actor = counter()
    settings = Settings(nats_urls=(nats_server.url,))
    async with ActorSystem(tenant, settings=settings) as system:
        ref = await system.spawn(actor, name="target")
        host, port = nats_server.url.rsplit("//", 1)[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        await reader.readline()  # INFO
        subject = agent_subject("x", "target", tenant)
        for name, value in ((b"Content-Type", b"application/\xff\xfejson"),
                            (b"Sdk-Tenant-Id", tenant.encode() + b"\xc3\x28")):  # fmt: skip
            block = b"NATS/1.0\r\n" + name + b": " + value + b"\r\n\r\n"
            body = b'"bad"'
            writer.write(b'CONNECT {"verbose":false,"headers":true}\r\n')
            writer.write(
                f"HPUB {subject} {len(block)} {len(block) + len(body)}\r\n".encode()
                + block + body + b"\r\n"
            )  # fmt: skip
        writer.write(b"PING\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"PONG")
        writer.close()
        await writer.wait_closed()
        found = await letters(system, 2)
        reasons = sorted(d.reason for d in found)
        assert reasons[0].startswith("DecodeError") or reasons[0].startswith("CodecError"), reasons
        assert reasons[1].startswith("TenantError"), reasons
        assert "\ufffd" in found[0].headers.get("Content-Type", "") + found[1].headers.get(
            "Content-Type", ""
        )
        assert await ref.ask("after", timeout=5) == "after"
        assert actor.handled == ["after"]


@pytest.mark.parametrize("name", ["sdk-tenant-id", "SDK-TENANT-ID", "sDk-TeNaNt-Id"])
async def test_a_forged_tenant_is_refused_whatever_the_case_of_its_header(
    transport: Transport, tenant: str, name: str
) -> None:
    actor = counter()
    async with ActorSystem(tenant, transport=transport) as system:
        ref = await system.spawn(actor, name="target")
        subject = agent_subject("mallory", "target", tenant)
        forged = {**headers(new_message_id()), name: "someone-else"}
        reply = await transport.request(subject, b'"steal"', headers=forged, timeout=5)
        assert reply.headers is not None and reply.headers["Sdk-Error"] == "TenantError"
        [letter] = await letters(system, 1)
        assert letter.reason.startswith("TenantError")
        assert await ref.ask("after", timeout=5) == "after"
        assert actor.handled == ["after"]


async def test_headers_a_receiver_reads_are_matched_without_regard_to_case(
    transport: Transport, tenant: str
) -> None:
    """A foreign client writing lowercase names gets the same treatment as ours."""
    seen: list[tuple[str | None, str]] = []

    class Probe(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            seen.append((ctx.message_id, ctx.correlation_id))
            return msg

    async with ActorSystem(tenant, transport=transport) as system:
        await system.spawn(Probe, name="probe")
        subject = agent_subject("foreign", "probe", tenant)
        lower = {
            "content-type": "application/msgpack",
            "sdk-message-id": "m-1",
            "sdk-correlation-id": "c-1",
            "sdk-tenant-id": tenant,
        }
        reply = await transport.request(subject, b"\xa2hi", headers=lower, timeout=5)
        assert reply.data == b'"hi"'  # decoded as MessagePack by its lowercase Content-Type
        assert seen == [("m-1", "c-1")]


async def test_one_header_twice_in_different_cases_is_refused(
    transport: Transport, tenant: str
) -> None:
    actor = counter()
    async with target_system(transport, tenant, actor) as (system, subject):
        twice = {**headers(new_message_id()), "Sdk-Tenant-Id": tenant, "sdk-tenant-id": "other"}
        reply = await transport.request(subject, b'"x"', headers=twice, timeout=5)
        assert reply.headers is not None and reply.headers["Sdk-Error"] == "CodecError"
        assert b"more than once" in reply.data
        [letter] = await letters(system, 1)
        assert "appears more than once" in letter.reason
        assert actor.handled == []
