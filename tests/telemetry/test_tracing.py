"""One trace across agents and processes; conventions; propagation; metrics; logs; off is off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import propagate
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind

from motadata_actors import Actor, ActorSystem, AskTimeout, Backoff, Context, RemoteError, Settings
from motadata_actors.mailbox import NatsServer
from motadata_actors.telemetry import CORRELATED_FORMAT, CorrelationFilter

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio

TEMPLATE = "sdk.agent.{from}.{to}.{tenant}"


class Writer(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "boom":
            raise ValueError("no ink")
        logging.getLogger("tests.writer").warning("writing %s", msg)
        return f"draft of {msg}"


class Planner(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return await ctx.ref("writer").ask(msg, timeout=5)


async def traced(tenant: str, server: NatsServer, provider: TracerProvider) -> ActorSystem:
    """A system of ``tenant`` on ``server`` whose spans go to ``provider``."""
    return ActorSystem(tenant, transport=await connect(server), tracer_provider=provider)


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        out.setdefault(span.name, []).append(span)
    return out


async def test_a_conversation_is_one_trace_with_conventional_spans(
    spans: tuple[TracerProvider, InMemorySpanExporter], nats_server: NatsServer, tenant: str
) -> None:
    provider, exporter = spans
    async with await traced(tenant, nats_server, provider) as system:
        await system.spawn(Writer, name="writer")
        planner = await system.spawn(Planner, name="planner")
        assert await planner.ask("ship", timeout=5) == "draft of ship"
    finished = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    sends = [s for s in finished if s.name == f"send {TEMPLATE}"]
    processes = [s for s in finished if s.name == f"process {TEMPLATE}"]
    replies = [s for s in finished if s.name == "send"]
    assert len(sends) == 2 and len(processes) == 2 and len(replies) == 2
    client_send = next(s for s in sends if s.attributes["sdk.agent.from"] == "client")
    planner_process = next(s for s in processes if s.attributes["sdk.agent.to"] == "planner")
    planner_send = next(s for s in sends if s.attributes["sdk.agent.from"] == "planner")
    writer_process = next(s for s in processes if s.attributes["sdk.agent.to"] == "writer")
    # The tree: client send -> planner process -> planner send -> writer process.
    assert client_send.parent is None
    assert planner_process.parent.span_id == client_send.context.span_id
    assert planner_send.parent.span_id == planner_process.context.span_id
    assert writer_process.parent.span_id == planner_send.context.span_id
    for reply in replies:
        assert reply.kind == SpanKind.PRODUCER
        assert reply.attributes["messaging.destination.temporary"] is True
        assert reply.parent.span_id in {
            planner_process.context.span_id,
            writer_process.context.span_id,
        }
    assert {s.kind for s in sends} == {SpanKind.PRODUCER}
    assert {s.kind for s in processes} == {SpanKind.CONSUMER}
    attrs = writer_process.attributes
    assert attrs["messaging.system"] == "nats"
    assert attrs["messaging.operation.name"] == "process"
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.destination.template"] == TEMPLATE
    assert attrs["messaging.destination.name"] == f"sdk.agent.planner.writer.{tenant}"
    assert attrs["messaging.message.id"] and attrs["messaging.message.body.size"] == len(b'"ship"')
    assert (
        attrs["messaging.message.conversation_id"]
        == planner_process.attributes["messaging.message.id"]
    )
    assert (attrs["sdk.agent.from"], attrs["sdk.agent.to"], attrs["sdk.tenant.id"]) == (
        "planner",
        "writer",
        tenant,
    )
    assert client_send.attributes["messaging.operation.name"] == "send"


class Hub(Actor):
    """Streams two parts, then publishes an event and a workflow step, in one trace."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        await ctx.stream("a")
        await ctx.stream("b")
        await ctx.publish("done", event_type="hub_done", durable=True)
        await ctx.workflow("wf").publish("step")
        return "c"


class Listener(Actor):
    events = ("hub_done",)

    async def on_start(self) -> None:
        await self.follow("wf")

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return None


async def test_streams_events_and_workflow_steps_are_traced(
    spans: tuple[TracerProvider, InMemorySpanExporter], nats_server: NatsServer, tenant: str
) -> None:
    provider, exporter = spans
    async with await traced(tenant, nats_server, provider) as system:
        await system.spawn(Listener, name="listener")
        hub = await system.spawn(Hub, name="hub")
        assert [p async for p in hub.ask_stream("go", timeout=10)] == ["a", "b", "c"]

        def listener_handled() -> int:
            return next(s for s in system.statistics() if s.name == "listener").handled

        await wait_for(lambda: listener_handled() == 2, 5, "the listener's two messages handled")
    named = by_name(exporter.get_finished_spans())
    ask = named[f"send {TEMPLATE}"][0]
    assert ask.attributes["sdk.stream.parts"] == 3  # the consumer's span counts the parts
    hub_process = next(
        s for s in named[f"process {TEMPLATE}"] if s.attributes["sdk.agent.to"] == "hub"
    )
    assert hub_process.parent.span_id == ask.context.span_id
    event_send = named["send sdk.events.{event_type}.{tenant}"][0]
    step_send = named["send sdk.workflow.{workflow_id}.{tenant}"][0]
    event_process = named["process sdk.events.{event_type}.{tenant}"][0]
    step_process = named["process sdk.workflow.{workflow_id}.{tenant}"][0]
    for send in (event_send, step_send):
        assert send.parent.span_id == hub_process.context.span_id
        assert send.attributes["sdk.agent.to"] == "-"  # no single recipient
    assert event_process.parent.span_id == event_send.context.span_id
    assert step_process.parent.span_id == step_send.context.span_id
    assert len({s.context.trace_id for spans_ in named.values() for s in spans_}) == 1


