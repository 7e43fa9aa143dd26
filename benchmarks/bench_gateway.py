"""The HTTP gateway: 1,000 concurrent asks over HTTP beside 1,000 concurrent NATS asks.

Like with like, on one nats-server, the agent (answering what it got) in the same
process as both askers, repeats interleaved:

* **over HTTP**: 1,000 ``POST /agents/echo`` at once (aiohttp, one connection each) to a
  gateway served by uvicorn on a loopback port: HTTP parsing, the gateway's checks, JSON
  decoding, the NATS ask, the reply encoded;
* **over NATS**: 1,000 ``ref.ask`` at once from a system of the same tenant.

Every reply is checked (nothing lost). Reported: asks per second per side and
HTTP / NATS as a ratio of medians (the price of the HTTP edge).

    python benchmarks/bench_gateway.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, NatsServer, Settings

__all__ = ("available", "markdown", "run")


class Echo(Actor):
    """Answers what it got."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


def available() -> bool:
    """Whether the gateway's web stack and the aiohttp client are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn", "aiohttp"))


async def _http(base: str, n: int) -> float:
    import aiohttp

    url = f"{base}/agents/echo"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def ask(i: int) -> Any:
            async with http.post(url, json=i) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        started = time.perf_counter()
        replies = await asyncio.gather(*(ask(i) for i in range(n)))
        elapsed = time.perf_counter() - started
    assert sorted(replies) == list(range(n)), "an HTTP ask was lost"
    return n / elapsed


async def _nats(system: ActorSystem, n: int) -> float:
    ref = system.ref("echo")
    started = time.perf_counter()
    replies = await asyncio.gather(*(ref.ask(i, timeout=60) for i in range(n)))
    elapsed = time.perf_counter() - started
    assert sorted(replies) == list(range(n)), "a NATS ask was lost"
    return n / elapsed


async def _run(repeats: int, n: int, url: str) -> dict[str, Any]:
    from motadata_actors.gateway import Limits
    from motadata_actors.gateway._serve import serve

    tenant = f"g{uuid.uuid4().hex[:8]}"
    settings = Settings(nats_urls=(url,))
    samples: dict[str, list[float]] = {"http": [], "nats": []}
    async with ActorSystem(tenant, settings=settings, handle_signals=False) as system:
        await system.spawn(Echo, name="echo", concurrency=128)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        limits = Limits(rate=1e6, burst=1_000_000)
        server = asyncio.ensure_future(
            serve(settings, [tenant], ["echo"], port=0, ready=ready.set_result, limits=limits)
        )
        try:
            base = await asyncio.wait_for(ready, 30)
            await _http(base, 50)  # warm up both paths
            await _nats(system, 50)
            for r in range(repeats):
                order = ("http", "nats") if r % 2 == 0 else ("nats", "http")
                for side in order:
                    rate = await (_http(base, n) if side == "http" else _nats(system, n))
                    samples[side].append(rate)
                print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
    return {"concurrent": n, "asks_per_s": samples}


def run(repeats: int, n: int = 1000, url: str | None = None) -> dict[str, Any]:
    """Measure; starts a server unless ``url`` is given."""
    if url is not None:
        return asyncio.run(_run(repeats, n, url))
    with NatsServer() as server:
        return asyncio.run(_run(repeats, n, server.url))


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown row beside its baseline."""
    http, nats = result["asks_per_s"]["http"], result["asks_per_s"]["nats"]
    med = statistics.median
    ratios = [h / n for h, n in zip(http, nats, strict=True)]
    n = result["concurrent"]
    return "\n".join(
        [
            "| scenario | over HTTP (gateway) | over NATS (ref.ask) | HTTP / NATS |",
            "|---|---|---|---|",
            f"| {n:,} concurrent asks, all answered | {med(http):,.0f} asks/s "
            f"({min(http):,.0f}-{max(http):,.0f}) | {med(nats):,.0f} asks/s "
            f"({min(nats):,.0f}-{max(nats):,.0f}) | {med(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the gateway benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5")
    args = parser.parse_args(argv)
    print(markdown(run(2 if args.quick else 5)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
