"""Connecting the NATS transport: TLS that fails, TLS that is missing, malformed URLs.

Every attempt here must end, typed, within a bound: each test runs under an asyncio
timeout, so a regression fails instead of hanging. Servers run generated configurations
(``tests/tls.py``); their monitoring endpoint shows whether a client is left connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from motadata_actors import Actor, ActorSystem, ConfigError, ConnectionLost, Context, Settings
from motadata_actors.integrations import create_nats_client
from motadata_actors.mailbox import NatsAuth, NatsServer, NatsTransport
from motadata_actors.mailbox import _natspy as natspy
from motadata_actors.mailbox._js_dead_letters import JetStreamDeadLetters
from motadata_actors.mailbox._js_values import NoAnswer, NoJetStream

from ..conftest import wait_for
from ..tls import (
    client_count,
    configured_server,
    make_certificates,
    open_sockets,
    server_conf,
    wait_for_no_clients,
)

pytestmark = pytest.mark.anyio

PASSWORD = f"pw-{uuid.uuid4().hex}"
BOUND = 20.0  # seconds any failed start may take here, all retries included


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(
    certificates: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatsServer]:
    """A server that requires TLS (its certificate signed by ``ca``), with a password user."""
    conf = server_conf(certificates, extra=f'authorization {{ user: "u", password: "{PASSWORD}" }}')
    with configured_server(
        tmp_path_factory.mktemp("tls"), conf, name=f"tls-{uuid.uuid4().hex[:8]}"
    ) as server:
        assert server.url.startswith("tls://127.0.0.1:")
        yield server


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A server without TLS, with a password user."""
    conf = server_conf(extra=f'authorization {{ user: "u", password: "{PASSWORD}" }}')
    with configured_server(
        tmp_path_factory.mktemp("plain"), conf, name=f"plain-{uuid.uuid4().hex[:8]}"
    ) as server:
        assert server.url.startswith("nats://127.0.0.1:")
        yield server


def address(server: NatsServer, scheme: str) -> str:
    return f"{scheme}://{server.url.partition('://')[2]}"


@contextlib.asynccontextmanager
async def nothing_left_behind() -> AsyncIterator[None]:
    """Fail if the block leaves an asyncio task running or a socket open in this process."""
    gc.collect()
    await asyncio.sleep(0)
    tasks = asyncio.all_tasks()
    sockets = open_sockets()
    yield
    gc.collect()
    for _ in range(50):  # closing transports release their sockets on the next loop turns
        if open_sockets() <= sockets:
            break
        await asyncio.sleep(0.02)
    left = [t for t in asyncio.all_tasks() - tasks if not t.done()]
    assert not left, f"tasks left running: {left}"
    assert open_sockets() <= sockets, "a socket was left open"


# --- an untrusted certificate fails the start, quickly and typed --------------------------


@pytest.mark.parametrize(
    ("scheme", "ca"),
    [
        ("nats", None),  # a plain URL, upgraded because the server requires TLS
        ("tls", None),  # no CA: the system's CAs do not know the test CA
        ("tls", "wrong-ca"),  # a CA that did not sign the server's certificate
    ],
)
async def test_an_untrusted_server_certificate_fails_the_start_naming_the_setting(
    tls_server: NatsServer,
    certificates: dict[str, str],
    scheme: str,
    ca: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"NATS_URL": address(tls_server, scheme), "NATS_USER": "u", "NATS_PASSWORD": PASSWORD}
    if ca is not None:
        env["NATS_TLS_CA"] = certificates[ca]
    loop = asyncio.get_running_loop()
    async with nothing_left_behind():
        started = loop.time()
        async with asyncio.timeout(BOUND):
            with pytest.raises(ConnectionLost, match="NATS_TLS_CA") as info:
                async with ActorSystem("t", settings=Settings.from_env(env)):
                    pass
        assert loop.time() - started < 10.0
    assert "certificate verify failed" in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in caplog.text
    await wait_for_no_clients(tls_server)


async def test_an_untrusted_certificate_fails_a_transport_that_reconnects(
    tls_server: NatsServer,
) -> None:
    # The same through the transport alone, reconnecting on (as every system's is).
    async with nothing_left_behind():
        async with asyncio.timeout(BOUND):
            transport = NatsTransport([tls_server.url], reconnect=True)
            with pytest.raises(ConnectionLost, match="NATS_TLS_CA"):
                await transport.start()
            await transport.aclose()
    await wait_for_no_clients(tls_server)