async def test_errors_timeouts_and_retries_are_recorded_on_spans(
    spans: tuple[TracerProvider, InMemorySpanExporter], tenant: str, nats_server: NatsServer
) -> None:
    provider, exporter = spans

    class Hung(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            await anyio.sleep(30)

    async with await traced(tenant, nats_server, provider) as system:
        writer = await system.spawn(Writer, name="writer")
        hung = await system.spawn(Hung, name="hung")
        with pytest.raises(RemoteError):
            await writer.ask("boom", timeout=5)
        with pytest.raises(AskTimeout):
            await hung.ask("x", timeout=5, attempt_timeout=0.2, attempts=3)
    finished = exporter.get_finished_spans()
    failed_process = next(
        s
        for s in finished
        if s.name.startswith("process") and s.attributes["sdk.agent.to"] == "writer"
    )
    assert failed_process.status.status_code.name == "ERROR"
    assert any(e.name == "exception" for e in failed_process.events)
    ask = next(
        s
        for s in finished
        if s.name.startswith("send sdk") and s.attributes["sdk.agent.to"] == "hung"
    )
    assert ask.status.status_code.name == "ERROR"
    assert [e.name for e in ask.events if e.name != "exception"] == [
        "AskTimeout",
        "AskTimeout",
        "AskTimeout",
    ]
    assert ask.attributes["sdk.attempt"] == 3


class MarkerPropagator(TextMapPropagator):
    """Carries the trace id in a header of its own (and nothing else)."""

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        from opentelemetry import trace

        sc = trace.get_current_span(context).get_span_context()
        if sc.is_valid:
            carrier["X-Marker-Trace"] = format(sc.trace_id, "032x")

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        return context if context is not None else __import__("opentelemetry").context.Context()

    @property
    def fields(self) -> set[str]:
        return {"X-Marker-Trace"}


async def test_a_custom_propagator_set_by_the_user_is_used(
    spans: tuple[TracerProvider, InMemorySpanExporter], tenant: str
) -> None:
    provider, exporter = spans
    seen: list[dict[str, str]] = []

    class Peek(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            seen.append(dict(ctx.headers))

    original = propagate.get_global_textmap()
    propagate.set_global_textmap(MarkerPropagator())
    try:
        async with ActorSystem(
            tenant, settings=Settings(enable_nats=False), tracer_provider=provider
        ) as system:
            ref = await system.spawn(Peek, name="peek")
            await ref.ask("x", timeout=5)
    finally:
        propagate.set_global_textmap(original)
    send = next(s for s in exporter.get_finished_spans() if s.name.startswith("send sdk"))
    assert seen[0]["X-Marker-Trace"] == format(send.context.trace_id, "032x")
    assert "traceparent" not in seen[0]


async def test_unsampled_context_still_travels_and_no_span_is_made(tenant: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[str] = []

    class Peek(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            seen.append(ctx.headers["traceparent"])
            if msg == "first":
                await ctx.ref("peek").tell("second")

    async with ActorSystem(
        tenant, settings=Settings(enable_nats=False), tracer_provider=provider
    ) as system:
        ref = await system.spawn(Peek, name="peek")
        await ref.ask("first", timeout=5)
        with anyio.fail_after(5):
            while len(seen) < 2:
                await anyio.sleep(0.01)
    assert exporter.get_finished_spans() == ()
    assert all(int(tp.split("-")[3], 16) & 1 == 0 for tp in seen), seen  # not sampled
    assert seen[0].split("-")[1] == seen[1].split("-")[1]  # the same trace goes on


async def test_metrics_are_exact_after_a_scripted_run(tenant: str) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])

    class Crashy(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            if msg == "crash":
                raise RuntimeError("on command")
            if msg == "hang":
                await anyio.sleep(30)
            return msg

    async with ActorSystem(
        tenant, settings=Settings(enable_nats=False, shutdown_grace=0.1), meter_provider=meters
    ) as system:
        sup = await system.spawn_supervisor(name="w", backoff=Backoff(0, 0, jitter=0))
        ref = await sup.spawn(Crashy, name="crashy")
        for i in range(5):  # n = 5 sends answered
            await ref.ask(i, timeout=5)
        for _ in range(2):  # r = 2 restarts
            with pytest.raises(RemoteError):
                await ref.ask("crash", timeout=5)
        with pytest.raises(AskTimeout):  # k = 3 timeouts, 2 retries
            await ref.ask("hang", timeout=5, attempt_timeout=0.2, attempts=3)
        with anyio.fail_after(5):
            while system.event_counts().get("restarted", 0) < 2:
                await anyio.sleep(0.01)
        data = reader.get_metrics_data()  # while running: the mailbox gauge observes live actors
    points: dict[str, int] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    value = getattr(p, "value", None)
                    if value is None:
                        value = p.count
                    key = metric.name
                    points[key] = points.get(key, 0) + int(value)
    assert points["messaging.client.sent.messages"] == 5 + 2 + 1  # one send per ask
    assert points["sdk.ask.timeouts"] == 3
    assert points["sdk.ask.retries"] == 2
    assert points["sdk.actor.restarts"] == 2
    assert points["sdk.actor.crashes"] == 2
    assert points["sdk.ask.duration"] == 8
    assert points["messaging.client.consumed.messages"] >= 5 + 2
    assert "sdk.mailbox.depth" in points
    assert points["sdk.dead_letters"] == 1  # the ask whose attempts ran out


async def test_log_records_inside_a_handler_carry_trace_tenant_and_agent(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, exporter = spans
    caplog.handler.addFilter(CorrelationFilter())
    caplog.set_level(logging.WARNING, logger="tests.writer")
    async with ActorSystem(
        tenant, settings=Settings(enable_nats=False), tracer_provider=provider
    ) as system:
        ref = await system.spawn(Writer, name="writer")
        await ref.ask("notes", timeout=5)
    record = next(r for r in caplog.records if r.name == "tests.writer")
    process = next(s for s in exporter.get_finished_spans() if s.name.startswith("process"))
    assert record.trace_id == format(process.context.trace_id, "032x")  # type: ignore[attr-defined]
    assert record.span_id == format(process.context.span_id, "016x")  # type: ignore[attr-defined]
    assert (record.tenant, record.agent) == (tenant, "writer")  # type: ignore[attr-defined]
    assert logging.Formatter(CORRELATED_FORMAT).format(record).count(record.trace_id) == 1  # type: ignore[attr-defined]


def test_with_telemetry_off_no_sdk_is_imported(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from motadata_actors import Actor, ActorSystem, Settings

        class Echo(Actor):
            async def on_message(self, msg, ctx):
                return msg

        async def main():
            async with ActorSystem("quiet", settings=Settings(enable_nats=False)) as system:
                ref = await system.spawn(Echo, name="echo")
                assert await ref.ask("x") == "x"
                assert "traceparent" not in (await ref.ask("x") or "")

        asyncio.run(main())
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "ENABLE_OTEL"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from motadata_actors import Actor, ActorSystem, Settings

    class Writer(Actor):
        async def on_message(self, msg, ctx):
            return f"draft of {msg}"

    async def main():
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        settings = Settings(nats_urls=(sys.argv[1],))
        async with ActorSystem(sys.argv[2], settings=settings, tracer_provider=provider) as system:
            await system.spawn(Writer, name="writer")
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        spans = [
            {"name": s.name, "trace": s.context.trace_id, "span": s.context.span_id,
             "parent": s.parent.span_id if s.parent else None,
             "to": s.attributes.get("sdk.agent.to")}
            for s in exporter.get_finished_spans()
        ]
        with open(sys.argv[3], "w") as fh:
            json.dump(spans, fh)

    asyncio.run(main())
    """
)


async def test_one_trace_across_two_os_processes(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    fresh_nats_server: NatsServer,
    tenant: str,
    tmp_path: Path,
) -> None:
    provider, exporter = spans
    out_file = tmp_path / "other-spans.json"
    with subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, fresh_nats_server.url, tenant, str(out_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    ) as other:  # fmt: skip
        try:
            assert other.stdout is not None and other.stdin is not None
            assert other.stdout.readline().strip() == "ready"
            settings = Settings(nats_urls=(fresh_nats_server.url,))
            async with ActorSystem(tenant, settings=settings, tracer_provider=provider) as system:
                planner = await system.spawn(Planner, name="planner")
                assert await planner.ask("ship", timeout=5) == "draft of ship"
            other.stdin.close()
            assert other.wait(15) == 0
        finally:
            if other.poll() is None:
                other.kill()
    theirs = json.loads(out_file.read_text())
    mine = exporter.get_finished_spans()
    assert {s["trace"] for s in theirs} == {s.context.trace_id for s in mine}  # exactly one trace
    planner_send = next(
        s
        for s in mine
        if s.name.startswith("send sdk") and s.attributes["sdk.agent.to"] == "writer"
    )
    writer_process = next(s for s in theirs if s["name"].startswith("process"))
    assert writer_process["parent"] == planner_send.context.span_id
    assert writer_process["to"] == "writer"
