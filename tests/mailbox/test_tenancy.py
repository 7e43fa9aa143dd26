"""Tenant isolation enforced by nats-server itself, with the configuration we generate.

Every server here runs the generated configuration (one account and one confined user per
tenant); every connection first checks it reached that very server by its server_name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
import nats.js.errors
import nkeys
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConnectionLost,
    Context,
    Settings,
    TenantError,
)
from motadata_actors.mailbox import (
    Mailbox,
    NatsAuth,
    NatsServer,
    NatsTransport,
    TenantUser,
    server_config,
)

from ..conftest import connect, wait_for
from ..tls import make_certificates

pytestmark = pytest.mark.anyio

PASSWORDS = {"a": f"pw-a-{uuid.uuid4().hex}", "b": f"pw-b-{uuid.uuid4().hex}"}
SEED = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
NKEY = nkeys.from_seed(SEED).public_key.decode()
TOKEN = f"tok-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def tenant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server running the generated configuration for tenants a, b and c."""
    users = [
        TenantUser("a", password=PASSWORDS["a"]),
        TenantUser("b", password=PASSWORDS["b"]),
        TenantUser("c", nkey=NKEY),
    ]
    conf = tmp_path_factory.mktemp("tenancy") / "tenants.conf"
    conf.write_text(server_config(users))
    with NatsServer(server_name=f"tenancy-{uuid.uuid4().hex[:8]}", args=["-c", str(conf)]) as s:
        yield s


def auth(tenant: str) -> NatsAuth:
    if tenant == "c":
        return NatsAuth(nkey_seed=SEED.decode())
    return NatsAuth(user=tenant, password=PASSWORDS[tenant])


def settings(server: NatsServer, tenant: str) -> Settings:
    extra: dict[str, Any] = (
        {"nats_nkey_seed": SEED.decode()}
        if tenant == "c"
        else {"nats_user": tenant, "nats_password": PASSWORDS[tenant]}
    )
    return Settings(nats_urls=(server.url,), **extra)


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


async def test_each_tenant_works_normally_inside_its_own_account(tenant_server: NatsServer) -> None:
    for tenant in ("a", "c"):  # a password user and an nkey user
        transport = await connect(tenant_server, inbox_prefix=f"_INBOX_{tenant}", auth=auth(tenant))
        async with ActorSystem(tenant, transport=transport) as system:
            core = await system.spawn(Echo, name="echo")
            durable = await system.spawn(Echo, name="keeper", mailbox="durable")
            assert await core.ask("hello", timeout=5) == "hello"
            assert await durable.ask("kept", timeout=5) == "kept"  # JetStream API allowed


async def test_large_bodies_travel_through_the_tenants_object_store_in_its_account(
    tenant_server: NatsServer,
) -> None:
    transport = await connect(tenant_server, inbox_prefix="_INBOX_a", auth=auth("a"))
    document = b"x" * 300_000
    async with ActorSystem(
        "a", transport=transport, settings=Settings(claim_above=64 * 1024)
    ) as system:
        echo = await system.spawn(Echo, name="echo")
        assert await echo.ask(document, timeout=10) == document  # $O.SDK_OBJECTS_a.> allowed


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.fixture(scope="module")
def no_status_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A server whose one user may do everything but serve ``sdk.system.*`` (status)."""
    conf = tmp_path_factory.mktemp("nostatus") / "server.conf"
    conf.write_text(
        'authorization { users = [ { user: "u", password: "p", '
        'permissions: { subscribe: { deny: ["sdk.system.>"] } } } ] }\n'
    )
    with NatsServer(server_name=f"nostatus-{uuid.uuid4().hex[:8]}", args=["-c", str(conf)]) as s:
        yield s


async def test_a_refused_entry_releases_everything_and_raises_only_the_typed_error(
    no_status_server: NatsServer,
) -> None:
    """Entry fails late (the status subject is refused, after the task group): nothing leaks."""
    refused = Settings(nats_urls=(no_status_server.url,), nats_user="u", nats_password="p")
    async with ActorSystem("a", settings=Settings()) as outer:  # its own embedded server
        await outer.spawn(Echo, name="echo")
        await wait_for(  # a transient task of the outer system's own start
            lambda: all(t.get_name() != "schemas" for t in asyncio.all_tasks()), 10,
            "the outer system to publish its schemas",
        )  # fmt: skip
        tasks, sockets = len(asyncio.all_tasks()), open_sockets()
        for _ in range(3):
            with pytest.raises(TenantError, match=r"sdk\.system\.b"):
                async with ActorSystem("b", settings=refused):
                    raise AssertionError("entered although the status subject is refused")
        assert len(asyncio.all_tasks()) == tasks, "a failed entry left tasks running"
        assert open_sockets() == sockets, "a failed entry left a connection open"
        assert await outer.ref("echo").ask("still here", timeout=5) == "still here"
    # The enclosing system exits cleanly (before: a RuntimeError about cancel scopes).


async def test_credentials_of_another_tenant_fail_at_connect_naming_the_inbox(
    tenant_server: NatsServer,
) -> None:
    """Tenant b's system with a's user: its reply inbox is refused; said at once, not after
    a JetStream request's timeout (and not as 'no JetStream')."""
    with anyio.fail_after(3):
        with pytest.raises(TenantError, match="reply inbox _INBOX_b"):
            async with ActorSystem("b", settings=settings(tenant_server, "a")):
                raise AssertionError("entered with another tenant's credentials")


