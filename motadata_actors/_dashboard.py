"""``python -m motadata_actors dashboard``: tenants' agents, live, in the browser.

Theory of operation:

* The dashboard is a client of the agents' NATS (``NATS_URL``), one connection per
  tenant, like ``status``. Every ``interval`` seconds it asks every process of a tenant
  for its report (:func:`~motadata_actors.actors._status.gather_status`) and reads the
  kept dead letters; in between it follows the tenant's life-cycle events, so a crash
  shows at once (with its trace id when the crashing process has telemetry on).
* A *snapshot* per tenant is plain JSON: ``processes``, ``agents`` (counters, depth,
  rate, handling latency), ``dead_letters``, ``failures``, ``changes`` and ``sections``
  (more panels: ``sections=`` maps a name to an async function of the tenant's transport
  and tenant; the page shows what it returns as a table).
* Rates are differences of counters between two reports of one process. Latencies come
  from each agent's handling-time buckets: p50 and average over the last minute (over
  the agent's whole life while the dashboard has watched it for less).
* The page (static HTML, CSS and vanilla JS shipped in the package) loads
  ``/api/snapshot``, then follows ``/api/events`` (Server-Sent Events: a ``snapshot``
  event per tenant whenever it changes). Its Replay buttons post to
  ``/api/tenants/<tenant>/dead-letters/replay``, which runs ``dlq replay``'s code.
* Access: without a token the dashboard listens on loopback only and answers only
  requests addressed to a loopback name (a page elsewhere that rebinds its own name to
  127.0.0.1 gets nothing: DNS rebinding). With ``SDK_DASHBOARD_TOKEN`` every request
  needs it: ``Authorization: Bearer <token>``, or the cookie that opening
  ``/?token=<token>`` once sets. A replay must also come from the page itself (its own
  ``Origin``, and a header no cross-site form can send).
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import importlib.resources
import io
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, final

import anyio
import anyio.abc
import orjson

from motadata_actors._errors import ActorsError, ConfigError
from motadata_actors._settings import Settings
from motadata_actors.actors._config import codec_limits, nats_transport, require_nats
from motadata_actors.actors._schemas import read_registry
from motadata_actors.actors._status import gather_status
from motadata_actors.actors._status_events import AgentLifecycle, StatusFeed
from motadata_actors.codecs import Codecs, KeyRing
from motadata_actors.mailbox import (
    DeadLetter,
    NatsTransport,
    Quotas,
    Transport,
    check_id,
    tenant_quotas,
)
from motadata_actors.mailbox._envelope import Letter
from motadata_actors.telemetry._logging import get_logger

INSTALL: Final = "pip install 'motadata-actors[gateway]'"

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route
except ImportError as exc:  # the optional extra
    raise ConfigError(f"the dashboard needs the web stack: {INSTALL}") from exc

__all__ = (
    "TOKEN_SETTING",
    "Dashboard",
    "SectionSource",
    "handling_summary",
    "quota_section",
    "types_section",
    "serve_dashboard",
)

log = get_logger("dashboard")

SectionSource = Callable[[Transport, str], Awaitable[Any]]
"""A panel more: given a tenant's transport and the tenant, what to show (JSON-able)."""


async def types_section(transport: Transport, tenant: str) -> list[dict[str, str]]:
    """The ``types`` panel: the tenant's message types, and the process that last said so.

    From the schema registry (``SDK_SCHEMAS_<tenant>``), which every process writes.
    """
    rows = []
    for wire, entry in sorted((await read_registry(transport, tenant)).items()):
        fields = entry["schema"].get("properties")
        published = entry.get("published")
        rows.append({
            "type": wire,
            "fields": ", ".join(fields) if isinstance(fields, dict) else "",
            "known by": str(entry.get("process", "")),
            "published": time.strftime("%H:%M:%S", time.localtime(published))
            if isinstance(published, (int, float)) else "",
        })  # fmt: skip
    return rows


