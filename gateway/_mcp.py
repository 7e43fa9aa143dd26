"""MCP: exposed agents as tools over streamable HTTP; other servers' tools from agents.

Server side (``/mcp`` on the gateway, the official ``mcp`` SDK's low-level server and
session manager, stateless, JSON responses):

* ``tools/list``: one tool per exposed agent, named after it, described by its class's
  docstring; its input schema is the JSON Schema of the one ``@message`` class the agent
  ``accepts`` (the tool's arguments are that message's fields), else
  ``{"message": <any value>}``.
* Every request to ``/mcp`` is admitted as every gateway request is (bearer token, rate)
  before MCP sees it: without a valid token it is a 401, whatever its method.
* ``tools/call``: an ask to the agent, in the caller's tenant (its bearer token's); the
  reply comes back as JSON text and as structured content. An error of ours is a tool
  error (``is_error``) naming its type, never a protocol failure.

Client side: :class:`McpTools` calls the tools of any MCP server (``await
tools.call(name, arguments)``), its errors ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, final

import orjson

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    ConfigError,
    NoResponders,
    RemoteError,
    TenantError,
)
from motadata_actors.codecs import json_schema

from ._http import ADMITTED, Problem

if TYPE_CHECKING:
    from ._app import Gateway

__all__ = ("McpTools", "mcp_endpoint")

_ANY_MESSAGE = {
    "type": "object",
    "properties": {"message": {"description": "the message to send the agent: any value"}},
    "required": ["message"],
}


def _accepted(cls: type | None) -> type | None:
    """The one ``@message`` class an agent class ``accepts``, else None."""
    accepts = getattr(cls, "accepts", ()) if cls is not None else ()
    typed = [t for t in accepts if getattr(t, "__sdk_wire_name__", None) is not None]
    return typed[0] if len(typed) == 1 else None


def _description(cls: type | None, name: str) -> str:
    doc = (cls.__doc__ or "").strip().split("\n\n")[0] if cls is not None else ""
    return " ".join(doc.split()) or f"Ask the motadata-actors agent {name!r}."


def mcp_endpoint(gateway: Gateway) -> tuple[Any, Any]:
    """``(asgi endpoint, session manager)`` serving the gateway's agents as MCP tools.

    The manager's ``run()`` must be entered while the endpoint serves (the gateway's
    lifespan does it).
    """
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

    async def list_tools(ctx: Any, params: Any) -> Any:
        _tenant(ctx)
        tools = []
        for name in gateway.admission.expose:
            cls = gateway.actor_class(name)
            accepted = _accepted(cls)
            schema = json_schema(accepted) if accepted is not None else _ANY_MESSAGE
            schema = {k: v for k, v in schema.items() if k != "$schema"}
            tools.append(
                types.Tool(name=name, description=_description(cls, name), input_schema=schema)
            )
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> Any:
        try:
            tenant = _tenant(ctx)
            name = gateway.admission.agent(params.name)
            arguments = dict(params.arguments or {})
            accepted = _accepted(gateway.actor_class(name))
            system = gateway.system_of(tenant)
            if accepted is not None:
                value = system.codecs.named("json").decode(orjson.dumps(arguments), accepted)
            else:
                value = arguments.get("message")
            reply = await system.ref(name).ask(value, timeout=gateway.timeout)
            plain = orjson.loads(system.codecs.named("json").encode_inline(reply))
        except Problem as problem:
            return _tool_error(types, problem.title, problem.detail)
        except ActorsError as exc:
            return _tool_error(types, type(exc).__name__, str(exc))
        return types.CallToolResult(
            content=[types.TextContent(text=orjson.dumps(plain).decode())],
            structured_content=plain if isinstance(plain, dict) else {"result": plain},
        )

    server = Server("motadata-actors", on_list_tools=list_tools, on_call_tool=call_tool)
    # The gateway checks credentials itself; without tokens it serves loopback only, and
    # the SDK's DNS-rebinding guard keeps browsers' pages on other origins out.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=not gateway.admission.has_tokens,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    manager = StreamableHTTPSessionManager(
        app=server,
        stateless=True,
        json_response=True,
        security_settings=security,
        max_request_body_size=gateway.admission.limits.max_body,
    )
    return manager.asgi_app, manager


def _tenant(ctx: Any) -> str:
    """The caller's tenant, as the gateway's door admitted the request (``_Admitted``)."""
    request = getattr(ctx, "request", None)
    tenant = request.scope.get(ADMITTED) if request is not None else None
    if not isinstance(tenant, str):
        raise Problem(401, "Unauthorized", "MCP reaches the gateway over HTTP only")
    return tenant


async def _refusal(http: Any, url: str) -> str | None:
    """Why the MCP server at ``url`` refused this client's credential, if it did.

    The MCP client reports a refused login as a bare "error response": one plain request
    tells a wrong or missing token (401, 403) from a server that is not there.
    """
    try:
        answer = await http.post(
            url, json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
            headers={"Accept": "application/json, text/event-stream"},
        )  # fmt: skip
    except Exception:
        return None
    if answer.status_code not in (401, 403):
        return None
    try:
        detail = str(answer.json().get("detail", ""))
    except ValueError:
        detail = answer.text[:200]
    return (
        f"the MCP server at {url} refused the credential ({answer.status_code}): "
        f"{detail or 'no detail'}; pass McpTools(url, token=...) a token it accepts"
    )


def _tool_error(types: Any, title: str, detail: str) -> Any:
    return types.CallToolResult(
        content=[types.TextContent(text=f"{title}: {detail}")],
        structured_content={"error": title, "detail": detail},
        is_error=True,
    )


@final
class McpTools:
    """The tools of an MCP server (streamable HTTP), for an agent to call.

    Use as an async context manager::

        async with McpTools("http://127.0.0.1:8080/mcp", token="...") as tools:
            names = await tools.names()
            result = await tools.call("planner", {"message": "ship it"})

    Args:
        url: the server's MCP endpoint.
        token: a bearer token, when the server wants one.
        timeout: seconds for one call.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def __aenter__(self) -> McpTools:
        try:
            import httpx2
            from mcp.client.client import Client
            from mcp.client.streamable_http import streamable_http_client
        except ImportError:
            raise ConfigError("MCP needs: pip install 'motadata-actors[gateway]'") from None
        stack = contextlib.AsyncExitStack()
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=self._headers, timeout=self._timeout)
        )
        try:
            transport = streamable_http_client(self._url, http_client=http)
            self._client = await stack.enter_async_context(Client(transport))
        except Exception as exc:
            try:
                refused = await _refusal(http, self._url)
            finally:
                await stack.aclose()
            if refused is not None:
                raise TenantError(refused) from exc
            raise NoResponders(f"no MCP server answers at {self._url}: {exc!r}") from exc
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def names(self) -> list[str]:
        """The server's tool names."""
        result = await self._client.list_tools()
        return [tool.name for tool in result.tools]

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call tool ``name``; its structured result (or its text when it has none).

        Raises:
            RemoteError: the tool reported an error (its type from our gateway, or
                ``ToolError``).
            AskTimeout: no result within the timeout.
        """
        try:
            result = await self._client.call_tool(name, dict(arguments or {}))
        except TimeoutError as exc:
            raise AskTimeout(f"MCP tool {name!r} gave no result in {self._timeout:g}s") from exc
        if result.is_error:
            details = result.structured_content or {}
            error = str(details.get("error", "ToolError"))
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise RemoteError(error, str(details.get("detail", text)), actor=name)
        if result.structured_content is not None:
            return result.structured_content
        return " ".join(getattr(c, "text", "") for c in result.content)

    async def tools(self) -> AsyncIterator[Any]:
        """The server's tools, with their schemas."""
        result = await self._client.list_tools()
        for tool in result.tools:
            yield tool
