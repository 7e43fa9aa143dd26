"""Status events: life-cycle changes and progress, live, on both transports and the CLI."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from motadata_actors import (
    Actor,
    ActorSystem,
    AgentLifecycle,
    ConfigError,
    ConnectionLost,
    Context,
    Progress,
    RemoteError,
    Settings,
    SubjectError,
    Subscribe,
)
from motadata_actors.actors import StatusFeed
from motadata_actors.actors._status_events import StatusPublisher
from motadata_actors.codecs import Codecs
from motadata_actors.mailbox import (
    InProcessTransport,
    NatsAuth,
    NatsServer,
    TenantUser,
    parse_subject,
    server_config,
    tenant_permissions,
)
from motadata_actors.mailbox._envelope import decode_body, seal
from motadata_actors.mailbox._subjects import status_event_subject

from ..conftest import connect, system_on, wait_for

pytestmark = pytest.mark.anyio

TRANSPORTS = ["inprocess", "nats"]


async def collect(
    feed: StatusFeed, until: Callable[[list[Any]], bool], timeout: float = 10.0
) -> list[Any]:
    """Read ``feed`` until ``until(events)`` holds; fail after ``timeout`` seconds."""
    events: list[Any] = []
    with anyio.fail_after(timeout):
        async for event in feed:
            events.append(event)
            if until(events):
                return events
    raise AssertionError(f"the feed ended before the condition held: {events}")


def changes(events: list[Any], agent: str) -> list[str]:
    return [e.change for e in events if isinstance(e, AgentLifecycle) and e.agent == agent]


class Crasher(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "boom":
            raise RuntimeError("boom on purpose")
        return msg


class Worker(Actor):
    """Reports progress three times, then answers; records what it saw of its message."""

    seen: ClassVar[list[tuple[str | None, str]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "bad amount":
            await ctx.progress(done="three")  # type: ignore[arg-type]
        Worker.seen.append((ctx.message_id, ctx.correlation_id))
        for i in range(1, 4):
            await ctx.progress(f"step {i}", done=i, total=3)
        return f"done: {msg}"


@pytest.fixture(autouse=True)
def _clear() -> None:
    Worker.seen.clear()
    Watcher.seen.clear()


# -- life cycles -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_follower_sees_started_crashed_restarted_stopped_in_order(
    transport: str, nats_server: NatsServer, tenant: str
) -> None:
    async with (
        system_on(transport, nats_server, tenant) as system,
        system.follow_status(progress=False) as feed,
    ):
        workers = await system.spawn_supervisor(name="workers", max_restarts=5, within=60)
        crasher = await workers.spawn(Crasher, name="crasher")
        await crasher.tell("boom")
        await wait_for(lambda: bool(system.events("restarted", "/workers/crasher")), 10, "restart")
        assert await crasher.ask("still here", timeout=5) == "still here"
        assert await workers.stop_child("crasher") == 1
        events = await collect(feed, lambda ev: "stopped" in changes(ev, "crasher"))

    assert changes(events, "crasher") == ["started", "crashed", "restarted", "stopped"]
    mine = [e for e in events if e.agent == "crasher"]  # life cycles only: progress=False
    assert {e.path for e in mine} == {"/workers/crasher"}
    assert "RuntimeError: boom on purpose" in mine[1].reason
    assert "RuntimeError: boom on purpose" in mine[2].reason
    assert {(e.pid, e.key) for e in mine} == {(os.getpid(), None)}
    assert all(e.host for e in mine)
    assert [e.time for e in mine] == sorted(e.time for e in mine)
    # Supervisors are not agents: their own changes are not published.
    assert not [e for e in events if e.agent == "workers" or e.path == "/workers"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_keyed_instances_are_seen_activated_then_deactivated_when_idle(
    transport: str, nats_server: NatsServer, tenant: str
) -> None:
    async with (
        system_on(transport, nats_server, tenant) as system,
        system.follow_status() as feed,
    ):
        await system.spawn_keyed(Worker, kind="chat", idle_after=0.2)
        reports: list[Progress] = []
        answer = await system.ref("chat", key="ada").ask(
            "hi", timeout=10, on_progress=reports.append
        )
        assert answer == "done: hi"
        events = await collect(feed, lambda ev: "deactivated" in changes(ev, "chat~ada"))

    assert changes(events, "chat") == ["started"]  # the kind, in this process
    assert changes(events, "chat~ada") == ["activated", "deactivated"]
    activated, deactivated = [
        e for e in events if isinstance(e, AgentLifecycle) and e.agent == "chat~ada"
    ]
    assert (activated.key, activated.path) == ("ada", "/chat")
    assert activated.reason.startswith("fencing token ")
    assert deactivated.reason == "idle or stopped"
    assert [r.agent for r in reports] == ["chat~ada"] * 3  # its progress names the instance
    seen = [e for e in events if isinstance(e, Progress)]
    assert [p.value for p in seen] == ["step 1", "step 2", "step 3"]


# -- progress ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_progress_reaches_the_asker_before_the_reply_and_the_followers(
    transport: str, nats_server: NatsServer, tenant: str
) -> None:
    async with (
        system_on(transport, nats_server, tenant) as system,
        system.follow_status(lifecycle=False) as feed,
    ):
        worker = await system.spawn(Worker, name="worker")
        by_callback: list[Progress] = []

        async def on_progress(report: Progress) -> None:
            await asyncio.sleep(0.01)  # a slow callback: the ask still waits for all of them
            by_callback.append(report)

        assert await worker.ask("job", timeout=10, on_progress=on_progress) == "done: job"
        assert [(r.value, r.done, r.total) for r in by_callback] == [
            ("step 1", 1.0, 3.0),
            ("step 2", 2.0, 3.0),
            ("step 3", 3.0, 3.0),
        ]
        assert by_callback[-1].fraction == 1.0
        followed = await collect(feed, lambda ev: len(ev) == 3)

        # A plain function works too, and a tell reports to the followers alone.
        plain: list[Progress] = []
        assert await worker.ask("again", timeout=10, on_progress=plain.append) == "done: again"
        assert len(plain) == 3
        await worker.tell("told")
        told = await collect(feed, lambda ev: len(ev) == 6)

    (message_id, correlation), *_ = Worker.seen
    assert message_id is not None
    assert correlation == message_id  # an ask from outside any handler starts a conversation
    for report in [*by_callback, *followed]:
        assert (report.agent, report.message_id, report.correlation_id) == (
            "worker",
            message_id,
            message_id,
        )
    assert followed == by_callback  # the very same reports, correlated to the ask
    assert [p.correlation_id for p in told[3:]] == [Worker.seen[2][1]] * 3
    assert Worker.seen[2][1] != message_id


async def test_progress_from_a_durable_mailbox_reaches_its_asker(
    nats_server: NatsServer, tenant: str
) -> None:
    async with system_on("nats", nats_server, tenant) as system:
        await system.spawn(Worker, name="keeper", mailbox="durable")
        keeper = system.ref("keeper", mailbox="durable")
        reports: list[Progress] = []
        assert await keeper.ask("kept", timeout=10, on_progress=reports.append) == "done: kept"
        assert [r.done for r in reports] == [1.0, 2.0, 3.0]


async def test_bad_progress_fails_the_handler_and_a_bad_callback_is_refused(
    system: ActorSystem,
) -> None:
    worker = await system.spawn(Worker, name="worker")
    with pytest.raises(RemoteError, match="done must be a finite number"):
        await worker.ask("bad amount", timeout=5)
    with pytest.raises(ConfigError, match="on_progress must be callable"):
        await worker.ask("x", timeout=5, on_progress="print")  # type: ignore[arg-type]


async def test_a_raising_callback_is_logged_and_the_ask_goes_on(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    worker = await system.spawn(Worker, name="worker")

    def broken(report: Progress) -> None:
        raise ValueError(f"cannot show {report.value}")

    with caplog.at_level(logging.ERROR):
        assert await worker.ask("job", timeout=5, on_progress=broken) == "done: job"
    raised = [r for r in caplog.records if "on_progress callback raised" in r.getMessage()]
    assert len(raised) == 3


class ProgressWatcher(Actor):
    """Follows progress; records each report's trace context."""

    events = ("sdk~progress",)
    traces: ClassVar[list[str]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, Progress):
            ProgressWatcher.traces.append(ctx.headers.get("traceparent", ""))
        return None