async def test_a_tenant_cannot_subscribe_to_another_tenants_subjects(
    tenant_server: NatsServer,
) -> None:
    transport = await connect(tenant_server, inbox_prefix="_INBOX_a", auth=auth("a"))
    try:
        for subject in ("sdk.agent.*.y.b", "sdk.events.*.b", "_INBOX_b.>", "sdk.dlq.*.b", ">"):
            with pytest.raises(TenantError, match="refused a subscription"):
                await transport.subscribe(subject, mailbox=Mailbox(10))
        # Its own subjects still work on the same connection afterwards.
        await transport.subscribe("sdk.agent.*.y.a", mailbox=Mailbox(10))
    finally:
        await transport.aclose()


async def test_a_raw_client_with_one_tenants_credentials_cannot_reach_another_tenant(
    tenant_server: NatsServer,
) -> None:
    async with ActorSystem("b", settings=settings(tenant_server, "b")) as b:
        await b.spawn(Echo, name="y")
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        raw = await nats.connect(
            tenant_server.url, user="a", password=PASSWORDS["a"], error_cb=on_error
        )
        try:
            assert raw._server_info["server_name"] == tenant_server.server_name
            await raw.publish("sdk.agent.x.y.b", b'"forged"')
            await raw.subscribe("sdk.agent.*.y.b")
            for _ in range(100):  # the refusals come back asynchronously
                if len(errors) >= 2:
                    break
                await asyncio.sleep(0.05)
            refused = [str(e).lower() for e in errors]
            assert any("permissions violation for publish" in e for e in refused), refused
            assert any("permissions violation for subscription" in e for e in refused), refused
        finally:
            await raw.close()
        assert await b.ref("y").ask("real", timeout=5) == "real"
        [stats] = b.statistics()
        assert stats.handled == 1  # the forged message never arrived


async def test_our_client_reports_a_refused_publish_as_a_tenant_error(
    tenant_server: NatsServer,
) -> None:
    transport = await connect(tenant_server, inbox_prefix="_INBOX_a", auth=auth("a"))
    try:
        with pytest.raises(TenantError, match=re.escape("refused publishing to 'sdk.agent.x.y.b'")):
            await transport.request("sdk.agent.x.y.b", b'"hi"', timeout=1)
    finally:
        await transport.aclose()


async def test_a_tenant_cannot_read_another_tenants_streams(tenant_server: NatsServer) -> None:
    async with ActorSystem("b", settings=settings(tenant_server, "b")) as b:
        await b.spawn(Echo, name="vault", mailbox="durable")
        raw = await nats.connect(
            tenant_server.url, user="a", password=PASSWORDS["a"], inbox_prefix="_INBOX_a"
        )
        try:
            assert raw._server_info["server_name"] == tenant_server.server_name
            js = raw.jetstream()
            for stream in ("SDK_AGENTS_b", "SDK_DLQ_b"):
                with pytest.raises(nats.js.errors.NotFoundError):
                    await js.stream_info(stream)  # another account: not even visible
        finally:
            await raw.close()


