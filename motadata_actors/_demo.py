"""The demo: a planner asks a researcher and a writer, tells a monitor, publishes an event.

It runs on the embedded nats-server, or wherever the settings point.

A wiretap subscribed to ``sdk.>`` and the tenant's reply inbox prints who sent what
on which subject, as the server delivered it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

import anyio

from motadata_actors._settings import Settings
from motadata_actors.actors import Actor, ActorSystem, Context
from motadata_actors.codecs import message
from motadata_actors.mailbox import ERROR, MESSAGE_TYPE, TIMEOUT_MS, Incoming, Mailbox

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
    """Answers Draft with a paragraph."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if isinstance(msg, Draft):
            return f"On {msg.topic}: " + "; ".join(msg.facts) + "."
        raise TypeError(f"writer does not understand {type(msg).__name__}")


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
    """Plans a goal: research, then write, reporting progress and a final event."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if not isinstance(msg, Goal):
            raise TypeError(f"planner does not understand {type(msg).__name__}")
        monitor = ctx.ref("monitor")
        await monitor.tell(Progress(step="researching"))
        facts = await ctx.ref("researcher").ask(Research(topic=msg.topic), timeout=2.0)
        await monitor.tell(Progress(step="writing"))
        text: str = await ctx.ref("writer").ask(Draft(topic=msg.topic, facts=facts), timeout=2.0)
        await ctx.publish(TaskCompleted(topic=msg.topic, words=len(text.split())))
        return text


def _describe(msg: Incoming) -> str:
    headers = msg.headers or {}
    if ERROR in headers:
        kind = f"error {headers[ERROR]}"
    elif msg.subject.startswith("_INBOX"):
        kind = "reply"
    elif msg.subject.startswith("sdk.events."):
        kind = "event"
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
        print(_describe(msg), file=out, flush=True)


async def run_demo(settings: Settings | None = None, out: TextIO = sys.stdout) -> str:
    """Run the demo and return the writer's text."""
    async with ActorSystem(tenant=TENANT, settings=settings) as system:
        server = system.embedded_server
        where = f"embedded nats-server at {server.url}" if server else system.transport.description
        print(f"motadata-actors demo: tenant {TENANT!r} on {where}", file=out)
        tap: Mailbox[Incoming] = Mailbox(10_000)
        subs = [
            await system.transport.subscribe("sdk.>", mailbox=tap),
            await system.transport.subscribe(f"_INBOX_{TENANT}.>", mailbox=tap),
        ]
        async with anyio.create_task_group() as tg:
            tg.start_soon(_wiretap, tap, out)
            monitor = Monitor()
            await system.spawn(lambda: monitor, name="monitor")
            await system.spawn(Researcher, name="researcher")
            await system.spawn(Writer, name="writer")
            planner = await system.spawn(Planner, name="planner")
            print(f"  {'subject':<40} {'kind':<22} {'type':<24} body", file=out)
            text: str = await planner.ask(Goal(topic="actor systems"), timeout=5.0)
            with anyio.fail_after(5.0):
                await monitor.done.wait()
            for sub in subs:
                await sub.unsubscribe()
            await anyio.sleep(0.05)  # deliveries already under way still reach the tap
            tap.close()
        print(f"planner replied: {text}", file=out)
        print(f"monitor saw: {', '.join(monitor.seen)}", file=out)
    return text