async def test_progress_carries_the_trace_of_the_handled_message(tenant: str) -> None:
    ProgressWatcher.traces.clear()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with ActorSystem(
            tenant, transport=InProcessTransport(), settings=Settings(enable_nats=False),
            handle_signals=False, tracer_provider=provider,
        ) as system:  # fmt: skip
            await system.spawn(ProgressWatcher, name="progress-watcher")
            worker = await system.spawn(Worker, name="worker")
            assert await worker.ask("job", timeout=5) == "done: job"
            await wait_for(lambda: len(ProgressWatcher.traces) == 3, 10, "three reports")
        handled = [
            s
            for s in exporter.get_finished_spans()
            if s.name == "process sdk.agent.{from}.{to}.{tenant}"
        ]
        assert len(handled) == 1
        trace_id = format(handled[0].context.trace_id, "032x")
        assert [t.split("-")[1] for t in ProgressWatcher.traces] == [trace_id] * 3
    finally:
        provider.shutdown()


@pytest.mark.parametrize("codec", ["json", "msgpack", "cbor", "protobuf"])
def test_status_events_travel_in_every_codec(codec: str) -> None:
    codecs = Codecs(codec)
    for event in (
        AgentLifecycle(agent="chat~ada", change="activated", path="/chat", key="ada", pid=7),
        Progress(agent="w", value={"step": [1, "two"]}, done=1.0, total=None, time=2.5),
        Progress(agent="w"),
    ):
        sealed = seal(event, codecs.default)
        assert decode_body(sealed.data, sealed.headers, codecs) == event


