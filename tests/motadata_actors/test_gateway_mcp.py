"""MCP: exposed agents as tools over streamable HTTP, called with the official mcp client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp
import pytest

from motadata_actors import Actor, ActorSystem, Context, RemoteError, Settings, TenantError
from motadata_actors.codecs import field, message
from motadata_actors.gateway import Limits, McpTools
from motadata_actors.gateway._serve import serve
from motadata_actors.mailbox import NatsServer

pytestmark = pytest.mark.anyio

TOKEN_A = "token-of-tenant-a-0123456789"
TOKEN_B = "token-of-tenant-b-0123456789"


@message("test.mcp.plan_request.v1")
class PlanRequest:
    goal: str = field(proto=1)
    steps: int = field(proto=2, default=3)


class Planner(Actor):
    """Plans how to reach a goal, in steps."""

    accepts = (PlanRequest,)

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg.goal == "fail":
            raise ValueError("no plan for that")
        return {"goal": msg.goal, "plan": [f"step {i + 1}" for i in range(msg.steps)]}


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return {"echo": msg, "by": ctx.actor}


@contextlib.asynccontextmanager
async def _gateway(
    nats_server: NatsServer,
    tenants: list[str],
    tokens: dict[str, str] | None = None,
    limits: Limits | None = None,
) -> AsyncIterator[str]:
    """Agents of each tenant, and a gateway for them on a free loopback port: its MCP URL."""
    settings = Settings(nats_urls=(nats_server.url,))
    async with contextlib.AsyncExitStack() as stack:
        for tenant in tenants:
            system = await stack.enter_async_context(
                ActorSystem(tenant, settings=settings, handle_signals=False)
            )
            await system.spawn(Planner, name="planner")
            await system.spawn(Echo, name="echo")
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.ensure_future(
            serve(settings, tenants, ["planner", "echo"], port=0, tokens=tokens, limits=limits,
                  ready=ready.set_result, classes={"planner": Planner, "echo": Echo})
        )  # fmt: skip
        try:
            yield f"{await asyncio.wait_for(ready, 30)}/mcp"
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)


async def test_the_official_client_lists_and_calls_our_agents_as_tools(
    nats_server: NatsServer, tenant: str
) -> None:
    async with _gateway(nats_server, [tenant]) as url, mcp.Client(url) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"planner", "echo"}
        planner = tools["planner"]
        assert planner.description == "Plans how to reach a goal, in steps."
        assert planner.input_schema["required"] == ["goal"]
        assert planner.input_schema["properties"]["steps"]["type"] == "integer"
        assert tools["echo"].input_schema["required"] == ["message"]
        result = await client.call_tool("planner", {"goal": "ship", "steps": 2})
        assert not result.is_error
        assert result.structured_content == {"goal": "ship", "plan": ["step 1", "step 2"]}
        echoed = await client.call_tool("echo", {"message": [1, "two"]})
        assert echoed.structured_content == {"echo": [1, "two"], "by": "echo"}


async def test_errors_are_tool_errors_with_our_type_names(
    nats_server: NatsServer, tenant: str
) -> None:
    async with _gateway(nats_server, [tenant]) as url, mcp.Client(url) as client:
        failed = await client.call_tool("planner", {"goal": "fail"})
        assert failed.is_error
        assert failed.structured_content["error"] == "RemoteError"
        assert "ValueError" in failed.structured_content["detail"]
        wrong = await client.call_tool("planner", {"steps": "many"})
        assert wrong.is_error and wrong.structured_content["error"] == "DecodeError"
        hidden = await client.call_tool("writer", {"message": 1})
        assert hidden.is_error and hidden.structured_content["error"] == "NotFound"


async def test_the_tenant_comes_from_the_token(nats_server: NatsServer, tenant: str) -> None:
    tenants = [f"{tenant}a", f"{tenant}b"]
    tokens = {TOKEN_A: tenants[0], TOKEN_B: tenants[1]}
    async with _gateway(nats_server, tenants, tokens) as url:
        async with McpTools(url, token=TOKEN_A) as tools:
            assert sorted(await tools.names()) == ["echo", "planner"]
            assert await tools.call("echo", {"message": "hi"}) == {"echo": "hi", "by": "echo"}
            with pytest.raises(RemoteError, match="no plan for that") as caught:
                await tools.call("planner", {"goal": "fail"})
            assert caught.value.type_name == "RemoteError"
        # No token: refused before MCP sees the request, whatever its method (initialize
        # and ping were served, and event streams held open, without one).
        initialize = {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}},
        }  # fmt: skip
        accept = {"Accept": "application/json, text/event-stream"}
        async with httpx2.AsyncClient() as http:
            for request in (
                http.post(url, json=initialize, headers=accept),
                http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
                          headers=accept),
                http.get(url, headers={"Accept": "text/event-stream"}),
                http.post(url, json=initialize,
                          headers={**accept, "Authorization": "Bearer not-a-token"}),
            ):  # fmt: skip
                refused = await request
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert refused.headers["content-type"] == "application/problem+json"
        with pytest.raises(TenantError, match=r"refused the credential \(401\)"):
            async with McpTools(url, token="not-a-token"):
                pass


async def test_every_mcp_request_counts_against_the_rate_once(
    nats_server: NatsServer, tenant: str
) -> None:
    # Unauthenticated event streams were all taken, past the rate; a tool call must not
    # count twice either (once at the door, once in the tool).
    limits = Limits(rate=0.001, burst=3)
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {TOKEN_A}"}  # fmt: skip
    async with (
        _gateway(nats_server, [tenant], {TOKEN_A: tenant}, limits) as url,
        httpx2.AsyncClient(headers=headers) as http,
    ):
        statuses = [(await http.post(url, json=ping)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
