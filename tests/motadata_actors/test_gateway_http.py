"""The HTTP gateway: tenants by token, limits, content negotiation, problem details."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import cbor2
import httpx
import msgpack
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    ConfigError,
    ConnectionLost,
    Context,
    StreamError,
    TransportClosed,
)
from motadata_actors.gateway import Gateway, Limits
from motadata_actors.gateway._http import Admission, Problem, negotiate, problem_for
from motadata_actors.mailbox import NatsServer

from ..conftest import connect

pytestmark = pytest.mark.anyio

TOKEN_A = "token-of-tenant-a-0123456789"
TOKEN_B = "token-of-tenant-b-0123456789"


class Planner(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "fail":
            raise ValueError("no plan for that")
        if msg == "slow":
            await asyncio.sleep(5)
        return {"plan": msg, "by": ctx.actor, "steps": 3}


class Hidden(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return "secret"


@pytest.fixture
async def systems(nats_server: NatsServer) -> AsyncIterator[dict[str, ActorSystem]]:
    """Two tenants on one server, each with a planner and a hidden agent."""
    async with (
        ActorSystem("ta", transport=await connect(nats_server), handle_signals=False) as a,
        ActorSystem("tb", transport=await connect(nats_server), handle_signals=False) as b,
    ):
        for system in (a, b):
            await system.spawn(Planner, name="planner")
            await system.spawn(Hidden, name="hidden")
        yield {"ta": a, "tb": b}


def _client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway.app), base_url="http://127.0.0.1"
    )


async def test_an_ask_over_http_in_each_codec_the_client_accepts(
    systems: dict[str, ActorSystem],
) -> None:
    gateway = Gateway(systems["ta"], expose=["planner"])
    async with _client(gateway) as http:
        r = await http.post("/agents/planner", json="ship it")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"plan": "ship it", "by": "planner", "steps": 3}
        body = msgpack.packb("ship it")
        r = await http.post(
            "/agents/planner", content=body,
            headers={"Content-Type": "application/msgpack", "Accept": "application/cbor"},
        )  # fmt: skip
        assert r.headers["content-type"] == "application/cbor"
        assert cbor2.loads(r.content)["plan"] == "ship it"
        r = await http.post(
            "/agents/planner", json="x",
            headers={"Accept": "text/html;q=1, application/msgpack;q=0.5"},
        )  # fmt: skip
        assert r.headers["content-type"] == "application/msgpack"
        assert (await http.get("/agents")).json() == {"agents": ["planner"]}


async def test_the_tenant_comes_from_the_token_never_from_the_request(
    systems: dict[str, ActorSystem],
) -> None:
    gateway = Gateway(systems, expose=["planner"], tokens={TOKEN_A: "ta", TOKEN_B: "tb"})
    async with _client(gateway) as http:
        r = await http.post("/agents/planner", json="x")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "Unauthorized"
        r = await http.post(
            "/agents/planner", json="x", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}
        )
        assert r.status_code == 401
        for token in (TOKEN_A, TOKEN_B):
            r = await http.post(
                "/agents/planner", json="x",
                headers={"Authorization": f"Bearer {token}", "Sdk-Tenant-Id": "tb"},
            )  # fmt: skip
            assert r.status_code == 200
        # each tenant's planner answered its own asks: the header changed nothing
        stats = {
            t: next(s.handled for s in systems[t].statistics() if s.name == "planner")
            for t in ("ta", "tb")
        }
        assert stats == {"ta": 1, "tb": 1}


async def test_errors_are_problem_details_with_our_type_names(
    systems: dict[str, ActorSystem],
) -> None:
    gateway = Gateway(systems["ta"], expose=["planner"], timeout=0.5)
    async with _client(gateway) as http:
        cases = [
            (("/agents/hidden", b'"x"', {}), 404, "NotFound"),
            (("/agents/planner", b'"fail"', {}), 502, "RemoteError"),
            (("/agents/planner", b'"slow"', {}), 504, "AskTimeout"),
            (("/agents/planner", b"{not json", {}), 400, "DecodeError"),
            (
                ("/agents/planner", b"x", {"Content-Type": "text/plain"}),
                415,
                "UnsupportedMediaType",
            ),
            (("/agents/planner", b'"x"', {"Accept": "text/html"}), 406, "NotAcceptable"),
            (("/agents/planner", b'"x"', {"X-Timeout": "soon"}), 400, "BadRequest"),
        ]
        for (path, body, headers), status, title in cases:
            r = await http.post(
                path, content=body, headers={"Content-Type": "application/json", **headers}
            )
            assert r.status_code == status, (path, body, r.text)
            problem = r.json()
            assert problem["title"] == title
            assert problem["type"] == f"urn:motadata-actors:error:{title}"
            assert problem["status"] == status
            assert "Traceback" not in r.text
        assert "ValueError" in (await http.post("/agents/planner", json="fail")).json()["detail"]


async def test_bodies_over_the_limit_are_refused_before_they_are_read(
    systems: dict[str, ActorSystem],
) -> None:
    gateway = Gateway(systems["ta"], expose=["planner"], limits=Limits(max_body=1000))
    async with _client(gateway) as http:
        r = await http.post("/agents/planner", content=b'"' + b"x" * 2000 + b'"')
        assert r.status_code == 413
        assert r.json()["title"] == "MessageTooLarge"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(10):
                yield b"x" * 500

        r = await http.post("/agents/planner", content=chunks())
        assert r.status_code == 413


async def test_a_client_that_leaves_mid_body_is_a_problem_not_a_traceback(
    systems: dict[str, ActorSystem],
) -> None:
    # Content-Length 100, 3 bytes, gone: Starlette's ClientDisconnect went up to the
    # server, which logged "Exception in ASGI application" with a traceback.
    gateway = Gateway(systems["ta"], expose=["planner"])
    events = [{"type": "http.request", "body": b'"ab', "more_body": True},
              {"type": "http.disconnect"}]  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/agents/planner", "raw_path": b"",
        "root_path": "", "query_string": b"", "scheme": "http", "http_version": "1.1",
        "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    await gateway.app(scope, receive, send)  # raised ClientDisconnect before
    assert sent[0]["status"] == 400
    assert b"left after 3 byte(s)" in sent[1]["body"]


async def test_the_rate_limit_answers_429_with_retry_after(
    systems: dict[str, ActorSystem],
) -> None:
    # One request per 100 s: no token comes back during the test, however slow the machine.
    gateway = Gateway(systems["ta"], expose=["planner"], limits=Limits(rate=0.01, burst=3))
    async with _client(gateway) as http:
        codes = [(await http.post("/agents/planner", json="x")).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200]
        assert codes[3:] == [429, 429]
        r = await http.post("/agents/planner", json="x")
        assert int(r.headers["retry-after"]) >= 90  # the next token, 100 s after the burst


async def test_a_gateway_without_tokens_answers_loopback_names_only(
    systems: dict[str, ActorSystem],
) -> None:
    gateway = Gateway(systems["ta"], expose=["planner"])
    transport = httpx.ASGITransport(app=gateway.app)
    for host, status in (("localhost", 200), ("127.0.0.1", 200), ("evil.example", 403)):
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as http:
            r = await http.post("/agents/planner", json="x")
            assert r.status_code == status, host
    tokened = Gateway(systems["ta"], expose=["planner"], tokens={TOKEN_A: "ta"})
    transport = httpx.ASGITransport(app=tokened.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agents.example") as http:
        r = await http.post(
            "/agents/planner", json="x", headers={"Authorization": f"Bearer {TOKEN_A}"}
        )
        assert r.status_code == 200  # with tokens, any name: the token is the check


def test_the_bucket_refills_with_time() -> None:
    now = [0.0]
    admission = Admission(["t"], None, ["a"], Limits(rate=2, burst=2), clock=lambda: now[0])
    admission.take("c")
    admission.take("c")
    with pytest.raises(Problem) as caught:
        admission.take("c")
    assert caught.value.status == 429
    now[0] = 0.5  # one more request's worth
    admission.take("c")
    admission.take("other")  # buckets are per credential


def test_negotiation_follows_quality_and_wildcards() -> None:
    offered = {"application/json": "json", "application/msgpack": "msgpack"}
    assert negotiate(None, offered) == "json"
    assert negotiate("*/*", offered) == "json"
    assert negotiate("application/msgpack, application/json;q=0.9", offered) == "msgpack"
    assert negotiate("application/json;q=0.1, application/msgpack", offered) == "msgpack"
    with pytest.raises(Problem) as caught:
        negotiate("application/msgpack;q=0, text/html", offered)
    assert caught.value.status == 406
    for odd in ("nan", "inf", "-1", "2"):  # not qualities: refusals (nan was taken)
        with pytest.raises(Problem):
            negotiate(f"application/msgpack;q={odd}", offered)


def test_a_stopping_system_and_a_streaming_agent_are_not_500s() -> None:
    # They came out as 500 Internal Server Error, as if the gateway had failed.
    assert problem_for(TransportClosed("stopped")).status == 503
    assert problem_for(ConnectionLost("gone")).status == 503
    assert problem_for(StreamError("the handler streams")).status == 502


def test_a_gateway_refuses_unsafe_configurations() -> None:
    with pytest.raises(ConfigError, match="expose at least one"):
        Gateway({}, expose=[])
    with pytest.raises(ConfigError, match="several tenants"):
        Admission(["a", "b"], None, ["x"], Limits())
    with pytest.raises(ConfigError, match="at least 16"):
        Admission(["a"], {"short": "a"}, ["x"], Limits())
    with pytest.raises(ConfigError, match="serves not"):
        Admission(["a"], {TOKEN_A: "b"}, ["x"], Limits())
    with pytest.raises(ConfigError, match="positive"):
        Limits(rate=0)


async def test_the_gateway_serves_on_loopback_and_answers_1000_concurrent_asks(
    nats_server: NatsServer, tenant: str
) -> None:
    from motadata_actors import Settings
    from motadata_actors.gateway._serve import serve

    settings = Settings(nats_urls=(nats_server.url,))
    async with ActorSystem(tenant, settings=settings, handle_signals=False) as agents:
        await agents.spawn(Planner, name="planner", concurrency=64)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.ensure_future(
            serve(settings, [tenant], ["planner"], port=0, ready=ready.set_result,
                  limits=Limits(rate=10_000, burst=10_000))
        )  # fmt: skip
        try:
            base = await asyncio.wait_for(ready, 30)
            # aiohttp, not httpx: httpx's pool takes ~30 s to open 100 connections at once
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

                async def ask(i: int) -> tuple[int, Any]:
                    url = f"{base}/agents/planner"
                    async with http.post(url, json=i) as r:
                        return r.status, await r.json()

                replies = await asyncio.gather(*(ask(i) for i in range(1000)))
            assert [status for status, _ in replies] == [200] * 1000
            assert sorted(body["plan"] for _, body in replies) == list(range(1000))
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server


async def test_a_taken_port_is_a_clear_error(nats_server: NatsServer, tenant: str) -> None:
    import socket

    from motadata_actors import Settings
    from motadata_actors.gateway._serve import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"could not listen on 127.0.0.1:{port}: .*in use"):
            await serve(Settings(nats_urls=(nats_server.url,)), [tenant], ["a"], port=port)


async def test_serving_beyond_loopback_needs_tokens() -> None:
    from motadata_actors import Settings
    from motadata_actors.gateway._serve import parse_tokens, serve

    with pytest.raises(ConfigError, match="only with bearer tokens"):
        await serve(Settings(nats_urls=("nats://127.0.0.1:1",)), ["t"], ["a"], host="0.0.0.0")
    assert parse_tokens("ta:abc,tb:def") == {"abc": "ta", "def": "tb"}
    assert parse_tokens("") is None
    with pytest.raises(ConfigError, match="tenant:token"):
        parse_tokens("just-a-token")
    from motadata_actors.gateway._serve import parse_exposed

    names, classes = parse_exposed(["echo", "planner=collections:OrderedDict"])
    assert names == ["echo", "planner"]
    assert classes == {"planner": __import__("collections").OrderedDict}
    with pytest.raises(ConfigError, match="cannot import"):
        parse_exposed(["x=no.such.module:Thing"])


def test_the_cli_says_how_to_run_a_gateway() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "gateway", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    assert "SDK_GATEWAY_TOKENS" in done.stdout and "--expose" in done.stdout
