"""Durable mailboxes under faults: a killed agent process, a killed nats-server, a slow actor.

Real processes: the agent runs in a child OS process the test kills with SIGKILL, and the
nats-server is killed and started again on the same port and store directory.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from motadata_actors import Actor, ActorsError, ActorSystem, Context, Settings
from motadata_actors.mailbox import NatsServer, NatsTransport
from motadata_actors.mailbox._jetstream import agents_stream, consumer_name

from ..conftest import durable_agent_script, start_child, stop_child, wait_for

pytestmark = pytest.mark.anyio

# A durable agent that records each message it handles in a file, one line each, and
# dies (os._exit, no verdict sent) on "die".
AGENT = durable_agent_script(
    """
    class Agent(Actor):
        async def on_message(self, msg, ctx):
            if msg == "die":
                os._exit(3)
            await asyncio.sleep(0.002)
            with open(sys.argv[2], "a") as f:
                f.write(f"{msg}\\n")
    """,
    "ledger",
)


def start_agent(server: NatsServer, tenant: str, ledger: Path, **env: str) -> subprocess.Popen[str]:
    return start_child(AGENT, tenant, str(ledger), env={"NATS_URL": server.url, **env})


def handled(ledger: Path) -> list[str]:
    return ledger.read_text().split() if ledger.exists() else []


async def test_killing_the_agent_process_mid_stream_loses_nothing(
    fresh_nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    env = {"SDK_DURABLE_ACK_WAIT": "1"}  # what the dead process held comes back after 1 s
    first = start_agent(fresh_nats_server, tenant, ledger, **env)
    try:
        settings = Settings(nats_urls=(fresh_nats_server.url,))
        async with ActorSystem(tenant, settings=settings) as system:
            ref = system.ref("ledger", mailbox="durable")
            for i in range(300):
                await ref.tell(i)
            await wait_for(lambda: len(handled(ledger)) >= 50, 20, "the first 50")
            os.kill(first.pid, signal.SIGKILL)
            stop_child(first)
            assert len(set(handled(ledger))) < 300, "the kill came too late to test anything"
            second = start_agent(fresh_nats_server, tenant, ledger, **env)
            try:
                await wait_for(lambda: len(set(handled(ledger))) == 300, 30, "all 300")
            finally:
                stop_child(second)
        # At least once: some may have been handled twice (handled, not yet acked, when
        # the process died); with an idempotent handler the final state is exact.
        assert set(handled(ledger)) == {str(i) for i in range(300)}
    finally:
        stop_child(first)


async def test_a_handler_process_that_dies_on_the_last_delivery_is_dead_lettered(
    fresh_nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    env = {"SDK_DURABLE_ACK_WAIT": "1", "SDK_DURABLE_MAX_DELIVER": "1"}
    dying = start_agent(fresh_nats_server, tenant, ledger, **env)
    try:
        settings = Settings(
            nats_urls=(fresh_nats_server.url,), durable_ack_wait=1.0, durable_max_deliver=1
        )
        async with ActorSystem(tenant, settings=settings) as system:
            # A replica here listens for the server's MAX_DELIVERIES advisory; it handles
            # nothing itself (its handler is never reached for "die").
            await system.spawn(Survivor, name="ledger", mailbox="durable")
            await system.ref("ledger", mailbox="durable").tell("die")
            letters: list[Any] = []

            async def dead_lettered() -> None:
                while not letters:
                    letters.extend(await system.dead_letters())
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(dead_lettered(), 15)
            assert dying.wait(5) == 3, "the die message went to the child process"
            stop_child(dying)
            [letter] = letters
            assert letter.data == b'"die"' and "no verdict" in letter.reason
    finally:
        stop_child(dying)


async def test_messages_behind_one_that_kills_its_process_are_handled_not_used_up(
    fresh_nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    # Each death took a delivery from every message pulled ahead: with two "die" and three
    # deliveries each, the five messages behind them were dead-lettered, never handled.
    ledger = tmp_path / "ledger.txt"
    env = {"SDK_DURABLE_ACK_WAIT": "1", "SDK_DURABLE_MAX_DELIVER": "3"}
    settings = Settings(
        nats_urls=(fresh_nats_server.url,), durable_ack_wait=1.0, durable_max_deliver=3
    )
    agents: list[subprocess.Popen[str]] = []
    letters: list[Any] = []
    try:
        async with ActorSystem(tenant, settings=settings) as system:
            ref = system.ref("ledger", mailbox="durable")
            with anyio.fail_after(50):  # a hang guard: each death costs a restart
                while len(handled(ledger)) < 5 or len(letters) < 2:
                    if not agents or agents[-1].poll() is not None:  # as systemd would
                        agents.append(start_agent(fresh_nats_server, tenant, ledger, **env))
                        if len(agents) == 1:  # it made the stream: the messages are kept
                            for msg in ["die", "die", *range(5)]:
                                await ref.tell(msg)
                    letters[:] = await system.dead_letters()  # by an agent, from advisories
                    await asyncio.sleep(0.1)
        assert sorted(handled(ledger)) == ["0", "1", "2", "3", "4"]
        assert [letter.data for letter in letters] == [b'"die"', b'"die"']
        # Only the "die" messages killed: at most three deaths each (the first death of
        # the first process may have taken a delivery from the other one).
        assert all(agent.poll() in (3, None) for agent in agents)
        assert len(agents) - 1 <= 6
    finally:
        for agent in agents:
            stop_child(agent)


class Survivor(Actor):
    """A replica that refuses to handle ``die`` (never reached: the child takes it first)."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        raise AssertionError(f"the survivor got {msg!r}")