def quota_section(known: Mapping[str, Quotas] | None = None) -> SectionSource:
    """The ``quotas`` panel every dashboard shows: each quota's use against its limit.

    ``known``: quotas by tenant (:func:`~motadata_actors.mailbox.read_quotas` of the
    configuration ``tenants config`` wrote) for the limits nats-server tells no tenant
    (connections, subscriptions).
    """
    known = dict(known or {})

    async def read(transport: Transport, tenant: str) -> list[dict[str, str]]:
        usage = await tenant_quotas(transport, tenant, known=known.get(tenant))
        return usage.shown()

    return read


TOKEN_SETTING: Final = "SDK_DASHBOARD_TOKEN"
_COOKIE: Final = "sdk_dashboard"
_ACTION_HEADER: Final = "x-sdk-dashboard"  # a cross-site form cannot set a custom header
_WINDOW: Final = 60.0  # seconds latencies are reckoned over
_FAILURES: Final = 50  # crashes kept per tenant
_CHANGES: Final = 30  # life-cycle changes kept per tenant
_LETTERS: Final = 50  # dead letters read per poll
_KEEPALIVE: Final = 15.0  # seconds between comments on an idle event stream
_FORGET: Final = 10  # polls an agent may be missing before its history goes
_LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_STATIC: Final = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def handling_summary(
    times: Sequence[int], seconds: float, bounds: Sequence[float]
) -> tuple[float | None, float | None]:
    """``(p50, average)`` in seconds of handlings counted in buckets (None: none counted).

    ``times[i]`` counts the handlings at most ``bounds[i]`` (and above ``bounds[i-1]``);
    the last count is of those above every bound. The median is interpolated within its
    bucket; in the last one it is that bucket's lower bound.
    """
    count = sum(times)
    if count <= 0:
        return None, None
    half = count / 2
    seen = 0
    p50 = bounds[-1] if bounds else 0.0
    for i, n in enumerate(times):
        if n and seen + n >= half:
            low = bounds[i - 1] if i else 0.0
            inside = i < len(bounds)  # the last bucket has no upper bound
            p50 = low + (bounds[i] - low) * (half - seen) / n if inside else low
            break
        seen += n
    return p50, max(seconds, 0.0) / count


@final
class _Sample:
    """One agent's counters in one report: when, how many handled, how long it took."""

    __slots__ = ("count", "seconds", "time", "times")

    def __init__(self, when: float, count: int, seconds: float, times: tuple[int, ...]) -> None:
        self.time = when
        self.count = count
        self.seconds = seconds
        self.times = times


_ZERO = _Sample(0.0, 0, 0.0, ())


def _trace_of(headers: Mapping[str, str]) -> str:
    parts = headers.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def _letter_row(letter: DeadLetter, codecs: Codecs) -> dict[str, Any]:
    from motadata_actors._dlq import _body  # the body as `dlq list` shows it

    return {
        "seq": letter.seq,
        "to": letter.to,
        "time": letter.time,
        "reason": letter.reason,
        "type": Letter.open(letter).message_type or "",
        "trace_id": _trace_of(letter.headers),
        "body": _body(letter, codecs),
    }


def _change_row(event: AgentLifecycle) -> dict[str, Any]:
    return {
        "time": event.time,
        "agent": event.agent,
        "change": event.change,
        "path": event.path,
        "reason": event.reason,
        "trace_id": event.trace_id,
        "host": event.host,
        "pid": event.pid,
    }


