"""Distributed tracing: one OpenTelemetry trace across agents in two OS processes.

A travel request goes through three agents:

    client -> concierge (this process) -> inventory (a child process) -> pricing (this process)

Each process has its own OpenTelemetry ``TracerProvider`` (its own ``service.name``) with
the SDK's ``InMemorySpanExporter``, handed to its ``ActorSystem``. Every message gets a
PRODUCER span when sent and a CONSUMER span when handled; the trace context travels in
the message's ``traceparent`` header, so the child's spans join the parent's trace.

This process starts the embedded nats-server, then the child process
(``python examples/distributed_tracing.py child``) with ``NATS_URL`` pointing at that
server. At the end it stops the child by its pid (SIGTERM), the child prints its spans
as JSON on its way out, and this process prints both processes' spans as one tree,
under one trace id.

Run it with ``python examples/distributed_tracing.py`` (POSIX: the child is stopped with
SIGTERM). It starts an embedded nats-server on a free loopback port and stops it, and
the child, at the end: nothing else to set up.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import sys
from typing import Any

import anyio
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from motadata_actors import Actor, ActorSystem, Context, message

TENANT = "acme"


def say(who: str, text: str) -> None:
    """Print one line of the story: wall-clock time and process id (both processes print)."""
    now = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    print(f"{now} pid {os.getpid():<7} {who:>9} | {text}", flush=True)


def tracing(service: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider that keeps finished spans in memory, for this process."""
    resource = Resource.create({"service.name": service, "process.pid": os.getpid()})
    provider = TracerProvider(resource=resource)
    exporter = InMemorySpanExporter()
    # Simple, not batched: a span is in the exporter as soon as it ends.
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


# -- messages and agents -------------------------------------------------------------------


@message("travel.trip.v1")
class Trip:
    """A traveller's request."""

    city: str
    nights: int


@message("travel.availability.v1")
class Availability:
    """Ask inventory for rooms."""

    city: str
    nights: int


@message("travel.quote.v1")
class Quote:
    """Ask pricing for the price of a room."""

    hotel: str
    nights: int


class Concierge(Actor):
    """In this process: asks inventory (in the child process) for a room."""

    async def on_message(self, msg: Any, ctx: Context) -> str:
        """Answer a trip request with an offer."""
        say("concierge", f"trip to {msg.city} from {ctx.sender!r}: asking inventory")
        offer: str = await ctx.ref("inventory").ask(Availability(msg.city, msg.nights))
        return f"Offer: {offer}"


class Inventory(Actor):
    """In the child process: finds a hotel, asks pricing (back in the parent) for a price."""

    async def on_message(self, msg: Any, ctx: Context) -> str:
        """Find a hotel in ``msg.city`` and price it."""
        hotel = f"Hotel {msg.city.title()} Central"
        say("inventory", f"found {hotel!r} for {ctx.sender!r}: asking pricing")
        price: int = await ctx.ref("pricing").ask(Quote(hotel, msg.nights))
        return f"{hotel}, {msg.nights} nights, {price} EUR"


class Pricing(Actor):
    """In this process: prices a stay."""

    async def on_message(self, msg: Any, ctx: Context) -> int:
        """Return the price of ``msg.nights`` nights."""
        say("pricing", f"pricing {msg.nights} nights at {msg.hotel!r} for {ctx.sender!r}")
        return 120 * msg.nights


# -- spans as plain dicts, so the child can hand them over in a file -------------------------


def as_record(span: ReadableSpan) -> dict[str, Any]:
    """The parts of a finished span the tree needs, JSON-ready."""
    assert span.context is not None
    return {
        "name": span.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "service": span.resource.attributes.get("service.name"),
        "pid": span.resource.attributes.get("process.pid"),
        "attributes": dict(span.attributes or {}),
    }


def print_tree(records: list[dict[str, Any]]) -> None:
    """Print spans as a tree, parents before children, siblings by start time."""
    by_id = {r["span_id"]: r for r in records}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for r in records:
        parent = r["parent_id"] if r["parent_id"] in by_id else None  # None: a root
        children.setdefault(parent, []).append(r)

    def show(span: dict[str, Any], depth: int) -> None:
        a = span["attributes"]
        indent = "  " * depth
        took = (span["end"] - span["start"]) / 1e6
        print(
            f"  {span['service']:<18} {span['pid']:>7}  {indent}{span['name']}"
            f"  ({span['kind']}, {took:.1f} ms)"
        )
        # The key attributes of the messaging conventions, on a second line.
        if a.get("messaging.destination.temporary"):
            detail = f"reply of {a['sdk.agent.from']} to its asker's inbox"
        elif "sdk.agent.to" in a:
            detail = (
                f"{a['sdk.agent.from']} -> {a['sdk.agent.to']} on "
                f"{a['messaging.destination.name']}, {a['messaging.message.body.size']} bytes"
            )
        else:
            detail = ""
        if detail:
            print(f"  {'':<27}  {indent}  {detail}")
        for child in sorted(children.get(span["span_id"], []), key=lambda s: s["start"]):
            show(child, depth + 1)

    print(f"  {'service':<18} {'pid':>7}  span")
    for root in sorted(children.get(None, []), key=lambda s: s["start"]):
        show(root, 0)