async def test_wrong_credentials_fail_clearly_and_no_secret_is_shown(
    tenant_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{uuid.uuid4().hex}"
    for bad in (
        NatsAuth(user="a", password=wrong),
        NatsAuth(nkey_seed=nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()),
        NatsAuth(),
    ):
        transport = NatsTransport([tenant_server.url], auth=bad, reconnect=False)
        with pytest.raises(ConnectionLost, match="refused the credentials") as info:
            await transport.start()
        for text in (str(info.value), repr(bad), caplog.text):
            assert wrong not in text and PASSWORDS["a"] not in text
            assert (bad.nkey_seed or "no seed") not in text
    s = settings(tenant_server, "a")
    assert PASSWORDS["a"] not in repr(s) and "nats_password='***'" in repr(s)


async def test_token_authentication(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"tok-{uuid.uuid4().hex}"
    with NatsServer(server_name=f"token-{uuid.uuid4().hex[:8]}", args=["--auth", token]) as s:
        transport = await connect(s, auth=NatsAuth(token=token))
        await transport.aclose()
        env = {"NATS_URL": s.url, "NATS_TOKEN": token}
        async with ActorSystem("t", settings=Settings.from_env(env)) as system:
            ref = await system.spawn(Echo, name="echo")
            assert await ref.ask("ok", timeout=5) == "ok"
        with pytest.raises(ConnectionLost, match="NATS_TOKEN") as info:
            await NatsTransport([s.url], auth=NatsAuth(token="nope"), reconnect=False).start()
        assert token not in str(info.value) and token not in caplog.text
        assert token not in repr(Settings.from_env(env))


@pytest.fixture(scope="module")
def token_server() -> Iterator[NatsServer]:
    with NatsServer(server_name=f"token-{uuid.uuid4().hex[:8]}", args=["--auth", TOKEN]) as s:
        yield s


@pytest.mark.parametrize("kind", ["token", "password", "nkey"])
async def test_every_refused_login_names_the_credential_settings(
    kind: str, tenant_server: NatsServer, token_server: NatsServer
) -> None:
    # The server's -ERR and its closing the socket race the client's PING: each attempt's
    # errors come in varying order (and a reset can hide the -ERR). The hint must not.
    if kind == "token":
        server, bad = token_server, NatsAuth(token=f"wrong-{uuid.uuid4().hex}")
    elif kind == "password":
        server, bad = tenant_server, NatsAuth(user="a", password=f"wrong-{uuid.uuid4().hex}")
    else:
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        server, bad = tenant_server, NatsAuth(nkey_seed=seed)
    async with asyncio.timeout(50):
        for _ in range(30):
            transport = NatsTransport([server.url], auth=bad)  # reconnecting, as systems do
            with pytest.raises(ConnectionLost, match="refused the credentials: check NATS_TOKEN"):
                await transport.start()
            await transport.aclose()


async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    args = [
        "--tls", "--tlscert", files["server"], "--tlskey", files["server-key"],
        "--tlsverify", "--tlscacert", files["ca"],
    ]  # fmt: skip
    with NatsServer(server_name=f"tls-{uuid.uuid4().hex[:8]}", args=args) as s:
        good = NatsAuth(tls_ca=files["ca"], tls_cert=files["client"], tls_key=files["client-key"])
        transport = await connect(s, auth=good)
        await transport.aclose()
        env = {
            "NATS_URL": s.url,
            "NATS_TLS_CA": files["ca"],
            "NATS_TLS_CERT": files["client"],
            "NATS_TLS_KEY": files["client-key"],
        }
        async with ActorSystem("t", settings=Settings.from_env(env)) as system:
            ref = await system.spawn(Echo, name="echo")
            assert await ref.ask("over tls", timeout=5) == "over tls"
        with pytest.raises(ConnectionLost, match="NATS_TLS_CA"):
            await NatsTransport([s.url], reconnect=False).start()  # no CA: not trusted


async def test_the_tenants_command_writes_a_working_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from motadata_actors.__main__ import main

    conf = tmp_path / "tenants.conf"
    assert (
        main(["tenants", "config", "--tenant", "shop", "--tenant", "bank", "--out", str(conf)]) == 0
    )
    assert conf.stat().st_mode & 0o777 == 0o600
    printed = capsys.readouterr().out
    creds = dict(
        line.split(" ", 1)[1].split(" NATS_PASSWORD=") for line in printed.splitlines()
        if line.startswith("export NATS_USER=")
    )  # fmt: skip
    creds = {k.removeprefix("NATS_USER="): v for k, v in creds.items()}
    assert set(creds) == {"shop", "bank"}
    with NatsServer(server_name=f"cli-{uuid.uuid4().hex[:8]}", args=["-c", str(conf)]) as s:
        env = {"NATS_URL": s.url, "NATS_USER": "shop", "NATS_PASSWORD": creds["shop"]}
        async with ActorSystem("shop", settings=Settings.from_env(env)) as system:
            ref = await system.spawn(Echo, name="till", mailbox="durable")
            assert await ref.ask("sale", timeout=5) == "sale"
        wrong = {**env, "NATS_PASSWORD": creds["bank"]}
        with pytest.raises(ConnectionLost, match="refused the credentials"):
            async with ActorSystem("shop", settings=Settings.from_env(wrong)):
                pass
    assert main(["tenants", "config", "--tenant", "Bad Tenant", "--out", str(conf)]) == 1
    assert "tenant" in capsys.readouterr().err
