"""The dashboard in a real headless browser (Debian's chromium) against real agents on NATS."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from playwright.async_api import Browser, Page, async_playwright, expect

from motadata_actors import Actor, ActorSystem, ConfigError, Context, NoResponders, Settings
from motadata_actors.__main__ import main
from motadata_actors._dashboard import handling_summary, serve_dashboard
from motadata_actors.mailbox import NatsServer

from ..conftest import wait_for

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"  # Debian's; .ci/run installs it
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TOKEN = "a-dashboard-token-of-the-test"
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class Counter(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class Crasher(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        raise ValueError(f"cannot take {msg!r}")


class Later(Actor):
    """Takes what a replay brings."""

    seen: ClassVar[list[Any]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Later.seen.append(msg)
        return "taken"


@contextlib.asynccontextmanager
async def dashboard(settings: Settings, tenant: str, **kwargs: Any) -> AsyncIterator[str]:
    """``serve_dashboard`` on a free loopback port; yields its URL, stops it after."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.ensure_future(
        serve_dashboard(settings, [tenant], port=0, ready=ready.set_result, **kwargs)
    )
    try:
        done, _ = await asyncio.wait({ready, server}, timeout=30, return_when="FIRST_COMPLETED")
        if server in done:
            server.result()  # raises what stopped it
        yield await ready
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def cell(page: Page, table: str, key: str, column: str) -> Any:
    return page.locator(f'[data-testid="{table}"] tr[data-key="{key}"] td[data-col="{column}"]')