async def test_killing_nats_server_loses_no_acknowledged_message(
    tenant: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    first = NatsServer(store_dir=store)
    first.start()
    port = int(first.url.rsplit(":", 1)[1])
    got: set[int] = set()

    class Counter(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            got.add(msg)

    servers = [first]
    try:
        settings = Settings(nats_urls=(first.url,), durable_ack_wait=2.0)
        async with ActorSystem(tenant, settings=settings) as system:
            ref = await system.spawn(Counter, name="counter", mailbox="durable")
            acked: set[int] = set()
            for i in range(400):
                if i == 150:
                    first.kill()  # SIGKILL mid-stream

                    async def restart() -> None:
                        await asyncio.sleep(1.0)
                        again = NatsServer(port=port, store_dir=store)
                        servers.append(again)
                        await again.astart()

                    restarting = asyncio.create_task(restart())
                try:
                    await ref.tell(i)
                    acked.add(i)
                except ActorsError:
                    pass  # not acknowledged during the outage: maybe stored, maybe not
            await restarting
            await wait_for(lambda: acked <= got, 30, "every acknowledged message")
            assert len(acked) > 200, f"only {len(acked)} acknowledged: not much of a test"
            assert acked <= got
    finally:
        for server in servers:
            server.stop()


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


async def test_a_slow_durable_actor_keeps_memory_and_unacked_messages_bounded(
    nats_server: NatsServer, tenant: str
) -> None:
    total, capacity = 50_000, 100
    count = 0

    class Slow(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            nonlocal count
            count += 1
            await asyncio.sleep(0.002)

    settings = Settings(nats_urls=(nats_server.url,), mailbox_capacity=capacity)
    async with ActorSystem(tenant, settings=settings) as system:
        await system.spawn(Slow, name="slow", mailbox="durable")
        transport = system._runtime.transport
        assert isinstance(transport, NatsTransport)
        js = transport.client.jetstream()
        before = rss_mib()
        subject = f"sdk.agent.client.slow.{tenant}"
        for start in range(0, total, 1000):  # a fast producer: 1000 in flight at a time
            await asyncio.gather(*(js.publish(subject, b"1") for _ in range(start, start + 1000)))
        pending = []
        for _ in range(10):
            info = await js.consumer_info(agents_stream(tenant), consumer_name("slow"))
            pending.append(info.num_ack_pending)
            await asyncio.sleep(0.1)
        grown = rss_mib() - before
        print(f"RSS grew {grown:.1f} MiB; ack pending samples {pending}")
        stored = (await js.stream_info(agents_stream(tenant))).state.messages
        assert all(p <= capacity for p in pending), pending
        assert max(pending) > 0
        assert grown < 50, f"RSS grew {grown:.1f} MiB with {total} messages queued"
        assert stored > total / 2, "the slow actor should still have most of them waiting"
    # Stopped: every message is either handled (and acked) or still in the stream.
    async with ActorSystem(tenant, settings=settings) as system:
        transport = system._runtime.transport
        assert isinstance(transport, NatsTransport)
        info = await transport.client.jetstream().stream_info(agents_stream(tenant))
        assert count + info.state.messages == total
