"""Quotas per tenant, written into the generated configuration and enforced by nats-server.

Every server here runs a configuration from ``server_config`` (or the ``tenants config``
command); each quota is used up for real, and the error must name it.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import nats.js.errors
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConfigError,
    Context,
    MessageTooLarge,
    QuotaExceeded,
    Settings,
)
from motadata_actors._status_cli import show_status, tenant_quotas_from
from motadata_actors._tenants import parse_tenant_quotas
from motadata_actors.mailbox import (
    Mailbox,
    NatsAuth,
    NatsServer,
    NatsTransport,
    Quotas,
    TenantUser,
    parse_quotas,
    read_quotas,
    server_config,
    tenant_quotas,
)
from motadata_actors.mailbox import _natspy as natspy
from motadata_actors.mailbox._quotas import parse_size

from ..conftest import connect

pytestmark = pytest.mark.anyio

KiB = 1024
QUOTAS = {
    "conn": Quotas(connections=2),
    "subs": Quotas(subscriptions=3),
    "pay": Quotas(payload=4 * KiB),
    "disk": Quotas(storage=96 * KiB),
    "few": Quotas(consumers=3),
    "mem": Quotas(memory=64 * KiB),
    "free": Quotas(),
}
PASSWORDS = {t: f"pw-{t}-{uuid.uuid4().hex}" for t in QUOTAS}


# -- values and parsing, no server ----------------------------------------------------------


def test_quotas_parse_with_units_and_unlimited() -> None:
    q = parse_quotas("connections=50, subscriptions=1000,payload=64KiB,storage=1.5GB,memory=0")
    assert q == Quotas(
        connections=50, subscriptions=1000, payload=65536, storage=1_500_000_000, memory=0
    )
    assert parse_quotas("streams=unlimited,consumers=7") == Quotas(consumers=7)
    assert [parse_size(s) for s in ("10", "1KB", "1kib", "2 MiB", "1TB")] == [
        10, 1000, 1024, 2 * 1024**2, 10**12,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("connections", "write key=value"),
        ("sockets=3", "unknown quota 'sockets'"),
        ("connections=3,connections=4", "given twice"),
        ("connections=lots", "not a whole number"),
        ("connections=0", "below 1"),
        ("storage=12XB", "not a size"),
        ("payload=1.5B", "whole number of bytes"),
        ("storage=-5", "not a size"),
    ],
)
def test_bad_quotas_are_config_errors_saying_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_quotas(text)


def test_the_configuration_carries_the_quotas_and_reads_back() -> None:
    users = [
        TenantUser("a", password="p", quotas=Quotas(connections=5, storage=10**9, streams=9)),
        TenantUser("b", password="q"),
    ]
    text = server_config(users)
    assert 'limits: {"max_connections": 5}' in text
    assert 'jetstream: {"max_file": 1000000000, "max_streams": 9}' in text
    assert read_quotas(text) == {"a": users[0].quotas, "b": Quotas()}
    with pytest.raises(ConfigError, match="JetStream quotas need jetstream=True"):
        server_config(users, jetstream=False)
    assert "limits" in server_config([TenantUser("a", password="p", quotas=Quotas(payload=9))],
                                     jetstream=False)  # fmt: skip


def test_command_line_quotas_per_tenant_and_for_all() -> None:
    got = parse_tenant_quotas(
        ["acme:storage=1GiB", "connections=10", "acme:connections=50"], ["acme", "shop"]
    )
    assert got == {
        "acme": Quotas(connections=50, storage=1024**3),
        "shop": Quotas(connections=10),
    }
    with pytest.raises(ConfigError, match="tenant 'bank', which is not given"):
        parse_tenant_quotas(["bank:connections=1"], ["acme"])


# -- enforced by a real server -------------------------------------------------------------


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    users = [TenantUser(t, password=PASSWORDS[t], quotas=q) for t, q in QUOTAS.items()]
    conf = tmp_path_factory.mktemp("quotas") / "tenants.conf"
    conf.write_text(server_config(users))
    with NatsServer(server_name=f"quotas-{uuid.uuid4().hex[:8]}", args=["-c", str(conf)]) as s:
        yield s


def settings(server: NatsServer, tenant: str) -> Settings:
    return Settings(nats_urls=(server.url,), nats_user=tenant, nats_password=PASSWORDS[tenant])


async def tenant_connection(server: NatsServer, tenant: str) -> NatsTransport:
    auth = NatsAuth(user=tenant, password=PASSWORDS[tenant])
    return await connect(server, inbox_prefix=f"_INBOX_{tenant}", auth=auth)


@pytest.fixture
async def transports() -> AsyncIterator[list[NatsTransport]]:
    opened: list[NatsTransport] = []
    try:
        yield opened
    finally:
        for t in opened:
            await t.aclose()


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class Stuck(Actor):
    """Takes one message and never finishes it, so the rest stay in the stream."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        await anyio.sleep_forever()