async def test_the_page_shows_agents_failures_and_dead_letters_live_and_replays(
    nats_server: NatsServer,
    tenant: str,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    request: pytest.FixtureRequest,
) -> None:
    import os
    import socket

    provider, exporter = spans
    Later.seen = []
    settings = Settings(nats_urls=(nats_server.url,))
    async with (
        ActorSystem(tenant, settings=settings, handle_signals=False,
                    tracer_provider=provider) as system,
        dashboard(settings, tenant, token=TOKEN, interval=0.5, wait=0.25) as url,
        chromium() as browser,
    ):  # fmt: skip
        workers = await system.spawn_supervisor(name="workers")
        counter = await workers.spawn(Counter, name="counter")
        await workers.spawn(Crasher, name="crasher")
        page = await browser.new_page(viewport={"width": 1400, "height": 1200})
        # The token once in the address, then a cookie: the page and its event stream.
        await page.goto(f"{url}/?token={TOKEN}")
        assert page.url == f"{url}/"
        section = page.locator(f'[data-testid="tenant"][data-tenant="{tenant}"]')
        await expect(section.locator("h2")).to_have_text(f"Tenant {tenant}")
        # Processes and the supervision tree.
        processes = page.locator('[data-testid="processes"] tbody tr')
        await expect(processes).to_have_count(1)
        await expect(processes.locator('td[data-col="pid"]')).to_have_text(str(os.getpid()))
        await expect(processes.locator('td[data-col="host"]')).to_have_text(socket.gethostname())
        await expect(page.locator('[data-testid="tree"] li[data-path="/workers/counter"]'))\
            .to_have_text("counter")  # fmt: skip
        await expect(cell(page, "agents", "crasher", "path")).to_have_text("/workers/crasher")
        # The tenant's quotas, as the server tells its use and limits.
        quotas = section.locator('[data-testid="section-quotas"] td[data-col="quota"]')
        await expect(quotas).to_have_text([
            "connections", "subscriptions", "payload", "jetstream memory", "jetstream storage",
            "jetstream streams", "jetstream consumers",
        ])  # fmt: skip
        payload = section.locator('[data-testid="section-quotas"] td[data-col="limit"]').nth(2)
        await expect(payload).to_have_text("1.0 MiB")  # the server's max_payload
        # The tenant's message types, from the schema registry, and who published them.
        lifecycle = section.locator('[data-testid="section-types"] tr', has_text="sdk.lifecycle.v1")
        await expect(lifecycle.locator('td[data-col="known by"]')).to_have_text(
            f"{socket.gethostname()}:{os.getpid()}"
        )
        await expect(lifecycle.locator('td[data-col="fields"]')).to_contain_text("agent, change")
        await expect(cell(page, "agents", "counter", "handled")).to_have_text("0")
        await expect(cell(page, "agents", "counter", "p50")).to_have_text("\u2014")
        # Messages change the counters live, and give a latency.
        for i in range(7):
            await counter.ask(i, timeout=5)
        await expect(cell(page, "agents", "counter", "handled")).to_have_text("7")
        await expect(cell(page, "agents", "counter", "p50")).to_have_text(
            re.compile(r"^\d+\.\d\d$")
        )
        await expect(cell(page, "agents", "counter", "depth")).to_have_text("0 / 1000")
        # A crash shows as a failure with its trace: the handling span's.
        await system.ref("crasher").tell("boom")
        failure = page.locator('[data-testid="failures"] tr[data-key="crasher"]')
        await expect(failure.locator('td[data-col="reason"]')).to_have_text(
            "ValueError: cannot take 'boom'"
        )

        def crash_spans() -> list[Any]:
            return [
                s for s in exporter.get_finished_spans()
                if s.name.startswith("process") and s.status.status_code is StatusCode.ERROR
            ]  # fmt: skip

        await wait_for(lambda: bool(crash_spans()), 10, "the crash's span")
        [crashed] = crash_spans()
        assert crashed.context is not None
        trace_id = format(crashed.context.trace_id, "032x")
        await expect(failure.locator('[data-testid="trace-id"]')).to_have_text(trace_id)
        await expect(cell(page, "agents", "crasher", "restarts")).to_have_text("1")
        # An ask nobody serves is dead-lettered; the page shows it, with its trace id.
        with pytest.raises(NoResponders):
            await system.ref("later").ask("do it", timeout=0.5)
        letters = {letter.to: letter for letter in await system.dead_letters()}
        assert set(letters) == {"crasher", "later"}  # the crashed tell is one too
        crashed_row = page.locator(
            f'[data-testid="dead-letters"] tr[data-key="{letters["crasher"].seq}"]'
        )
        await expect(crashed_row.locator('[data-testid="trace-id"]')).to_have_text(trace_id)
        letter = letters["later"]
        row = page.locator(f'[data-testid="dead-letters"] tr[data-key="{letter.seq}"]')
        await expect(row.locator('td[data-col="to"]')).to_have_text("later")
        await expect(row.locator('td[data-col="reason"]')).to_have_text(letter.reason)
        await expect(row.locator('[data-testid="trace-id"]')).to_have_text(TRACE_ID)
        shot = Path(request.config.rootpath) / ".reports" / "dashboard.png"
        shot.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
        # Replay: the agent gets it, and the letter leaves the page and the store.
        await system.spawn(Later, name="later")
        await row.get_by_role("button", name=f"Replay dead letter {letter.seq}").click()
        await expect(page.get_by_test_id("action-result")).to_contain_text("replayed 1, kept 0")
        await wait_for(lambda: Later.seen == ["do it"], 10, "the replayed letter")
        await expect(row).to_have_count(0)
        await expect(page.locator('[data-testid="dead-letters"] tbody tr')).to_have_count(1)
        assert [kept.to for kept in await system.dead_letters()] == ["crasher"]
        await expect(page.get_by_test_id("live")).to_contain_text("live")