@final
class _Watch:
    """One tenant: its connection, its last poll, its history of counters and crashes."""

    def __init__(
        self,
        dashboard: Dashboard,
        tenant: str,
        transport: NatsTransport,
        codecs: Codecs,
        sections: Mapping[str, SectionSource],
    ) -> None:
        self.dashboard = dashboard
        self.tenant = tenant
        self.transport = transport
        self.codecs = codecs
        self.sections = sections
        self.wake = anyio.Event()
        self.polled: dict[str, Any] = {
            "time": None, "processes": [], "agents": [],
            "dead_letters": {"letters": [], "error": ""}, "sections": {}, "error": "",
        }  # fmt: skip
        self.failures: collections.deque[dict[str, Any]] = collections.deque(maxlen=_FAILURES)
        self.changes: collections.deque[dict[str, Any]] = collections.deque(maxlen=_CHANGES)
        self._history: dict[tuple[str, str], collections.deque[_Sample]] = {}
        self._missing: dict[tuple[str, str], int] = {}

    def snapshot(self) -> dict[str, Any]:
        """What the page shows of this tenant now."""
        return {
            "tenant": self.tenant,
            **self.polled,
            "failures": list(reversed(self.failures)),
            "changes": list(reversed(self.changes)),
        }

    async def poll(self) -> None:
        """Refresh every ``interval`` seconds (sooner when woken) until cancelled."""
        while True:
            with anyio.move_on_after(self.dashboard.interval):
                await self.wake.wait()
            self.wake = anyio.Event()
            await self.refresh()

    async def refresh(self) -> None:
        """Ask the processes, read the dead letters, recompute; never raises."""
        polled = dict(self.polled)
        try:
            reports = await gather_status(self.transport, self.tenant, self.dashboard.wait)
            polled.update(self._agents(reports), error="")
        except ActorsError as exc:
            polled["error"] = f"status: {type(exc).__name__}: {exc}"
        except Exception as exc:  # a bad report must not stop the page
            log.exception("dashboard: the status of tenant %r could not be read", self.tenant)
            polled["error"] = f"status: {type(exc).__name__}: {exc}"
        try:
            letters = await self.transport.dead_letters.read(self.tenant, limit=_LETTERS)
            rows = [_letter_row(letter, self.codecs) for letter in letters]
            polled["dead_letters"] = {"letters": rows, "error": ""}
        except ActorsError as exc:
            polled["dead_letters"] = {"letters": [], "error": f"{type(exc).__name__}: {exc}"}
        sections: dict[str, Any] = {}
        for name, source in self.sections.items():
            try:
                sections[name] = await source(self.transport, self.tenant)
            except Exception as exc:
                sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
        polled["sections"] = sections
        polled["time"] = time.time()
        self.polled = polled
        self.dashboard.changed(self.tenant)

    def _agents(self, reports: list[Any]) -> dict[str, Any]:
        processes: list[dict[str, Any]] = []
        agents: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for report in reports:
            process = str(report.get("process", ""))
            bounds = [float(b) for b in report.get("handling_bounds", ())]
            when = float(report.get("time", 0.0))
            rows = report.get("agents", [])
            processes.append({
                "process": process, "pid": report.get("pid"), "host": report.get("host"),
                "agents": len(rows),
            })  # fmt: skip
            for a in rows:
                path = str(a.get("path") or f"/{a.get('name', '?')}")
                key = (process, path)
                seen.add(key)
                handling = a.get("handling") or {}
                sample = _Sample(
                    when, int(a.get("handled", 0)) + int(a.get("failed", 0)),
                    float(handling.get("seconds", 0.0)),
                    tuple(int(n) for n in handling.get("times", ())),
                )  # fmt: skip
                rate, p50, avg = self._measure(key, sample, bounds)
                agents.append({
                    "name": a.get("name"), "path": path, "process": process,
                    "pid": report.get("pid"), "host": report.get("host"),
                    "mailbox": a.get("mailbox", "core"), "queued": a.get("queued", 0),
                    "capacity": a.get("capacity", 0), "handled": a.get("handled", 0),
                    "failed": a.get("failed", 0), "rejected": a.get("rejected", 0),
                    "restarts": a.get("restarts", 0), "dropped": a.get("dropped", 0),
                    "keys": a.get("keys", 0), "rate": rate,
                    "latency_p50_ms": None if p50 is None else p50 * 1000,
                    "latency_avg_ms": None if avg is None else avg * 1000,
                })  # fmt: skip
        for key in list(self._history):
            if key in seen:
                self._missing.pop(key, None)
            elif self._missing.setdefault(key, 0) >= _FORGET:
                del self._history[key], self._missing[key]
            else:
                self._missing[key] += 1
        agents.sort(key=lambda r: (r["path"], r["host"] or "", r["pid"] or 0))
        return {"processes": processes, "agents": agents}

    def _measure(
        self, key: tuple[str, str], sample: _Sample, bounds: list[float]
    ) -> tuple[float | None, float | None, float | None]:
        """Rate since the last report, and (p50, average) handling time over the window."""
        history = self._history.setdefault(key, collections.deque(maxlen=4096))
        last = history[-1] if history else None
        rate = None
        if last is not None and sample.time > last.time and sample.count >= last.count:
            rate = (sample.count - last.count) / (sample.time - last.time)
        history.append(sample)
        start = sample.time - _WINDOW
        while len(history) > 1 and history[1].time <= start:
            history.popleft()  # the newest one at or before the window's start stays
        base = history[0] if history[0].time <= start else _ZERO
        if len(base.times) != len(sample.times) or base.count > sample.count:
            base = _ZERO  # a restarted process, or another bucket layout
        times = [n - (base.times[i] if base.times else 0) for i, n in enumerate(sample.times)]
        p50, avg = handling_summary(times, sample.seconds - base.seconds, bounds)
        return rate, p50, avg

    async def follow(self, feed: StatusFeed) -> None:
        """Keep the tenant's life-cycle changes as they come; crashes are its failures."""
        async for event in feed:
            if not isinstance(event, AgentLifecycle):
                continue
            row = _change_row(event)
            self.changes.append(row)
            if event.change == "crashed":
                self.failures.append(row)
            self.dashboard.changed(self.tenant)