async def test_a_start_past_the_connections_quota_names_it(
    quota_server: NatsServer, transports: list[NatsTransport]
) -> None:
    for _ in range(2):
        transports.append(await tenant_connection(quota_server, "conn"))
    usage = await tenant_quotas(transports[0], "conn")
    assert usage["connections"].used == 2
    with pytest.raises(QuotaExceeded) as info:
        async with ActorSystem("conn", settings=settings(quota_server, "conn")):
            raise AssertionError("started past the connections quota")
    assert (info.value.quota, info.value.tenant) == ("connections", "conn")
    assert "--quota conn:connections=" in str(info.value)
    await transports.pop().aclose()  # room again: the server counts live connections
    async with ActorSystem("conn", settings=settings(quota_server, "conn")) as system:
        ref = await system.spawn(Echo, name="echo")
        assert await ref.ask("in", timeout=5) == "in"


async def test_a_subscription_past_the_quota_names_it_and_the_connection_stays(
    quota_server: NatsServer, transports: list[NatsTransport]
) -> None:
    transport = await tenant_connection(quota_server, "subs")
    transports.append(transport)
    mailboxes = [Mailbox[Any](10) for _ in range(4)]
    subs = [
        await transport.subscribe(f"sdk.events.e{i}.subs", mailbox=mailboxes[i]) for i in range(3)
    ]
    with pytest.raises(QuotaExceeded) as info:
        await transport.subscribe("sdk.events.e3.subs", mailbox=mailboxes[3])
    assert (info.value.quota, info.value.tenant) == ("subscriptions", "subs")
    assert "per connection" in str(info.value)
    # nats-py would have closed the connection; the server did not, and neither do we.
    await transport.publish("sdk.events.e0.subs", b"still here")
    with anyio.fail_after(5):
        assert (await mailboxes[0].receive()).data == b"still here"
    await subs[2].unsubscribe()
    await transport.subscribe("sdk.events.e3.subs", mailbox=mailboxes[3])  # room again


async def test_the_payload_quota_is_the_size_limit_and_never_reaches_the_wire(
    quota_server: NatsServer, transports: list[NatsTransport]
) -> None:
    transport = await tenant_connection(quota_server, "pay")
    transports.append(transport)
    free = await tenant_connection(quota_server, "free")
    transports.append(free)
    assert (transport.max_payload, free.max_payload) == (4 * KiB, 1024 * KiB)
    assert transport.account == "TENANT_pay"
    with pytest.raises(MessageTooLarge, match="limit of 4096 bytes"):
        await transport.publish("sdk.events.big.pay", b"x" * 5000)
    async with ActorSystem("pay", settings=settings(quota_server, "pay")) as system:
        ref = await system.spawn(Echo, name="echo")
        with pytest.raises(MessageTooLarge):
            await ref.ask("y" * 5000, timeout=5)
        assert await ref.ask("small", timeout=5) == "small"  # the connection is intact
    usage = await tenant_quotas(transport, "pay")
    assert usage["payload"].limit == 4 * KiB