async def test_without_a_token_only_loopback_names_and_the_page_itself_act(
    nats_server: NatsServer, tenant: str
) -> None:
    settings = Settings(nats_urls=(nats_server.url,))
    async with dashboard(settings, tenant) as url, httpx.AsyncClient() as http:
        snapshot = await http.get(f"{url}/api/snapshot")
        assert snapshot.status_code == 200
        assert snapshot.json()["tenants"][tenant]["agents"] == []
        # DNS rebinding: a name of elsewhere pointed at 127.0.0.1 gets nothing.
        rebound = await http.get(f"{url}/api/snapshot", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        assert "loopback name" in rebound.text
        replay = f"{url}/api/tenants/{tenant}/dead-letters/replay"
        # A cross-site form (no custom header), or another origin, cannot replay.
        assert (await http.post(replay, json={"seq": [1]})).status_code == 403
        foreign = {"X-Sdk-Dashboard": "1", "Origin": "http://evil.example"}
        assert (await http.post(replay, json={"seq": [1]}, headers=foreign)).status_code == 403
        own = {"X-Sdk-Dashboard": "1", "Origin": url}
        assert (await http.post(replay, json={"seq": []}, headers=own)).status_code == 400
        answer = await http.post(replay, json={"seq": [], "all": True}, headers=own)
        assert answer.status_code == 200
        assert answer.json() == {"replayed": 0, "kept": 0, "output": answer.json()["output"]}
        page = await http.get(url)
        assert page.status_code == 200 and "<title>motadata-actors dashboard</title>" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = await http.get(f"{url}/static/dashboard.js")
        assert script.status_code == 200 and "EventSource" in script.text


async def test_with_a_token_every_request_needs_it(nats_server: NatsServer, tenant: str) -> None:
    settings = Settings(nats_urls=(nats_server.url,))
    async with dashboard(settings, tenant, token=TOKEN) as url, httpx.AsyncClient() as http:
        missing = await http.get(f"{url}/api/snapshot")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in missing.text
        wrong = await http.get(f"{url}/api/snapshot", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await http.get(url)).status_code == 401
        assert (await http.get(f"{url}/?token=wrong-token-of-16-chars")).status_code == 401
        right = await http.get(
            f"{url}/api/tenants/{tenant}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert right.status_code == 200 and right.json()["tenant"] == tenant
        opened = await http.get(f"{url}/?token={TOKEN}")
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        assert "httponly" in opened.headers["set-cookie"].lower()
        assert (await http.get(f"{url}/api/snapshot")).status_code == 200  # by the cookie
        assert (await http.get(f"{url}/api/tenants/other")).status_code == 404


async def test_beyond_loopback_only_with_a_token_and_never_without_nats() -> None:
    settings = Settings(nats_urls=("nats://127.0.0.1:14222",))
    with pytest.raises(ConfigError, match="only with a token: set SDK_DASHBOARD_TOKEN"):
        await serve_dashboard(settings, ["acme"], host="0.0.0.0")
    with pytest.raises(ConfigError, match="NATS_URL"):
        await serve_dashboard(Settings(), ["acme"])
    with pytest.raises(ConfigError, match="at least 16 characters"):
        await serve_dashboard(settings, ["acme"], token="short")


def test_the_cli_names_nats_url_and_explains_the_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    assert main(["dashboard", "--tenant", "acme", "--port", "0"]) == 1
    assert "NATS_URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dashboard", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "SDK_DASHBOARD_TOKEN" in text and "loopback" in text


def test_handling_times_summarize_to_a_median_and_an_average() -> None:
    bounds = (0.001, 0.01, 0.1)
    assert handling_summary([0, 0, 0, 0], 0.0, bounds) == (None, None)
    # 4 handlings: two under 1 ms, two between 1 and 10 ms: the median is at 1 ms.
    p50, avg = handling_summary([2, 2, 0, 0], 0.012, bounds)
    assert p50 == pytest.approx(0.001) and avg == pytest.approx(0.003)
    p50, _ = handling_summary([0, 4, 0, 0], 0.02, bounds)
    assert p50 == pytest.approx(0.001 + 0.009 / 2)
    p50, _ = handling_summary([0, 0, 0, 3], 3.0, bounds)
    assert p50 == pytest.approx(0.1)  # above every bound: the last one
