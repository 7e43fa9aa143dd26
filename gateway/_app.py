"""The gateway: chosen agents reachable over HTTP, as an ASGI app (Starlette).

Routes (every one behind the rules of :mod:`._http`):

* ``GET /agents``: the exposed agents of the caller's tenant.
* ``POST /agents/<name>``: an ask. The body is decoded by its ``Content-Type`` (JSON,
  MessagePack, CBOR, Protobuf, or a plug-in; ``Sdk-Message-Type`` names a typed
  message); the reply comes in the codec ``Accept`` chooses, with ``Sdk-Message-Type``
  when typed. ``X-Timeout`` (seconds) bounds the ask, at most the gateway's own limit.
* ``GET /healthz``: 200 while the gateway runs.
* ``/a2a/<name>/``: each exposed agent as an A2A agent (:mod:`._a2a`).
* ``/mcp``: the exposed agents as MCP tools over streamable HTTP (:mod:`._mcp`).

The app's lifespan must run (uvicorn runs it; mount it with its lifespan, or enter
``async with gateway:``): it starts the MCP session manager and, on shutdown, stops the
A2A tasks still running.

The tenant comes from the bearer token, never from the request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, final

from motadata_actors._errors import ActorsError, CodecError, ConfigError
from motadata_actors.codecs import codec_names
from motadata_actors.mailbox import decode_body, encode_body

from ._http import (
    ADMITTED,
    PROBLEM_TYPE,
    Admission,
    Limits,
    Problem,
    negotiate,
    problem_for,
    too_large,
)

INSTALL = "pip install 'motadata-actors[gateway]'"

try:
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # the optional extra
    raise ConfigError(f"the gateway needs its web stack: {INSTALL}") from exc

if TYPE_CHECKING:
    from motadata_actors.actors import ActorSystem

    from ._a2a import A2AServer

__all__ = ("Gateway",)

_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@final
class Gateway:
    """Exposes chosen agents of running systems over HTTP (one system per tenant).

    Args:
        systems: the running system of each tenant served (or the one system).
        expose: the agent names reachable from outside; nothing else is.
        tokens: bearer token -> tenant; None: no credential, only for one tenant (and the
            CLI serves that on loopback only).
        limits: body size and request rate per credential.
        timeout: the longest ask, in seconds (a request's ``X-Timeout`` may ask less).
        classes: the actor class of an exposed name, when known (the agents may run in
            other processes): its docstring describes the A2A agent and the MCP tool, its
            ``accepts`` (``@message`` classes) give the A2A skills and the tool's input
            schema.

    Raises:
        ConfigError: no agent exposed, several tenants without tokens, a token for a
            tenant not served, or the web stack is not installed.
    """

    def __init__(
        self,
        systems: ActorSystem | Mapping[str, ActorSystem],
        *,
        expose: Sequence[str],
        tokens: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        timeout: float = 30.0,
        classes: Mapping[str, type] | None = None,
    ) -> None:
        if not expose:
            raise ConfigError("expose at least one agent (nothing is reachable by default)")
        if isinstance(systems, Mapping):
            self._systems = dict(systems)
        else:
            self._systems = {systems.tenant: systems}
        self.admission = Admission(list(self._systems), tokens, list(expose), limits or Limits())
        self.timeout = timeout
        """The longest ask, in seconds."""
        self._classes = dict(classes or {})
        self._app: Starlette | None = None
        self._a2a: A2AServer | None = None
        self._mcp: Any = None  # the MCP session manager, made with the app
        self._stack = contextlib.AsyncExitStack()

    @property
    def app(self) -> Starlette:
        """The ASGI app: mount it in your own server, or let :func:`serve` run it."""
        if self._app is None:
            from ._a2a import A2AServer
            from ._mcp import mcp_endpoint

            self._a2a = A2AServer(self, timeout=self.timeout)
            endpoint, self._mcp = mcp_endpoint(self)
            routes = [
                Route("/healthz", self._health, methods=["GET"]),
                Route("/agents", self._list, methods=["GET"]),
                Route("/agents/{name}", self._ask, methods=["POST"]),
                *self._a2a.routes(),
                Route("/mcp", _Admitted(self, endpoint), methods=["GET", "POST", "DELETE"]),
            ]
            self._app = Starlette(routes=routes, lifespan=self._lifespan)
        return self._app

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        async with self:
            yield

    async def __aenter__(self) -> Gateway:
        """Start what serving needs (the MCP session manager); the app's lifespan does it."""
        self.app  # noqa: B018 - made here if not yet
        await self._stack.enter_async_context(self._mcp.run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.aclose()
        finally:
            await self._stack.aclose()

    async def aclose(self) -> None:
        """Stop the A2A tasks still running (the app's lifespan does it on shutdown)."""
        if self._a2a is not None:
            await self._a2a.aclose()

    def actor_class(self, name: str) -> type | None:
        """The actor class of the exposed ``name``, when the gateway was told it."""
        return self._classes.get(name)

    def system_of(self, tenant: str) -> ActorSystem:
        """The running system of ``tenant``."""
        return self._systems[tenant]

    def _problem(self, problem: Problem, request: Request) -> Response:
        return Response(
            problem.body(request.url.path), status_code=problem.status,
            media_type=PROBLEM_TYPE, headers=problem.headers,
        )  # fmt: skip

    def caller(self, request: Request) -> str:
        """The tenant of ``request`` once its credential and rate are checked.

        Raises:
            Problem: 401, 403 (a tokenless gateway asked by a name other than loopback's)
                or 429.
        """
        if not self.admission.has_tokens and request.url.hostname not in _LOOPBACK_NAMES:
            # Open on loopback: a page elsewhere that rebinds a name of its own to
            # 127.0.0.1 gets no further (DNS rebinding).
            raise Problem(
                403, "Forbidden", f"Host {request.url.hostname!r}: a gateway without tokens "
                "answers only requests addressed to a loopback name",
            )  # fmt: skip
        tenant, credential = self.admission.tenant(request.headers.get("authorization"))
        client = request.client.host if request.client is not None else ""
        self.admission.take(credential or client)
        return tenant

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def _list(self, request: Request) -> Response:
        try:
            self.caller(request)
        except Problem as problem:
            return self._problem(problem, request)
        return JSONResponse({"agents": self.admission.expose})

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused as soon as it outgrows the limit.

        Raises:
            Problem: 413, or 400 for a malformed ``Content-Length`` or a client that left
                before its whole body came.
        """
        limit = self.admission.limits.max_body
        self.admission.size(request.headers.get("content-length"))
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(size, limit)
                chunks.append(chunk)
        except ClientDisconnect:
            # Nobody is left to answer; a problem, not a traceback in the server's log.
            raise Problem(
                400, "BadRequest", f"the client left after {size} byte(s) of its body"
            ) from None
        return b"".join(chunks)

    def _timeout_of(self, request: Request) -> float:
        raw = request.headers.get("x-timeout")
        if raw is None:
            return self.timeout
        try:
            asked = float(raw)
        except ValueError:
            asked = -1.0
        if not 0 < asked < float("inf"):
            raise Problem(400, "BadRequest", f"X-Timeout {raw!r} is not a positive number")
        return min(asked, self.timeout)

    async def _ask(self, request: Request) -> Response:
        try:
            tenant = self.caller(request)
            name = self.admission.agent(request.path_params["name"])
            system = self._systems[tenant]
            codecs = system.codecs
            content_type = request.headers.get("content-type") or "application/json"
            try:
                codecs.for_content_type(content_type)
            except CodecError:
                raise Problem(
                    415, "UnsupportedMediaType", f"Content-Type {content_type!r} is not read here"
                ) from None
            offered = {codecs.named(n).content_type: n for n in _names(codecs)}
            answer_in = negotiate(request.headers.get("accept"), offered)
            timeout = self._timeout_of(request)
            data = await self.read_body(request)
            headers = {"Content-Type": content_type}
            message_type = request.headers.get("sdk-message-type")
            if message_type:
                headers["Sdk-Message-Type"] = message_type
            value = decode_body(data, headers, codecs)
            reply = await system.ref(name).ask(value, timeout=timeout)
            out: dict[str, str] = {}
            codec = codecs.named(answer_in)
            body = encode_body(reply, codec, out)
        except Problem as problem:
            return self._problem(problem, request)
        except ActorsError as exc:
            return self._problem(problem_for(exc), request)
        return Response(body, media_type=codec.content_type, headers=out)


def _names(codecs: Any) -> list[str]:
    return [n for n in codec_names() if _available(codecs, n)]


def _available(codecs: Any, name: str) -> bool:
    try:
        codecs.named(name)
    except CodecError:
        return False  # a plug-in whose library is not installed here
    return True


@final
class _Admitted:
    """An ASGI app behind the gateway's admission: MCP's endpoint.

    Every request is checked (credential, rate) before the app sees it, as the gateway's
    own routes are: a request without a token gets its 401 here, whatever MCP method it
    carries (``initialize``, ``ping``, an event stream). The tenant is kept in the scope
    (:data:`ADMITTED`) for the tool calls to read, so the rate is taken once per request.
    """

    def __init__(self, gateway: Gateway, app: Any) -> None:
        self._gateway = gateway
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            scope[ADMITTED] = self._gateway.caller(request)
        except Problem as problem:
            await self._gateway._problem(problem, request)(scope, receive, send)
            return
        await self._app(scope, receive, send)