async def test_a_trusted_certificate_connects(
    tls_server: NatsServer, certificates: dict[str, str]
) -> None:
    env = {
        "NATS_URL": address(tls_server, "tls"),
        "NATS_TLS_CA": certificates["ca"],
        "NATS_USER": "u",
        "NATS_PASSWORD": PASSWORD,
    }
    async with asyncio.timeout(BOUND), ActorSystem("t", settings=Settings.from_env(env)) as system:
        ref = await system.spawn(Echo, name="echo")
        assert await ref.ask("over tls", timeout=5) == "over tls"
        assert await client_count(tls_server) == 1
    await wait_for_no_clients(tls_server)


@pytest.mark.parametrize(
    "closed", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset by peer")]
)
def test_a_tls_connection_closed_after_the_handshake_names_the_certificate_settings(
    certificates: dict[str, str], closed: OSError
) -> None:
    """Under TLS 1.3 the server's alert may never be read: our CONNECT meets a closed socket.

    Which of the two a real server shows is a race (the next test); both name the settings.
    """
    nc = natspy.new_client(None)
    tls = NatsTransport(["tls://127.0.0.1:14222"], auth=NatsAuth(tls_ca=certificates["ca"]))
    assert "NATS_TLS_CERT/NATS_TLS_KEY" in tls._connect_failure(closed, nc, False)
    with_cert = NatsTransport(["tls://127.0.0.1:14222"], auth=NatsAuth(
        tls_ca=certificates["ca"], tls_cert=certificates["client"],
        tls_key=certificates["client-key"],
    ))  # fmt: skip
    assert "NATS_TLS_CERT" not in with_cert._connect_failure(closed, nc, False)
    plain = NatsTransport(["nats://127.0.0.1:14222"])
    assert "NATS_TLS_CERT" not in plain._connect_failure(closed, nc, False)


async def test_a_missing_client_certificate_names_the_certificate_settings(
    certificates: dict[str, str], tmp_path: Path
) -> None:
    conf = server_conf(certificates, verify=True)
    with configured_server(tmp_path, conf, name=f"mtls-{uuid.uuid4().hex[:8]}") as server:
        async with nothing_left_behind():
            async with asyncio.timeout(BOUND):
                transport = NatsTransport([server.url], auth=NatsAuth(tls_ca=certificates["ca"]))
                with pytest.raises(ConnectionLost, match="NATS_TLS_CERT"):
                    await transport.start()
                await transport.aclose()
        await wait_for_no_clients(server)


