"""Telemetry overhead: sequential asks with telemetry off, unsampled, 10 % and always sampled.

Sequential asks to an echo actor, over NATS (an embedded nats-server, unless a URL is given)
and in process, interleaved repeats in one run. An ask is two messages (the request and the
reply), so the cost per message is half the cost per ask. Modes:

* ``off``: no telemetry (a flag check per message).
* ``unsampled, under a parent``: each ask is sent inside an unsampled span (what an
  instrumented web framework leaves when its sampler drops the request): propagation only.
* ``unsampled roots``: every ask starts a new trace that the sampler drops (the sampler is
  asked once per ask).
* ``10 % sampled`` and ``always sampled``: the SDK's batch span processor with an exporter
  that drops everything, so the figure is our cost plus the SDK's, not an exporter's.

    python benchmarks/bench_telemetry.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

from motadata_actors import Actor, ActorSystem, Context, NatsServer, Settings

__all__ = ("MODES", "markdown", "run")

MODES: dict[str, str] = {
    "off": "off",
    "parent": "unsampled, under a parent",
    "roots": "unsampled roots",
    "ratio10": "10 % sampled",
    "sampled": "always sampled",
}


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class DropAll(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(mode: str) -> TracerProvider | None:
    if mode == "off":
        return None
    samplers = {
        "parent": ParentBased(ALWAYS_OFF),
        "roots": ParentBased(ALWAYS_OFF),
        "ratio10": ParentBased(TraceIdRatioBased(0.1)),
        "sampled": ALWAYS_ON,
    }
    p = TracerProvider(sampler=samplers[mode])
    p.add_span_processor(BatchSpanProcessor(DropAll()))
    return p


@contextlib.contextmanager
def unsampled_parent(mode: str) -> Iterator[None]:
    """Attach an unsampled remote span as the current context in ``parent`` mode."""
    if mode != "parent":
        yield
        return
    parent = trace.SpanContext(
        0x5B8AA5A2D2C872E8321CF37308D69DF2, 0x051581BF3CB55C13, is_remote=True
    )
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(parent)))
    try:
        yield
    finally:
        otel_context.detach(token)


async def asks(transport: str, mode: str, n: int, url: str) -> float:
    """Microseconds per sequential ask."""
    settings = Settings(nats_urls=(url,)) if transport == "nats" else Settings(enable_nats=False)
    tracer = provider(mode)
    tenant = f"bench-telemetry-{uuid.uuid4().hex[:8]}"  # a tenant of its own, every run
    async with ActorSystem(tenant, settings=settings, tracer_provider=tracer) as system:
        ref = await system.spawn(Echo, name="echo")
        with unsampled_parent(mode):
            for _ in range(50):
                await ref.ask("warm", timeout=5)
            start = time.perf_counter()
            for i in range(n):
                await ref.ask(i, timeout=5)
            elapsed = time.perf_counter() - start
    if tracer is not None:
        tracer.shutdown()
    return elapsed / n * 1e6


async def _run(repeats: int, n: int, url: str) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {"nats": {}, "inprocess": {}}
    for r in range(repeats):
        for transport, by_mode in samples.items():
            for mode in MODES:
                by_mode.setdefault(mode, []).append(await asks(transport, mode, n, url))
        print(f"  telemetry: repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return {"repeats": repeats, "asks": n, "us_per_ask": samples}


def run(repeats: int, n: int, url: str | None = None) -> dict[str, Any]:
    """Measure every mode on both transports; on a server this starts unless ``url`` is given."""
    if url is not None:
        return asyncio.run(_run(repeats, n, url))
    with NatsServer() as server:
        return asyncio.run(_run(repeats, n, server.url))


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table: us per ask, and what telemetry adds per message."""
    lines = [
        "| transport | telemetry | us / ask (median, min-max) | asks/s | vs off "
        "| added us / ask | added us / message |",
        "|---|---|---|---|---|---|---|",
    ]
    for transport, by_mode in result["us_per_ask"].items():
        off = statistics.median(by_mode["off"])
        for mode, label in MODES.items():
            runs = by_mode[mode]
            med = statistics.median(runs)
            lines.append(
                f"| {transport} | {label} | {med:.1f} ({min(runs):.1f}-{max(runs):.1f}) | "
                f"{1e6 / med:,.0f} | {med / off:.2f}x | {med - off:+.1f} | "
                f"{(med - off) / 2:+.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the telemetry benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 repeats of 300 asks, not 5 of 3000")
    args = parser.parse_args(argv)
    repeats, n = (2, 300) if args.quick else (5, 3000)
    print(markdown(run(repeats, n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
