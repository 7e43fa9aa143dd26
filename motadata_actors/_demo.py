"""The demo: a planner runs a three-step workflow with a researcher and a streaming writer.

The planner asks the researcher for facts, streams a draft from the writer (one part per
word), tells a monitor how it goes and publishes a ``task_completed`` event. Each step of
the goal's workflow (research, write, publish) is kept in JetStream on
``sdk.workflow.<id>.acme``; a tracker follows the workflow and reports every step, in
order. It runs on the embedded nats-server, or wherever the settings point.

A wiretap subscribed to ``sdk.>`` and the tenant's reply inbox prints who sent what on
which subject, as the server delivered it (JetStream's own traffic left out).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO

import anyio
import anyio.abc
import attrs

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings
from motadata_actors.actors import Actor, ActorSystem, Context
from motadata_actors.codecs import message
from motadata_actors.mailbox import (
    ERROR,
    MESSAGE_TYPE,
    STREAM_END,
    STREAM_SEQ,
    TIMEOUT_MS,
    Incoming,
    Mailbox,
)
from motadata_actors.telemetry import destinations

__all__ = ("run_demo",)

TENANT = "acme"


@message("demo.goal.v1")
class Goal:
    """A goal for the planner."""

    topic: str


@message("demo.research.v1")
class Research:
    """Ask the researcher for facts about a topic."""

    topic: str
    count: int = 3


@message("demo.draft.v1")
class Draft:
    """Ask the writer to turn facts into a paragraph."""

    topic: str
    facts: list[str]


@message("demo.progress.v1")
class Progress:
    """A progress note for the monitor (a tell)."""

    step: str


@message("demo.track.v1")
class Track:
    """Ask the tracker to follow a workflow."""

    workflow_id: str


@message("demo.step.v1")
class Step:
    """One step of a goal's workflow."""

    number: int
    name: str
    detail: str


@message("demo.task_completed.v1")
class TaskCompleted:
    """The event published when a goal is done."""

    topic: str
    words: int


class Researcher(Actor):
    """Answers Research with a few facts."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, Research):
            return [f"fact {i + 1} about {msg.topic}" for i in range(msg.count)]
        raise TypeError(f"researcher does not understand {type(msg).__name__}")


class Writer(Actor):
    """Streams a paragraph for a Draft, one word per part (as an LLM streams tokens)."""

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[str]:
        if not isinstance(msg, Draft):
            raise TypeError(f"writer does not understand {type(msg).__name__}")
        text = f"On {msg.topic}: " + "; ".join(msg.facts) + "."
        for word in text.split(" "):
            yield word


class Tracker(Actor):
    """Follows the workflows it is told about and reports their steps, in order."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.done = asyncio.Event()

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, Track):
            await self.follow(msg.workflow_id)  # from its first step, even if it started
        elif isinstance(msg, Step):
            self.steps.append(f"{msg.number}. {msg.name} ({msg.detail})")
            if msg.number == 3:
                self.done.set()
        return None


class Monitor(Actor):
    """Collects progress notes and task_completed events."""

    events = ("demo_task_completed_v1",)

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.done = asyncio.Event()

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, Progress):
            self.seen.append(msg.step)
        elif isinstance(msg, TaskCompleted):
            self.seen.append(f"completed {msg.topic} ({msg.words} words)")
            self.done.set()
        return None


class Planner(Actor):
    """Runs a goal's workflow: research, write (streamed), publish; reports progress.

    Without JetStream (in process) the steps are not kept, so none are published.
    """

    def __init__(self, keep_steps: bool = True) -> None:
        self.keep_steps = keep_steps

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if not isinstance(msg, Goal):
            raise TypeError(f"planner does not understand {type(msg).__name__}")
        workflow = ctx.workflow("goal-1")

        async def step(number: int, name: str, detail: str) -> None:
            if self.keep_steps:
                await workflow.publish(Step(number=number, name=name, detail=detail))

        if self.keep_steps:
            await ctx.ref("tracker").tell(Track(workflow_id=workflow.id))
        monitor = ctx.ref("monitor")
        await monitor.tell(Progress(step="researching"))
        facts = await ctx.ref("researcher").ask(Research(topic=msg.topic), timeout=2.0)
        await step(1, "research", f"{len(facts)} facts")
        await monitor.tell(Progress(step="writing"))
        draft = Draft(topic=msg.topic, facts=facts)
        async with ctx.ref("writer").ask_stream(draft, timeout=2.0) as parts:
            words = [word async for word in parts]
        await step(2, "write", f"{len(words)} words streamed")
        await ctx.publish(TaskCompleted(topic=msg.topic, words=len(words)))
        await step(3, "publish", "task_completed sent")
        return " ".join(words)


def _describe(msg: Incoming) -> str | None:
    headers = msg.headers or {}
    if (
        "Status" in headers
        or msg.reply.startswith("$JS.")
        or msg.data.startswith((b'{"stream"', b'{"type":"io.nats.jetstream.api'))
    ):
        return None  # JetStream's own: API replies, pull status, deliveries, acknowledgements
    if msg.subject.endswith(".ctl"):
        kind = f"stream credit {headers.get(STREAM_SEQ, '')}".strip()
    elif ERROR in headers:
        kind = f"error {headers[ERROR]}"
    elif STREAM_SEQ in headers:
        kind = f"stream part {headers[STREAM_SEQ]}{' (end)' if STREAM_END in headers else ''}"
    elif msg.subject.startswith("_INBOX"):
        kind = "reply"
    elif msg.subject.startswith("sdk.events."):
        kind = "event"
    elif msg.subject.startswith("sdk.workflow."):
        kind = "workflow step (kept)"
    elif TIMEOUT_MS in headers:
        kind = f"ask (timeout {headers[TIMEOUT_MS]} ms)"
    else:
        kind = "tell"
    wire = headers.get(MESSAGE_TYPE, "-")
    subject = msg.subject
    if len(subject) > 40:
        subject = subject[:30] + "..." + subject[-7:]
    body = msg.data.decode(errors="replace")
    if len(body) > 60:
        body = body[:57] + "..."
    return f"  {subject:<40} {kind:<22} {wire:<24} {body}"