async def test_a_reconnect_that_meets_an_untrusted_certificate_does_not_hang_the_close(
    certificates: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The server goes away and an impostor (a certificate of another CA) takes its port:
    # every reconnect fails its handshake, and closing must still return at once.
    caplog.set_level(logging.INFO, logger="motadata_actors.nats")
    name = f"real-{uuid.uuid4().hex[:8]}"
    async with nothing_left_behind(), asyncio.timeout(BOUND):
        with configured_server(tmp_path, server_conf(certificates), name=name) as server:
            port = int(server.url.rpartition(":")[2])
            transport = NatsTransport([server.url], auth=NatsAuth(tls_ca=certificates["ca"]))
            await transport.start()
        impostor_conf = server_conf(certificates, cert="wrong-server")
        with configured_server(tmp_path, impostor_conf, name="impostor", port=port) as impostor:
            await wait_for(
                lambda: "certificate verify failed" in caplog.text, 10, "a failed reconnect"
            )
            async with asyncio.timeout(3):
                await transport.aclose()
            await wait_for_no_clients(impostor)


# --- TLS asked for, but the server does not offer it: refused, nothing sent ---------------


class PlainListener:
    """A plaintext NATS look-alike: sends an INFO without TLS and records what it gets."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        info = {
            "server_id": "fake",
            "server_name": "fake",
            "version": "2.15.0",
            "proto": 1,
            "headers": True,
            "max_payload": 1048576,
            "auth_required": True,
        }
        writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
        await writer.drain()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(5):
                while data := await reader.read(4096):
                    self.received += data
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize("how", ["tls:// URL", "NATS_TLS_CA"])
async def test_tls_is_never_given_up_for_plaintext_and_no_credential_is_sent(
    certificates: dict[str, str], how: str
) -> None:
    listener = PlainListener()
    async with listener as where:
        env = {"NATS_USER": "u", "NATS_PASSWORD": PASSWORD}
        if how == "NATS_TLS_CA":
            env |= {"NATS_URL": f"nats://{where}", "NATS_TLS_CA": certificates["ca"]}
        else:
            env |= {"NATS_URL": f"tls://{where}"}
        async with nothing_left_behind(), asyncio.timeout(BOUND):
            with pytest.raises(ConnectionLost, match="does not offer TLS") as info:
                async with ActorSystem("t", settings=Settings.from_env(env)):
                    pass
    assert listener.connections >= 1
    assert bytes(listener.received) == b"", "bytes were sent over a plaintext connection"
    assert how in str(info.value)


async def echo_over(env: dict[str, str], text: str) -> Any:
    async with ActorSystem("t", settings=Settings.from_env(env)) as system:
        ref = await system.spawn(Echo, name="echo")
        return await ref.ask(text, timeout=5)


async def test_a_tls_url_refuses_a_real_server_without_tls(plain_server: NatsServer) -> None:
    env = {"NATS_URL": address(plain_server, "tls"), "NATS_USER": "u", "NATS_PASSWORD": PASSWORD}
    async with nothing_left_behind(), asyncio.timeout(BOUND):
        with pytest.raises(ConnectionLost, match="does not offer TLS") as info:
            await echo_over(env, "in the clear")
    assert PASSWORD not in str(info.value)
    await wait_for_no_clients(plain_server)
    # The same server over nats:// (no TLS setting) is plaintext by choice, and works.
    env["NATS_URL"] = address(plain_server, "nats")
    async with asyncio.timeout(BOUND):
        assert await echo_over(env, "plain") == "plain"


async def test_tls_settings_with_a_websocket_url_are_refused(
    certificates: dict[str, str],
) -> None:
    transport = NatsTransport(["ws://127.0.0.1:1"], auth=NatsAuth(tls_ca=certificates["ca"]))
    with pytest.raises(ConfigError, match="wss://"):
        await transport.start()


def test_a_client_key_without_its_certificate_is_a_config_error(
    certificates: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match="NATS_TLS_KEY is set without NATS_TLS_CERT"):
        NatsAuth(tls_key=certificates["client-key"]).connect_options()


# --- a malformed URL never shows its secret ----------------------------------------------


SECRET = f"s3cret-{uuid.uuid4().hex}"
MALFORMED = [
    f"nats://user:{SECRET}@127.0.0.1:notaport",
    f"nats://user:{SECRET}@127.0.0.1:99999",
    f"nats://user:{SECRET}@:14222",
    f"{SECRET}@",
    f"nats://{SECRET}@[::1",
    f"nats://user:{SECRET}/x@127.0.0.1:14222",
]


@pytest.mark.parametrize("url", MALFORMED)
async def test_a_malformed_server_url_is_a_config_error_without_its_secret(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = NatsTransport([url], reconnect=False)
    async with asyncio.timeout(BOUND):
        with pytest.raises(ConfigError) as info:
            await transport.start()
        client = create_nats_client(url=url)
        with pytest.raises(ConfigError) as seed_api:
            await client.connect()
    for text in (str(info.value), str(seed_api.value), transport.description, caplog.text):
        assert SECRET not in text
    assert "***" in str(info.value)


class _Silent:
    """JetStream whose API does not answer ``times`` times (the server died, or is busy)."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.asked = 0

    async def add_stream(self, spec: Any) -> None:
        self.asked += 1
        if self.asked <= self.times:
            raise NoAnswer("cannot create stream: JetStream did not answer in time")


class _Off:
    """JetStream switched off on the server."""

    async def add_stream(self, spec: Any) -> None:
        raise NoJetStream("JetStream is not enabled")


async def test_a_dead_letter_stream_nobody_answers_for_is_a_connection_error_not_no_jetstream() -> (
    None
):
    # Taken for "no JetStream" before: the system then kept no dead letter for its life.
    def store(js: object) -> JetStreamDeadLetters:
        return JetStreamDeadLetters(js, lambda: "nats://127.0.0.1:1")  # type: ignore[arg-type]

    gone = _Silent(times=100)
    with pytest.raises(ConnectionLost, match="did not answer"):
        await store(gone).keep("acme", max_messages=10, max_age=60.0)
    assert gone.asked == 3  # asked again twice first
    busy = _Silent(times=2)  # a cluster electing its leaders: answers the third time
    assert await store(busy).keep("acme", max_messages=10, max_age=60.0)
    assert (
        await store(_Off()).keep("acme", max_messages=10, max_age=60.0) is False
    )  # published only
