"""Telemetry overhead: ask throughput with telemetry off, always sampled, and 10 % sampled.

Sequential asks to an echo actor, over NATS (an embedded nats-server this script starts)
and in process, interleaved repeats in one run. Sampled tracing uses the SDK's batch span
processor with an exporter that drops everything, so the figure is our cost plus the SDK's,
not an exporter's.

    python benchmarks/bench_telemetry.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from motadata_actors import Actor, ActorSystem, Context, NatsServer, Settings

__all__ = ("main",)


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class DropAll(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(mode: str) -> TracerProvider | None:
    if mode == "off":
        return None
    sampler = ALWAYS_ON if mode == "sampled" else ParentBased(TraceIdRatioBased(0.1))
    p = TracerProvider(sampler=sampler)
    p.add_span_processor(BatchSpanProcessor(DropAll()))
    return p


async def asks(transport: str, mode: str, n: int, url: str) -> float:
    """Microseconds per sequential ask."""
    settings = Settings(nats_urls=(url,)) if transport == "nats" else Settings(enable_nats=False)
    tracer = provider(mode)
    async with ActorSystem("bench", settings=settings, tracer_provider=tracer) as system:
        ref = await system.spawn(Echo, name="echo")
        for _ in range(50):
            await ref.ask("warm", timeout=5)
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(i, timeout=5)
        elapsed = time.perf_counter() - start
    if tracer is not None:
        tracer.shutdown()
    return elapsed / n * 1e6


async def main_async(repeats: int, n: int) -> str:
    samples: dict[tuple[str, str], list[float]] = {}
    with NatsServer() as server:
        for r in range(repeats):
            for transport in ("nats", "inprocess"):
                for mode in ("off", "sampled", "ratio10"):
                    us = await asks(transport, mode, n, server.url)
                    samples.setdefault((transport, mode), []).append(us)
            print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    lines = [
        "| transport | telemetry | us / ask (median, min-max) | asks/s | vs off | added us / ask |",
        "|---|---|---|---|---|---|",
    ]
    for transport in ("nats", "inprocess"):
        off = statistics.median(samples[(transport, "off")])
        for mode, label in (
            ("off", "off"),
            ("sampled", "always sampled"),
            ("ratio10", "10 % sampled"),
        ):
            runs = samples[(transport, mode)]
            med = statistics.median(runs)
            lines.append(
                f"| {transport} | {label} | {med:.1f} ({min(runs):.1f}-{max(runs):.1f}) | "
                f"{1e6 / med:,.0f} | {med / off:.2f}x | {med - off:+.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the telemetry benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 repeats of 300 asks, not 5 of 2000")
    args = parser.parse_args(argv)
    repeats, n = (2, 300) if args.quick else (5, 2000)
    print(asyncio.run(main_async(repeats, n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