# -- actors follow them like events --------------------------------------------------------


class Watcher(Actor):
    """Follows life cycles; records (event type, agent, change)."""

    events = ("sdk~lifecycle",)
    seen: ClassVar[list[tuple[str | None, str, str]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, AgentLifecycle):
            Watcher.seen.append((ctx.event_type, msg.agent, msg.change))
        return None


class Everything(Actor):
    """Subscribes to every event of the tenant: status events are not among them."""

    events = ("*",)
    seen: ClassVar[list[tuple[str | None, Any]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Everything.seen.append((ctx.event_type, msg))
        return None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_actor_follows_status_events_and_star_does_not_include_them(
    transport: str, nats_server: NatsServer, tenant: str
) -> None:
    Everything.seen.clear()
    async with system_on(transport, nats_server, tenant) as system:
        await system.spawn(Watcher, name="watcher")
        await system.spawn(Everything, name="everything")
        await system.spawn(Crasher, name="late")
        await wait_for(
            lambda: ("sdk~lifecycle", "late", "started") in Watcher.seen, 10, "late's start"
        )
        assert ("sdk~lifecycle", "everything", "started") in Watcher.seen
        await system.publish({"n": 1}, event_type="task_completed")
        await wait_for(lambda: bool(Everything.seen), 10, "the plain event")
    assert Everything.seen == [("task_completed", {"n": 1})]


async def test_reserved_event_types(system: ActorSystem) -> None:
    assert Subscribe("sdk~lifecycle").subject("acme") == "sdk.status.lifecycle.acme"
    assert Subscribe("sdk~progress", broadcast=True).subject("acme") == "sdk.status.progress.acme"
    with pytest.raises(SubjectError, match="reserved"):
        Subscribe("sdk~other")
    with pytest.raises(ConfigError, match="never kept"):
        Subscribe("sdk~lifecycle", durable=True)
    with pytest.raises(SubjectError, match="reserved"):
        await system.publish({"forged": True}, event_type="sdk~lifecycle")
    parsed = parse_subject("sdk.status.progress.acme")
    assert (parsed.kind, parsed.target, parsed.tenant) == ("status", "progress", "acme")
    assert str(parsed) == "sdk.status.progress.acme"
    with pytest.raises(SubjectError):
        status_event_subject("other", "acme")
    assert "sdk.status.*.acme" in tenant_permissions("acme")["subscribe"]


# -- failures, off, and overflow -----------------------------------------------------------


class Flaky:
    """An in-process transport whose status publishes (and progress to askers) fail."""

    def __init__(self, tenant: str) -> None:
        self.inner = InProcessTransport()
        self.refused = ("sdk.status.", f"_INBOX_{tenant}.")
        self.failed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        if subject.startswith(self.refused):
            self.failed.append(subject)
            raise ConnectionLost(f"refused on purpose: {subject}")
        await self.inner.publish(subject, data, headers=headers, reply=reply)


async def test_failed_status_publishes_never_crash_an_actor(
    tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(tenant)
    settings = Settings(enable_nats=False)
    with caplog.at_level(logging.WARNING):
        async with ActorSystem(
            tenant,
            transport=flaky,
            settings=settings,
            handle_signals=False,  # type: ignore[arg-type]
        ) as system:
            worker = await system.spawn(Worker, name="worker")
            crasher = await system.spawn(Crasher, name="crasher")
            reports: list[Progress] = []
            assert await worker.ask("job", timeout=5, on_progress=reports.append) == "done: job"
            await crasher.tell("boom")
            await wait_for(lambda: bool(system.events("restarted", "/crasher")), 10, "restart")
            assert await crasher.ask("fine", timeout=5) == "fine"
            await wait_for(
                lambda: any("status event on sdk.status" in r.getMessage() for r in caplog.records),
                10,
                "the lost status event logged",
            )
    assert reports == []  # every report to the asker was lost on the way
    assert any(s.startswith("sdk.status.lifecycle.") for s in flaky.failed)
    assert any(s.startswith("sdk.status.progress.") for s in flaky.failed)
    assert any("progress report to its asker lost" in r.getMessage() for r in caplog.records)


class Spy:
    """An in-process transport that remembers every subject published on."""

    def __init__(self) -> None:
        self.inner = InProcessTransport()
        self.subjects: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish(self, subject: str, data: bytes, **kwargs: Any) -> None:
        self.subjects.append(subject)
        await self.inner.publish(subject, data, **kwargs)


async def test_turned_off_nothing_is_published_but_the_asker_still_hears(tenant: str) -> None:
    spy = Spy()
    settings = Settings(enable_nats=False, status_events=False)
    async with ActorSystem(
        tenant,
        transport=spy,
        settings=settings,
        handle_signals=False,  # type: ignore[arg-type]
    ) as system:
        worker = await system.spawn(Worker, name="worker")
        reports: list[Progress] = []
        assert await worker.ask("job", timeout=5, on_progress=reports.append) == "done: job"
        await worker.tell("told")
        await wait_for(lambda: len(Worker.seen) == 2, 10, "the tell handled")
        await system.stop("worker")
    assert [r.done for r in reports] == [1.0, 2.0, 3.0]
    assert not [s for s in spy.subjects if s.startswith("sdk.status.")]
    assert Settings.from_env({"SDK_STATUS_EVENTS": "false"}).status_events is False
    assert Settings.from_env({}).status_events is True


async def test_a_stuck_follower_never_blocks_an_actor_or_the_exit(tenant: str) -> None:
    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=Settings(enable_nats=False),
        handle_signals=False,
    ) as system:  # fmt: skip
        stuck = system.follow_status(capacity=1)  # never read
        await stuck.open()
        names = [f"w{i}" for i in range(5)]
        for name in names:
            ref = await system.spawn(Worker, name=name)
            assert await ref.ask("job", timeout=5) == "done: job"
        with anyio.fail_after(5):
            for name in names:
                await system.stop(name)
    # The exit gave the last changes a bounded time: it is over, the feed ended.
    received = [event async for event in stuck]
    assert 1 <= len(received) <= 2


async def test_a_full_queue_drops_and_counts(system: ActorSystem) -> None:
    from motadata_actors.actors._events import SupervisionEvent

    publisher = StatusPublisher(system._runtime, capacity=2)  # never run: nothing drains it
    for i in range(5):
        publisher.changed(SupervisionEvent("started", f"/a{i}", "", 0.0, f"a{i}"))
    publisher.changed(SupervisionEvent("retry", "/a", "", 0.0, "a"))  # not a change: ignored
    publisher.changed(SupervisionEvent("started", "/", "", 0.0, None))  # a supervisor's
    assert publisher.dropped == 3


# -- tenancy: a confined tenant user may publish and follow its own status events ----------


async def test_a_confined_tenant_follows_its_own_status_events(tmp_path: Path) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    conf = tmp_path / "tenants.conf"
    conf.write_text(server_config([TenantUser("st", password=password)]))
    name = f"status-{uuid.uuid4().hex[:8]}"
    with NatsServer(server_name=name, args=["-c", str(conf)]) as server:
        auth = NatsAuth(user="st", password=password)
        transport = await connect(server, inbox_prefix="_INBOX_st", auth=auth)
        async with (
            ActorSystem("st", transport=transport, handle_signals=False) as system,
            system.follow_status() as feed,
        ):
            worker = await system.spawn(Worker, name="worker")
            reports: list[Progress] = []
            assert await worker.ask("job", timeout=5, on_progress=reports.append) == "done: job"
            events = await collect(feed, lambda ev: sum(isinstance(e, Progress) for e in ev) == 3)
            assert not system.events("refused")
        assert changes(events, "worker") == ["started"]
        assert len(reports) == 3


# -- the command line ----------------------------------------------------------------------


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The child's stdout lines, read by a thread into a queue."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


async def _wait_line(lines: queue.Queue[str], seen: list[str], needle: str) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        for line in seen:
            if needle in line:
                return line
        try:
            seen.append(lines.get_nowait())
            continue
        except queue.Empty:
            pass
        if loop.time() > deadline:
            raise AssertionError(f"no line with {needle!r} in {seen}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_the_cli_follows_status_events_live(nats_server: NatsServer, tenant: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "SDK_"))}
    env.update(NATS_URL=nats_server.url, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "motadata_actors", "status", "--follow", "--tenant", tenant],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = _lines(proc)
        seen: list[str] = []
        ready = await _wait_line(lines, seen, "following")
        assert f"sdk.status.*.{tenant}" in ready
        async with system_on("nats", nats_server, tenant) as system:
            worker = await system.spawn(Worker, name="worker")
            assert await worker.ask("job", timeout=10) == "done: job"
            crasher = await system.spawn(Crasher, name="crasher")
            await crasher.tell("boom")
            started = await _wait_line(lines, seen, "started     worker")
            assert "/worker on " in started and f":{os.getpid()}" in started
            progress = await _wait_line(lines, seen, "3/3 (100%)")
            assert "worker" in progress and "'step 3'" in progress
            restarted = await _wait_line(lines, seen, "restarted   crasher")
            assert "RuntimeError: boom on purpose" in restarted
    finally:
        proc.terminate()  # by its pid: SIGTERM, as an operator's Ctrl-C would end it
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            errors = proc.stderr.read()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
    assert "Traceback" not in errors, errors
    assert proc.returncode == 130


async def test_the_cli_refuses_to_follow_without_nats(tenant: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "SDK_"))}
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "status", "--follow", "--tenant", tenant],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert out.returncode == 1
    assert "set NATS_URL" in out.stderr
