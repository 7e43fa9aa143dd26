"""Scale out: replicas in several processes, a three-node cluster that loses a node, status.

Real processes throughout: replicas are child OS processes, the cluster is three
nats-server processes routed to each other on loopback, and nodes are SIGKILLed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest

from motadata_actors import (
    Actor,
    ActorsError,
    ActorSystem,
    ConnectionLost,
    Context,
    NoResponders,
    Settings,
)
from motadata_actors.actors import summarize
from motadata_actors.mailbox import NatsCluster, NatsServer, NatsTransport
from motadata_actors.mailbox._jetstream import agents_stream

from ..conftest import durable_agent_script, start_child, stop_child, wait_for

pytestmark = pytest.mark.anyio

REPLICA = durable_agent_script(
    """
    class Agent(Actor):
        async def on_message(self, msg, ctx):
            await asyncio.sleep(0.003)
            with open(sys.argv[2], "a") as f:
                f.write(f"{os.getpid()} {msg}\\n")
            return os.getpid()
    """,
    "worker",
)


def start_replica(url: str, tenant: str, ledger: Path) -> subprocess.Popen[str]:
    env = {"NATS_URL": url, "SDK_DURABLE_ACK_WAIT": "1", "SDK_DURABLE_PREFETCH": "8"}
    return start_child(REPLICA, tenant, str(ledger), env=env)


def lines(ledger: Path) -> list[tuple[int, str]]:
    if not ledger.exists():
        return []
    return [(int(p), m) for p, m in (line.split() for line in ledger.read_text().splitlines())]


async def test_three_replicas_share_the_load_show_in_status_and_a_killed_one_loses_nothing(
    fresh_nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    url = fresh_nats_server.url
    replicas = [start_replica(url, tenant, ledger) for _ in range(3)]
    try:
        async with ActorSystem(tenant, settings=Settings(nats_urls=(url,))) as system:
            reports = await system.status(wait=1.0)
            worker = summarize(reports)["worker"]
            assert worker["replicas"] == 3 and worker["mailbox"] == "durable"
            assert {r["pid"] for r in reports} >= {p.pid for p in replicas}
            ref = system.ref("worker", mailbox="durable")
            for i in range(600):
                await ref.tell(i)
                if i == 200:  # mid-stream: one replica dies with messages in hand
                    await wait_for(lambda: len(lines(ledger)) >= 100, 20, "work started")
                    os.kill(replicas[0].pid, signal.SIGKILL)
            await wait_for(lambda: len({m for _, m in lines(ledger)}) == 600, 40, "all 600")
            by_pid: dict[int, int] = {}
            for pid, _ in lines(ledger):
                by_pid[pid] = by_pid.get(pid, 0) + 1
            assert set(by_pid) == {p.pid for p in replicas}, by_pid  # each handled some
            assert {m for _, m in lines(ledger)} == {str(i) for i in range(600)}
            # Status now sees two replicas: the killed one no longer answers.
            assert summarize(await system.status(wait=1.0))["worker"]["replicas"] == 2
            # An ask is handled by exactly one replica, which answers.
            for i in range(20):
                pid = await ref.ask(f"ask-{i}", timeout=10)
                assert [p for p, m in lines(ledger) if m == f"ask-{i}"] == [pid]
    finally:
        for proc in replicas:
            stop_child(proc)


async def test_the_status_command_lists_agents_replicas_and_backlog(
    fresh_nats_server: NatsServer, tenant: str
) -> None:
    from io import StringIO

    from motadata_actors._status_cli import show_status

    class Idle(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            return msg

    settings = Settings(nats_urls=(fresh_nats_server.url,))
    async with (
        ActorSystem(tenant, settings=settings) as one,
        ActorSystem(tenant, settings=settings) as two,
    ):
        for system in (one, two):
            await system.spawn(Idle, name="planner")
        await one.spawn(Idle, name="ledger", mailbox="durable")
        out = StringIO()
        assert await show_status(settings, tenant, 1.0, out) == 2
        text = out.getvalue()
        assert "2 process(es) answered" in text
        assert [line.split()[:3] for line in text.splitlines() if line.startswith("planner")] == [
            ["planner", "core", "2"]
        ]
        assert [line.split()[:3] for line in text.splitlines() if line.startswith("ledger")] == [
            ["ledger", "durable", "1"]
        ]
        assert f"stream {agents_stream(tenant)}" in text


async def test_status_of_a_tenant_with_no_processes_is_empty_and_quiet(
    nats_server: NatsServer, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    from io import StringIO

    from motadata_actors._status_cli import show_status

    out = StringIO()
    settings = Settings(nats_urls=(nats_server.url,))
    assert await show_status(settings, tenant, 0.3, out) == 0
    assert "0 process(es) answered" in out.getvalue()
    assert "unreadable" not in caplog.text  # the server's no-responders is not a report


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class Keep(Actor):
    """Keeps what it is told, in a set each test sets afresh."""

    got: ClassVar[set[int]] = set()

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Keep.got.add(msg)


@pytest.fixture
def cluster() -> Any:
    with NatsCluster(3) as c:
        yield c


async def test_losing_the_node_a_client_is_connected_to_fails_over_to_another(
    cluster: NatsCluster, tenant: str
) -> None:
    settings = Settings(nats_urls=tuple(cluster.urls))
    async with ActorSystem(tenant, settings=settings) as system:
        ref = await system.spawn(Echo, name="echo")
        assert await ref.ask("before", timeout=5) == "before"
        transport = system.transport
        assert isinstance(transport, NatsTransport)
        connected = transport.connected_url
        victim = next(i for i, n in enumerate(cluster.nodes) if n.url == connected)
        outcomes: list[Any] = []

        async def ask_forever() -> None:
            loop = asyncio.get_running_loop()
            for i in range(10_000):
                start = loop.time()
                try:
                    outcomes.append(await ref.ask(i, timeout=2))
                except ActorsError as exc:
                    outcomes.append(exc)
                assert loop.time() - start < 2 + 5, "an ask outlived its deadline"  # hang guard
                if len(outcomes) > 50 and system.event_counts().get("reconnected"):
                    return

        asking = asyncio.create_task(ask_forever())
        await wait_for(lambda: len(outcomes) >= 5, 10, "asks flowing")
        cluster.kill(victim)
        await asyncio.wait_for(asking, 60)
        assert transport.connected_url not in (None, connected)
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert all(isinstance(e, ActorsError) for e in errors)
        assert await ref.ask("after", timeout=5) == "after"
        assert system.event_counts()["disconnected"] >= 1


async def test_a_durable_mailbox_with_three_replicas_loses_nothing_acknowledged_with_a_node(
    cluster: NatsCluster, tenant: str
) -> None:
    got = Keep.got = set()

    settings = Settings(nats_urls=tuple(cluster.urls), durable_replicas=3, durable_ack_wait=2.0)
    async with ActorSystem(tenant, settings=settings) as system:
        ref = await system.spawn(Keep, name="keeper", mailbox="durable")
        transport = system.transport
        assert isinstance(transport, NatsTransport)
        js = transport.client.jetstream()
        assert (await js.stream_info(agents_stream(tenant))).config.num_replicas == 3
        # The dead letters are kept on three nodes as well.
        assert (await js.stream_info(f"SDK_DLQ_{tenant}")).config.num_replicas == 3
        acked: set[int] = set()
        loop = asyncio.get_running_loop()
        for i in range(300):
            if i == 100:
                cluster.kill(1)  # one of three nodes goes, mid-stream
            give_up = loop.time() + 20
            while loop.time() < give_up:  # a publisher that retries what was not acked
                try:
                    await ref.tell(i)
                    acked.add(i)
                    break
                except ActorsError:
                    await asyncio.sleep(0.2)  # reconnecting, or the stream re-electing
        await wait_for(lambda: acked <= got, 60, "every acknowledged message handled")
        assert len(acked) == 300, f"only {len(acked)} acknowledged"


async def test_a_durable_tell_while_the_stream_leader_is_elected_is_a_connection_lost(
    cluster: NatsCluster, tenant: str
) -> None:
    """Before: NoResponders ('spawn the agent') for 4-8 s after the leader was killed."""
    got = Keep.got = set()

    settings = Settings(nats_urls=tuple(cluster.urls), durable_replicas=3)
    async with ActorSystem(tenant, settings=settings) as owner:
        await owner.spawn(Keep, name="keeper", mailbox="durable")
        transport = owner.transport
        assert isinstance(transport, NatsTransport)
        info = await transport.client.jetstream().stream_info(agents_stream(tenant))
        assert info.cluster is not None and info.cluster.leader is not None
        leader = next(
            i for i, n in enumerate(cluster.nodes) if n.server_name == info.cluster.leader
        )
        other = next(n.url for i, n in enumerate(cluster.nodes) if i != leader)
        # The publisher stays connected through the election: its node is not the leader.
        publisher = Settings(nats_urls=(other,), durable_replicas=3)
        async with ActorSystem(tenant, settings=publisher, client_id="pub") as system:
            ref = system.ref("keeper", mailbox="durable")
            acked: set[int] = set()
            errors: list[ActorsError] = []
            loop = asyncio.get_running_loop()
            for i in range(400):
                if i == 50:
                    cluster.kill(leader)
                give_up = loop.time() + 30
                while loop.time() < give_up:
                    try:
                        await ref.tell(i)
                        acked.add(i)
                        break
                    except ActorsError as exc:
                        errors.append(exc)
                        await asyncio.sleep(0.1)
            assert len(acked) == 400
            assert not [e for e in errors if isinstance(e, NoResponders)], errors[:3]
            assert all(isinstance(e, ConnectionLost) for e in errors), errors[:3]
        await wait_for(lambda: acked <= got, 60, "every acknowledged message handled")