async def _wiretap(tap: Mailbox[Incoming], out: TextIO) -> None:
    async for msg in tap:
        line = _describe(msg)
        if line is not None:
            print(line, file=out, flush=True)


def _where_to_look(settings: Settings, dashboard: str | None) -> list[str]:
    """Where the demo's agents can be watched: the telemetry's exports and the dashboard."""
    exports = destinations() if settings.enable_otel else ()
    if exports:
        lines = [f"telemetry: {where}" for where in exports]
    elif settings.enable_otel:
        lines = ["telemetry: on, exported nowhere (set OTEL_EXPORTER_OTLP_ENDPOINT or "
                 "SDK_PROMETHEUS_PORT)"]  # fmt: skip
    else:
        lines = [
            "telemetry: off (ENABLE_OTEL=true with OTEL_EXPORTER_OTLP_ENDPOINT exports "
            "traces, metrics and logs; SDK_PROMETHEUS_PORT serves a scrape endpoint)"
        ]
    if dashboard is not None:
        lines.append(f"dashboard: {dashboard} (live while the agents run; Ctrl-C stops)")
    elif settings.enable_nats:
        lines.append("dashboard: `python -m motadata_actors demo --dashboard` keeps these "
                     "agents running beside a live page of them")  # fmt: skip
    return lines


async def run_demo(
    settings: Settings | None = None, out: TextIO = sys.stdout, *, dashboard: bool = False
) -> str:
    """Run the demo and return the writer's text.

    With ``ENABLE_NATS=false`` it runs in process, without the workflow (JetStream keeps
    workflow steps) and says so. With ``dashboard`` it serves the dashboard of its tenant
    on a free loopback port while it runs, and afterwards keeps the agents and the page
    up until cancelled (Ctrl-C).

    Raises:
        ConfigError: ``dashboard`` in process (the dashboard reads the agents over NATS),
            or without the ``gateway`` extra.
    """
    settings = settings if settings is not None else Settings()
    keep_steps = settings.enable_nats
    if dashboard and not keep_steps:
        raise ConfigError("the dashboard reads the agents over NATS: not with ENABLE_NATS=false")
    async with (
        ActorSystem(tenant=TENANT, settings=settings) as system,
        anyio.create_task_group() as page,
    ):
        url = await _serve_dashboard(page, system, settings) if dashboard else None
        server = system.embedded_server
        where = f"embedded nats-server at {server.url}" if server else system.transport.description
        if not keep_steps:
            where = "the in-process transport (ENABLE_NATS=false)"
        print(f"motadata-actors demo: tenant {TENANT!r} on {where}", file=out)
        if not keep_steps:
            print("  no workflow steps: JetStream keeps them (set ENABLE_NATS=true)", file=out)
        tap: Mailbox[Incoming] = Mailbox(10_000)
        subs = [
            await system.transport.subscribe("sdk.>", mailbox=tap),
            await system.transport.subscribe(f"_INBOX_{TENANT}.>", mailbox=tap),
        ]
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wiretap, tap, out)
            monitor = Monitor()
            await system.spawn(lambda: monitor, name="monitor")
            tracker = Tracker()
            if keep_steps:
                await system.spawn(lambda: tracker, name="tracker")
            else:
                tracker.done.set()
            await system.spawn(Researcher, name="researcher")
            await system.spawn(Writer, name="writer")
            planner = await system.spawn(lambda: Planner(keep_steps), name="planner")
            print(f"  {'subject':<40} {'kind':<22} {'type':<24} body", file=out)
            text: str = await planner.ask(Goal(topic="actor systems"), timeout=5.0)
            with anyio.fail_after(5.0):
                await monitor.done.wait()
                await tracker.done.wait()
            for sub in subs:
                await sub.unsubscribe()
            await anyio.sleep(0.05)  # deliveries already under way still reach the tap
            tap.close()
        print(f"planner replied: {text}", file=out)
        print(f"monitor saw: {', '.join(monitor.seen)}", file=out)
        if keep_steps:
            print(f"tracker followed workflow goal-1: {'; '.join(tracker.steps)}", file=out)
        print("where to look:", file=out)
        for line in _where_to_look(settings, url):
            print(f"  {line}", file=out, flush=True)
        if url is None:
            page.cancel_scope.cancel()
        else:
            await anyio.sleep_forever()
    return text


async def _serve_dashboard(
    group: anyio.abc.TaskGroup, system: ActorSystem, settings: Settings
) -> str:
    """Serve the dashboard of the demo's tenant in ``group``; its URL once it answers."""
    from motadata_actors._dashboard import serve_dashboard

    server = system.embedded_server
    if server is not None:  # the dashboard is a client of the same server
        settings = attrs.evolve(settings, nats_urls=(server.url,))
    ready: list[str] = []
    listening = anyio.Event()

    def started(url: str) -> None:
        ready.append(url)
        listening.set()

    group.start_soon(functools.partial(serve_dashboard, settings, [TENANT], port=0, ready=started))
    await listening.wait()
    return ready[0]