# -- the child process -----------------------------------------------------------------------


async def child() -> None:
    """Serve ``inventory`` until SIGTERM, then print this process's spans (one JSON line)."""
    provider, exporter = tracing("inventory-service")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # NATS_URL (set by the parent) makes this system connect to the parent's server.
    async with ActorSystem(TENANT, tracer_provider=provider) as system:
        await system.spawn(Inventory, name="inventory")
        say("child", f"inventory is up on {system.transport.description}")
        print("ready", flush=True)  # the parent waits for this line
        with anyio.move_on_after(60):  # a safety net: never outlive a parent that died
            await stop.wait()
        say("child", "SIGTERM: stopping")
    # Leaving the block stopped the actors: every span has ended. Hand them over (a real
    # deployment would export them to a collector, with OTLP).
    print("spans", json.dumps([as_record(s) for s in exporter.get_finished_spans()]), flush=True)


# -- the parent process ----------------------------------------------------------------------


async def relay(
    stream: asyncio.StreamReader, ready: asyncio.Event, spans: list[dict[str, Any]]
) -> None:
    """Print the child's story lines as they come; note its "ready" and "spans" lines."""
    try:
        async for line in stream:
            text = line.decode().rstrip()
            if text == "ready":
                ready.set()
            elif text.startswith("spans "):
                spans.extend(json.loads(text.removeprefix("spans ")))
            else:
                print(text, flush=True)
    finally:
        ready.set()  # the child is gone: nobody should wait for it any longer


async def main() -> None:
    """Run the parent's agents, start the child, send one request, print the trace."""
    provider, exporter = tracing("travel-frontend")
    tracer = provider.get_tracer("examples.distributed_tracing")
    async with ActorSystem(TENANT, tracer_provider=provider) as system:
        assert system.embedded_server is not None, "run without NATS_URL: this starts a server"
        url = system.embedded_server.url
        say("main", f"embedded nats-server at {url}")
        concierge = await system.spawn(Concierge, name="concierge")
        await system.spawn(Pricing, name="pricing")

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "child",
            env={**os.environ, "NATS_URL": url},  # the child uses this process's server
            stdout=asyncio.subprocess.PIPE,
            limit=2**20,  # the longest line read: the child's spans come as one line
        )
        assert proc.stdout is not None
        ready = asyncio.Event()
        theirs: list[dict[str, Any]] = []  # the child's spans, when it stops
        printer = asyncio.create_task(relay(proc.stdout, ready, theirs))
        try:
            with anyio.fail_after(30):  # the child imports, connects and spawns inventory
                await ready.wait()
            if printer.done():
                raise RuntimeError("the child process ended before it was ready")
            say("main", f"child process {proc.pid} serves inventory")

            # The client's own span is the root of the trace; every message span of the
            # conversation, in both processes, descends from it.
            with tracer.start_as_current_span("book trip") as root:
                trace_id = format(root.get_span_context().trace_id, "032x")
                answer = await concierge.ask(Trip("lisbon", 3), timeout=10.0)
            say("main", answer)
        finally:
            # Stop the child by its pid; it stops its actors and prints its spans.
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGTERM)
            try:
                with anyio.fail_after(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
            await printer  # the child's last lines, its spans among them
        say("main", f"child process {proc.pid} exited with status {proc.returncode}")
    # Both systems stopped: every span of both processes has ended.

    mine = [as_record(s) for s in exporter.get_finished_spans()]
    records = mine + theirs
    traces = {r["trace_id"] for r in records}
    services = sorted({f"{r['service']} (pid {r['pid']})" for r in records})
    print(f"\n{len(records)} spans: {len(mine)} in this process, {len(theirs)} in the child")
    print(f"processes: {', '.join(services)}")
    print(f"trace ids: {', '.join(traces)} ({len(traces)} trace for the whole conversation)")
    assert traces == {trace_id}, "every span should belong to the client's trace"
    print_tree(records)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        asyncio.run(child())
    else:
        asyncio.run(main())