@final
class Dashboard:
    """The dashboard's state and its ASGI app (Starlette), for tenants of one NATS.

    Enter it (``async with``) to connect and start watching; :attr:`app` serves the page
    and the API. :func:`serve_dashboard` runs it with uvicorn.

    Args:
        settings: ``NATS_URL``, credentials, codec and limits, as everywhere.
        tenants: the tenants shown.
        token: the token every request must carry; None: loopback names only.
        interval: seconds between polls of each tenant.
        wait: seconds each poll waits for the processes' reports.
        sections: more panels per tenant: name -> async function of the tenant's transport
            and tenant, returning JSON-able data (a list of objects shows as a table).
            ``quotas`` (:func:`quota_section`) and ``types`` (:func:`types_section`) are
            always there unless replaced.

    Raises:
        ConfigError: no tenant, a malformed one, a token under 16 characters, or no
            ``NATS_URL``.
    """

    def __init__(
        self,
        settings: Settings,
        tenants: Sequence[str],
        *,
        token: str | None = None,
        interval: float = 1.0,
        wait: float = 0.5,
        sections: Mapping[str, SectionSource] | None = None,
    ) -> None:
        if not tenants:
            raise ConfigError("name at least one tenant to show")
        for tenant in tenants:
            check_id(tenant, "tenant")
        if token is not None and len(token) < 16:
            raise ConfigError(f"{TOKEN_SETTING} must be at least 16 characters")
        require_nats(settings, "the dashboard")
        if not 0 < wait < interval:
            raise ConfigError(f"need 0 < wait < interval, not wait={wait}, interval={interval}")
        self.settings = settings
        self.tenants = list(dict.fromkeys(tenants))
        self.interval = interval
        self.wait = wait
        self._token = token
        self._sections = {"quotas": quota_section(), "types": types_section, **(sections or {})}
        self._watches: dict[str, _Watch] = {}
        self._versions: dict[str, int] = dict.fromkeys(self.tenants, 0)
        self._changed = anyio.Event()
        self._closing = False
        self._stack = contextlib.AsyncExitStack()
        self._tasks: anyio.abc.TaskGroup | None = None
        static = importlib.resources.files("motadata_actors") / "_static"
        self._page = (static / "dashboard.html").read_bytes()
        self._static = {name: (static / name).read_bytes() for name in _STATIC}
        self.app = Starlette(
            routes=[
                Route("/", self._index, methods=["GET"]),
                Route("/static/{name}", self._asset, methods=["GET"]),
                Route("/healthz", self._health, methods=["GET"]),
                Route("/api/snapshot", self._snapshot, methods=["GET"]),
                Route("/api/events", self._events, methods=["GET"]),
                Route("/api/tenants/{tenant}", self._tenant, methods=["GET"]),
                Route("/api/tenants/{tenant}/dead-letters/replay", self._replay, methods=["POST"]),
            ]
        )
        """The ASGI app: the page, ``/api/snapshot``, ``/api/events``, replay."""

    async def __aenter__(self) -> Dashboard:
        """Connect to each tenant, poll once, and start watching."""
        stack = self._stack
        await stack.__aenter__()
        try:
            codecs = Codecs(self.settings.codec, limits=codec_limits(self.settings))
            if self.settings.seal_keys:
                codecs.keys = KeyRing.parse(self.settings.seal_keys)
            feeds: list[tuple[_Watch, StatusFeed]] = []
            for tenant in self.tenants:
                transport = nats_transport(self.settings, tenant, name="motadata-actors/dashboard")
                await transport.start()
                stack.push_async_callback(transport.aclose)
                feed = StatusFeed(transport, tenant, codecs, progress=False)
                await feed.open()
                stack.push_async_callback(feed.aclose)
                watch = _Watch(self, tenant, transport, codecs, self._sections)
                self._watches[tenant] = watch
                feeds.append((watch, feed))
            # Not in the stack: its scope must be exited as the innermost, unshielded.
            tasks = anyio.create_task_group()
            await tasks.__aenter__()
            self._tasks = tasks
            for watch, feed in feeds:
                tasks.start_soon(watch.poll)
                tasks.start_soon(watch.follow, feed)
            for watch, _ in feeds:
                await watch.refresh()
        except BaseException:
            await self.__aexit__(*sys.exc_info())
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        """Stop watching and close the connections."""
        self.close_streams()
        tasks, self._tasks = self._tasks, None
        try:
            if tasks is not None:
                tasks.cancel_scope.cancel()
                await tasks.__aexit__(*exc_info)
        finally:
            with anyio.CancelScope(shield=True):  # connections close cleanly, even cancelled
                await self._stack.__aexit__(*exc_info)

    def changed(self, tenant: str) -> None:
        """Tell the event streams that ``tenant``'s snapshot changed."""
        self._versions[tenant] += 1
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def close_streams(self) -> None:
        """End every event stream (the server is stopping)."""
        self._closing = True
        self._changed.set()

    def snapshot(self, tenant: str) -> dict[str, Any]:
        """``tenant``'s snapshot now (empty before the dashboard is entered)."""
        watch = self._watches.get(tenant)
        return watch.snapshot() if watch is not None else {"tenant": tenant}

    # -- HTTP ---------------------------------------------------------------------

    def _refused(self, request: Request, *, action: bool = False) -> Response | None:
        """The response refusing ``request``, or None when it may go on."""
        if self._token is None:
            if request.url.hostname not in _LOOPBACK_NAMES:
                return _problem(
                    403, f"Host {request.url.hostname!r}: a dashboard without a token answers "
                    "only requests addressed to a loopback name",
                )  # fmt: skip
        else:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                given = request.cookies.get(_COOKIE, "")
            if not hmac.compare_digest(given.strip().encode(), self._token.encode()):
                return _problem(
                    401, f"a token is required: open /?token=<{TOKEN_SETTING}> or send "
                    "Authorization: Bearer <token>",
                    {"WWW-Authenticate": 'Bearer realm="motadata-actors dashboard"'},
                )  # fmt: skip
        if action:
            origin = request.headers.get("origin")
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if request.headers.get(_ACTION_HEADER) != "1" or (origin and origin != own):
                return _problem(403, "actions are taken from the dashboard's own page only")
        return None

    async def _index(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None and self._token is not None:
            if not hmac.compare_digest(given.encode(), self._token.encode()):
                return _problem(401, f"a wrong token: it is the value of {TOKEN_SETTING}")
            # Into a cookie, and out of the address bar (and the history).
            response = Response(status_code=303, headers={"Location": "/", **_SECURITY_HEADERS})
            response.set_cookie(_COOKIE, self._token, httponly=True, samesite="strict", path="/")
            return response
        refused = self._refused(request)
        if refused is not None:
            return refused
        return Response(self._page, media_type="text/html", headers=_SECURITY_HEADERS)

    async def _asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._static:
            return _problem(404, f"no {name!r} here")
        return Response(self._static[name], media_type=_STATIC[name], headers=_SECURITY_HEADERS)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def _snapshot(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = {"tenants": {t: self.snapshot(t) for t in self.tenants}}
        return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)

    async def _tenant(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        tenant = request.path_params["tenant"]
        if tenant not in self._versions:
            return _problem(404, f"tenant {tenant!r} is not shown here")
        return Response(
            orjson.dumps(self.snapshot(tenant)), media_type="application/json", headers=_NO_STORE
        )

    async def _events(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        headers = {**_NO_STORE, "X-Accel-Buffering": "no"}
        return StreamingResponse(self._stream(), media_type="text/event-stream", headers=headers)

    async def _stream(self) -> AsyncIterator[bytes]:
        """Each tenant's snapshot whenever it changed, as ``snapshot`` events."""
        sent: dict[str, int] = {}
        while not self._closing:
            waiter = self._changed
            for tenant, version in list(self._versions.items()):
                if sent.get(tenant) != version:
                    sent[tenant] = version
                    yield b"event: snapshot\ndata: " + orjson.dumps(self.snapshot(tenant)) + b"\n\n"
            with anyio.move_on_after(_KEEPALIVE) as idle:
                await waiter.wait()
            if idle.cancelled_caught:
                yield b": still here\n\n"

    async def _replay(self, request: Request) -> Response:
        refused = self._refused(request, action=True)
        if refused is not None:
            return refused
        tenant = request.path_params["tenant"]
        watch = self._watches.get(tenant)
        if watch is None:
            return _problem(404, f"tenant {tenant!r} is not shown here")
        try:
            asked = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            asked = None
        seqs = asked.get("seq") if isinstance(asked, dict) else None
        every = isinstance(asked, dict) and asked.get("all") is True
        if (
            not isinstance(seqs, list)
            or not all(type(s) is int and s > 0 for s in seqs)
            or (not seqs and not every)
        ):
            return _problem(400, 'send {"seq": [sequence numbers]} or {"seq": [], "all": true}')
        from motadata_actors._dlq import replay_dead_letters

        out = io.StringIO()
        try:
            replayed, kept = await replay_dead_letters(
                self.settings, tenant, [] if every else seqs, keep=False, out=out
            )
        except ActorsError as exc:
            return _problem(502, f"{type(exc).__name__}: {exc}")
        finally:
            watch.wake.set()  # show what is left at once
        return JSONResponse({"replayed": replayed, "kept": kept, "output": out.getvalue()})


_NO_STORE: Final = {"Cache-Control": "no-store"}


def _problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return PlainTextResponse(f"{status}: {detail}\n", status_code=status, headers=headers)


async def serve_dashboard(
    settings: Settings,
    tenants: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    token: str | None = None,
    interval: float = 1.0,
    wait: float = 0.5,
    sections: Mapping[str, SectionSource] | None = None,
    ready: Callable[[str], object] | None = None,
) -> None:
    """Serve the dashboard of ``tenants`` on ``host:port`` until cancelled.

    ``port=0`` takes a free port; the URL is printed, and ``ready`` is called with it once
    the page can be opened.

    Raises:
        ConfigError: a non-loopback ``host`` without ``token``, no ``NATS_URL``, a bad
            tenant or token, the address is taken, or the web stack is not installed.
    """
    from motadata_actors.gateway._http import is_loopback

    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"the dashboard listens on {host} only with a token: set {TOKEN_SETTING} (16 "
            "characters or more); without it, it serves loopback only"
        )
    dashboard = Dashboard(
        settings, tenants, token=token, interval=interval, wait=wait, sections=sections
    )
    from motadata_actors.gateway._serve import run_server

    def started(url: str) -> None:
        how = f" (first open {url}/?token=<{TOKEN_SETTING}>)" if token is not None else ""
        print(f"dashboard of {', '.join(dashboard.tenants)} on {url}{how}", flush=True)
        if ready is not None:
            ready(url)

    async with dashboard:
        await run_server(
            dashboard.app, host, port, what="the dashboard", started=started,
            stopping=dashboard.close_streams,
        )  # fmt: skip
