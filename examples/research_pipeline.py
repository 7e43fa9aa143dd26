"""A research pipeline of agents: plan, research in parallel, survive a poison input, write.

The agents:

* ``planner`` splits a research question into sub-questions, asks the researchers for
  them all at once, then asks the writer for a report and streams it back, word by word;
* ``researcher`` runs as three replicas (one name, one shared mailbox) under the
  supervisor ``research-team``. Its mailbox is *durable* (kept in JetStream until
  handled). One sub-question points at a broken PDF that makes a researcher crash every
  time: the supervisor restarts the replica, the message is delivered once more, crashes
  again, and is then dead-lettered; the planner gets a ``RemoteError`` and goes on
  without it;
* ``writer`` streams its report (an async-generator handler, read with ``ask_stream``).

Every step is appended to the workflow ``run-1`` (``sdk.workflow.run-1.acme``, kept in
order by JetStream) by the agent that did it, and the whole run is traced with
OpenTelemetry into an in-memory exporter: at the end the example prints the workflow's
history, the dead letters (``system.dead_letters()``), the supervisor's restarts and a
summary of the trace.

Run it with ``python examples/research_pipeline.py``. It starts an embedded nats-server
on a free loopback port and stops it at the end: nothing else to set up.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from motadata_actors import (
    Actor,
    ActorSystem,
    Backoff,
    Context,
    RemoteError,
    Settings,
    message,
)
from motadata_actors.mailbox import decode_body

TENANT = "acme"
RUN_ID = "run-1"
START = time.monotonic()


HELD: list[str] | None = None  # lines said while the report streams in, printed after it


def say(who: str, text: str) -> None:
    """Print one line of the story: seconds since start, who, what.

    While the report streams in word by word, lines wait for it to end (a supervisor's
    restart note would otherwise land in the middle of the report's line).
    """
    line = f"{time.monotonic() - START:5.2f}s {who:>13} | {text}"
    if HELD is not None:
        HELD.append(line)
    else:
        print(line, flush=True)


# -- messages -------------------------------------------------------------------------------


@message("research.question.v1")
class Question:
    """The user's research question, and the id of the run's workflow."""

    run_id: str
    text: str


@message("research.subquestion.v1")
class SubQuestion:
    """One part of the question, for a researcher."""

    run_id: str
    number: int
    text: str


@message("research.draft.v1")
class Draft:
    """What the writer turns into a report."""

    run_id: str
    question: str
    findings: list[str]


@message("research.step.v1")
class Step:
    """One step of the run, as kept in its workflow."""

    agent: str
    name: str
    detail: str


# -- agents ---------------------------------------------------------------------------------

KNOWLEDGE = {
    1: "shared mutable state makes agents race and deadlock",
    2: "a mailbox per agent serialises its work without locks",
    4: "supervisors restart a crashed agent with a clean state",
}


class Researcher(Actor):
    """Answers a sub-question; crashes on a document it cannot parse (a poison input)."""

    instances = itertools.count(1)  # every instance, first start or restart, gets a number

    def __init__(self) -> None:
        self.label = f"researcher#{next(Researcher.instances)}"

    async def on_restart(self, exc: BaseException | None) -> None:
        """Run on the fresh instance that replaces a crashed one."""
        say(self.label, f"started by the supervisor after a crash ({exc!r})")

    async def on_message(self, msg: Any, ctx: Context) -> str:
        """Research one sub-question; record the finding in the run's workflow."""
        # ctx.sequence: the message's place in the durable mailbox's stream (the same
        # number when a message is delivered again).
        say(self.label, f"sub-question {msg.number}: {msg.text!r} (stream seq {ctx.sequence})")
        if msg.text.endswith(".pdf"):
            raise ValueError(f"cannot parse {msg.text.rsplit('/', 1)[-1]}: not a PDF file")
        await anyio.sleep(0.1 * msg.number)  # reading, thinking
        finding = KNOWLEDGE[msg.number]
        # The mailbox is at least once: a redelivery (after a crash past this line) must
        # not record the finding twice, so the step's id comes from the message's own.
        await ctx.workflow(msg.run_id).publish(
            Step(agent=self.label, name="finding", detail=f"#{msg.number}: {finding}"),
            message_id=f"{ctx.message_id}.finding",
        )
        return finding


class Writer(Actor):
    """Streams a short report, one word per part (as an LLM streams tokens)."""

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[str]:
        """Yield the report word by word: each yield is one part of the streamed reply."""
        words = f"{msg.question} In short: {'; '.join(msg.findings)}.".split()
        for word in words:
            await anyio.sleep(0.01)  # generating
            yield word
        await ctx.workflow(msg.run_id).publish(
            Step("writer", "report", f"{len(words)} words streamed")
        )


class Planner(Actor):
    """Runs the pipeline for a question and streams the writer's report back."""

    async def on_message(self, msg: Any, ctx: Context) -> AsyncIterator[str]:
        """Plan, research (in parallel), write; yield the report's words as they come."""
        flow = ctx.workflow(msg.run_id)
        parts = [
            "What goes wrong with shared state between agents?",
            "How do mailboxes isolate agents?",
            "Summarise https://example.org/papers/agents-survey.pdf",
            "How do supervisors recover crashed agents?",
        ]
        say("planner", f"{len(parts)} sub-questions for {msg.text!r}")
        await flow.publish(Step("planner", "plan", f"{len(parts)} sub-questions"))

        findings: dict[int, str] = {}
        # The researchers' mailbox is durable: asks to it are stored by JetStream first.
        researchers = ctx.ref("researcher", mailbox="durable")

        async def research(number: int, text: str) -> None:
            try:
                findings[number] = await researchers.ask(
                    SubQuestion(msg.run_id, number, text), timeout=10.0
                )
            except RemoteError as exc:  # the handler raised (on its last delivery)
                say("planner", f"sub-question {number} failed: {exc}")
                await flow.publish(Step("planner", "failed", f"#{number}: {exc.type_name}"))

        async with anyio.create_task_group() as tg:  # all sub-questions at once
            for number, text in enumerate(parts, start=1):
                tg.start_soon(research, number, text)
        say("planner", f"{len(findings)} of {len(parts)} findings: asking the writer")

        draft = Draft(msg.run_id, msg.text, [findings[n] for n in sorted(findings)])
        async with ctx.ref("writer").ask_stream(draft, timeout=10.0) as report:
            async for word in report:
                yield word  # relayed to whoever asked the planner, as it comes


# -- the run ----------------------------------------------------------------------------------


async def main() -> None:
    """Spawn the agents, run one question through them, then report what happened."""
    global HELD
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Two settings over the environment's: a failed durable message is delivered twice
    # (0.1 s apart) before it is dead-lettered.
    settings = Settings(durable_max_deliver=2, durable_backoff=0.1)

    async with ActorSystem(TENANT, settings=settings, tracer_provider=provider) as system:
        team = await system.spawn_supervisor(
            name="research-team",
            strategy="one_for_one",  # restart only the replica that crashed
            max_restarts=5,
            within=10.0,
            backoff=Backoff(0.05, 1.0),
        )
        for _ in range(3):  # three replicas of one agent: they share its mailbox
            await team.spawn(Researcher, name="researcher", mailbox="durable")
        await system.spawn(Writer, name="writer")
        planner = await system.spawn(Planner, name="planner")
        say("main", "planner, writer and 3 researchers (supervised, durable mailbox) are up")

        question = Question(RUN_ID, "How do actor frameworks help multi-agent AI systems?")
        tracer = provider.get_tracer("examples.research_pipeline")
        with tracer.start_as_current_span("research run"):
            async with planner.ask_stream(question, timeout=30.0) as report:
                say("main", "asking the planner: its report streams in below")
                words = 0
                async for word in report:  # the writer's words, relayed by the planner
                    if words == 0:
                        HELD = []
                        print(f"{time.monotonic() - START:5.2f}s {'report':>13} | ", end="")
                    print(word, end=" ", flush=True)
                    words += 1
                print()
                held, HELD = HELD or [], None
                for line in held:
                    print(line, flush=True)
        say("main", f"the report is complete: {words} words")

        while not team.idle:  # a restart may still be under way: let the supervisor finish
            await anyio.sleep(0.01)

        print(f"\nWorkflow {RUN_ID!r}, as kept in order on sdk.workflow.{RUN_ID}.{TENANT}:")
        for step in await system.workflow(RUN_ID).history():
            done = step.value  # a Step, decoded
            print(f"  seq {step.seq:>2}  {done.agent:<13} {done.name:<8} {done.detail}")

        print("\nDead letters (system.dead_letters()):")
        for letter in await system.dead_letters():
            body = decode_body(letter.data, letter.headers, system.codecs)
            print(f"  to {letter.to!r}: {body}\n    reason: {letter.reason}")

        crashes = system.events("crashed", "/research-team/researcher")
        restarts = system.events("restarted", "/research-team/researcher")
        print(f"\nSupervision: {len(crashes)} crashes, {len(restarts)} restarts of a researcher")

    spans = exporter.get_finished_spans()
    traces = {format(s.context.trace_id, "032x") for s in spans if s.context is not None}
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    print(f"Trace: {len(spans)} spans in {len(traces)} trace ({', '.join(traces)})")
    for name, count in Counter(span.name for span in spans).most_common():
        print(f"  {count:>3} x {name}")
    print(f"  {len(failed)} spans with an error status:")
    for span in failed:
        attributes = span.attributes or {}
        print(f"    {span.name} -> {attributes.get('sdk.agent.to')}: {span.status.description}")


if __name__ == "__main__":
    asyncio.run(main())