async def test_a_durable_tell_past_the_storage_quota_names_it(
    quota_server: NatsServer, tmp_path: Path
) -> None:
    async with ActorSystem("disk", settings=settings(quota_server, "disk")) as system:
        await system.spawn(Stuck, name="stuck", mailbox="durable")
        ref = system.ref("stuck", mailbox="durable")

        async def fill() -> None:
            for _ in range(200):  # 400 KB: past the 96 KiB quota
                await ref.tell("z" * 2000)

        with pytest.raises(QuotaExceeded) as info:
            await fill()
        assert (info.value.quota, info.value.tenant) == ("jetstream storage", "disk")
        assert "--quota disk:storage=" in str(info.value)
        usage = await tenant_quotas(system.transport, "disk")  # type: ignore[arg-type]
        storage = usage["jetstream storage"]
        assert storage.limit == 96 * KiB
        assert storage.used is not None and storage.used > 90 * KiB
        # status shows use against the limits, those from the configuration too
        conf = tmp_path / "tenants.conf"
        conf.write_text(server_config([TenantUser("disk", password="p", quotas=Quotas(
            connections=7, storage=96 * KiB))]))  # fmt: skip
        out = io.StringIO()
        await show_status(
            settings(quota_server, "disk"), "disk", 0.3, out,
            quotas=tenant_quotas_from(str(conf), "disk"),
        )  # fmt: skip
    text = out.getvalue()
    assert "quotas (account TENANT_disk): use / limit" in text, text
    connections = next(line for line in text.splitlines() if "connections" in line)
    assert connections.split()[1:4] == ["2", "/", "7"], text  # the system's and status'
    storage_line = next(line for line in text.splitlines() if "jetstream storage" in line)
    assert "/ 96.0 KiB" in storage_line, text


async def test_a_durable_agent_past_the_consumers_quota_names_it(
    quota_server: NatsServer,
) -> None:
    async with ActorSystem("few", settings=settings(quota_server, "few")) as system:
        spawned: list[str] = []

        async def spawn_many() -> None:
            for i in range(10):
                await system.spawn(Echo, name=f"keeper{i}", mailbox="durable")
                spawned.append(f"keeper{i}")

        with pytest.raises(QuotaExceeded) as info:
            await spawn_many()
        assert 0 < len(spawned) <= 3
        assert await system.ref(spawned[0], mailbox="durable").ask("on", timeout=5) == "on"
        assert (info.value.quota, info.value.tenant) == ("jetstream consumers", "few")
        usage = await tenant_quotas(system.transport, "few")  # type: ignore[arg-type]
        assert usage["jetstream consumers"].used == usage["jetstream consumers"].limit == 3


async def test_a_memory_stream_past_the_memory_quota_names_it(
    quota_server: NatsServer, transports: list[NatsTransport]
) -> None:
    # Every stream of this package is on disk: a foreign use of the connection makes one.
    transport = await tenant_connection(quota_server, "mem")
    transports.append(transport)
    with pytest.raises(nats.js.errors.APIError) as refused:
        await transport.client.jetstream().add_stream(
            name="M", subjects=["sdk.events.m.mem"], storage="memory", max_bytes=128 * KiB
        )
    error = natspy._js_error(refused.value, "create stream M", transport.client)
    assert isinstance(error, QuotaExceeded)
    assert (error.quota, error.tenant) == ("jetstream memory", "mem")
    assert "--quota mem:memory=" in str(error)


async def test_use_of_a_tenant_without_quotas_shows_them_unlimited(
    quota_server: NatsServer, transports: list[NatsTransport]
) -> None:
    transport = await tenant_connection(quota_server, "free")
    transports.append(transport)
    usage = await tenant_quotas(transport, "free")
    assert usage.account == "TENANT_free"
    assert usage["connections"].used == 1
    assert usage["jetstream storage"].limit is None
    assert usage["connections"].limit is None and "not told" in usage["connections"].note
    assert "?" in next(line for line in usage.lines() if "connections" in line)
    assert usage.as_dict()["quotas"][0]["quota"] == "connections"


async def test_the_tenants_command_writes_enforced_quotas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from motadata_actors.__main__ import main

    conf = tmp_path / "tenants.conf"
    argv = ["tenants", "config", "--tenant", "shop", "--out", str(conf)]
    assert main([*argv, "--quota", "shop:connections=1,payload=2KiB"]) == 0
    printed = capsys.readouterr().out
    assert "# quotas: connections=1, payload=2048" in printed
    password = printed.split("NATS_PASSWORD=")[1].split()[0]
    with NatsServer(server_name=f"cli-{uuid.uuid4().hex[:8]}", args=["-c", str(conf)]) as s:
        env = {"NATS_URL": s.url, "NATS_USER": "shop", "NATS_PASSWORD": password}
        async with ActorSystem("shop", settings=Settings.from_env(env)) as system:
            assert system.transport.max_payload == 2048  # type: ignore[attr-defined]
            with pytest.raises(QuotaExceeded, match="connections"):
                async with ActorSystem("shop", settings=Settings.from_env(env)):
                    pass
    assert main([*argv, "--quota", "shop:connections=many"]) == 1
    assert "not a whole number" in capsys.readouterr().err
