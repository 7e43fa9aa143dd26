"""Running a gateway: ``python -m motadata_actors gateway`` (uvicorn on one address)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings

from ._app import INSTALL, Gateway
from ._http import Limits, is_loopback

__all__ = ("parse_exposed", "parse_tokens", "run_server", "serve")

_GRACE = 5  # seconds open responses get to finish when the server stops


def parse_tokens(text: str | None) -> dict[str, str] | None:
    """``tenant:token[,tenant:token...]`` (``SDK_GATEWAY_TOKENS``) as token -> tenant.

    Raises:
        ConfigError: a malformed entry.
    """
    if not text or not text.strip():
        return None
    tokens: dict[str, str] = {}
    for entry in text.split(","):
        tenant, sep, token = entry.strip().partition(":")
        if not sep or not tenant or not token:
            raise ConfigError("SDK_GATEWAY_TOKENS must be tenant:token[,tenant:token...]")
        tokens[token] = tenant
    return tokens


def parse_exposed(specs: Sequence[str]) -> tuple[list[str], dict[str, type]]:
    """``NAME`` or ``NAME=MODULE:CLASS`` items as (names, classes of those that name one).

    Raises:
        ConfigError: a class that cannot be imported.
    """
    names: list[str] = []
    classes: dict[str, type] = {}
    for spec in specs:
        name, _, target = spec.partition("=")
        names.append(name)
        if target:
            module, _, attr = target.partition(":")
            try:
                cls = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ConfigError(f"--expose {spec}: cannot import {target!r}: {exc}") from None
            if not isinstance(cls, type):
                raise ConfigError(f"--expose {spec}: {target!r} is not a class")
            classes[name] = cls
    return names, classes


async def serve(
    settings: Settings,
    tenants: Sequence[str],
    expose: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    tokens: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    classes: Mapping[str, type] | None = None,
    ready: Callable[[str], object] | None = None,
) -> None:
    """Serve ``expose`` of each tenant in ``tenants`` on ``host:port`` until cancelled.

    ``port=0`` takes a free port; ``ready`` is called with the URL once it listens.

    Each tenant's system is a client of the agents' NATS (``NATS_URL``): the agents run in
    their own processes.

    Raises:
        ConfigError: a non-loopback ``host`` without tokens, no NATS_URL, or the web stack
            is not installed.
    """
    if not is_loopback(host) and not tokens:
        raise ConfigError(
            f"the gateway listens on {host} only with bearer tokens (SDK_GATEWAY_TOKENS=tenant:"
            "token,...): without them it serves loopback only"
        )
    if settings.enable_nats and not settings.nats_urls:
        raise ConfigError("set NATS_URL to the agents' NATS: the gateway is their client")
    if importlib.util.find_spec("uvicorn") is None:
        raise ConfigError(f"the gateway needs the web stack: {INSTALL}")
    from motadata_actors.actors import ActorSystem

    async with contextlib.AsyncExitStack() as stack:
        systems = {
            tenant: await stack.enter_async_context(
                ActorSystem(tenant, settings=settings, handle_signals=False)
            )
            for tenant in tenants
        }
        gateway = Gateway(systems, expose=expose, tokens=tokens, limits=limits, classes=classes)

        def started(url: str) -> None:
            print(f"gateway for {', '.join(tenants)} on {url}: {', '.join(expose)}", flush=True)
            if ready is not None:
                ready(url)

        await run_server(gateway.app, host, port, what="the gateway", started=started)


async def run_server(
    app: Any,
    host: str,
    port: int,
    *,
    what: str,
    started: Callable[[str], object],
    stopping: Callable[[], object] | None = None,
) -> None:
    """Serve the ASGI ``app`` with uvicorn on ``host:port`` until cancelled.

    ``started`` is called with the URL once it listens (``port=0``: a free port);
    ``stopping`` when it is cancelled, before uvicorn waits for open responses (end
    endless ones there, such as event streams).

    Raises:
        ConfigError: the address cannot be bound (named ``what`` in the message).
    """
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=_GRACE
    )
    server = uvicorn.Server(config)
    # Bound here, not by uvicorn: a taken port is an error of ours (uvicorn would exit
    # the process), and port 0's choice is known before serving.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{what} could not listen on {host}:{port}: {exc}") from None
        url = f"http://{host}:{sock.getsockname()[1]}"
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            while not server.started and not task.done():
                await asyncio.sleep(0.02)  # uvicorn says "started" by a flag, not an event
            started(url)
            await asyncio.shield(task)  # a cancel lands here, not in uvicorn
        finally:
            if stopping is not None:
                stopping()
            server.should_exit = True  # uvicorn's own shutdown: connections, then sockets
            with anyio.CancelScope(shield=True):  # under a cancelled anyio scope too
                await task
    finally:
        sock.close()
