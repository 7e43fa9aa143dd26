"""Keyed agents beside a plain agent: activation, message rate, memory, state saves.

All on one nats-server (embedded unless a URL is given), the asker in the same process
as the agents, repeats interleaved so both sides of each ratio see the same machine:

* **first-message activation**: sequential asks, each to a key never used before (the
  lease is taken, the instance made), beside sequential asks to a plain agent: p50
  latency, and the ratio.
* **activations per second**: asks to fresh keys, 100 in flight, beside asks to a plain
  agent, 100 in flight.
* **messages to active keyed agents**: asks, 100 in flight, spread over 100 active keys,
  beside asks to a plain agent, 100 in flight.
* **state saved per message**: the same asks to keyed agents whose state (1 KiB, 64 KiB)
  changes with every message, beside keyed agents without state: the cost of one save.
* **keys across processes**: keys touched once each, 200 asks in flight, with three
  processes hosting the kind: activations per second in all, keys per process, and
  keys activated twice or never (both must be 0).
* **memory per agent**: Python memory held per active keyed instance (10,000 keys)
  beside per plain actor (1,000 actors, each its own subscription), by ``tracemalloc``.

    python benchmarks/bench_keyed.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from motadata_actors import Actor, ActorSystem, AskPolicy, Context, NatsServer, Settings

__all__ = ("markdown", "run")


class Echo(Actor):
    """A plain agent, or a keyed one without state: answers what it got."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class Small(Actor):
    """Keyed, with 1 KiB of state that every message changes."""

    state: ClassVar[Any] = {"n": 0, "blob": "x" * 1024}

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.state["n"] += 1
        return msg


class Large(Actor):
    """Keyed, with 64 KiB of state that every message changes."""

    state: ClassVar[Any] = {"n": 0, "blob": "x" * 65536}

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.state["n"] += 1
        return msg


def _held() -> int:
    """Bytes Python holds now (tracemalloc: RSS would hide reused memory)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _waves(one: Callable[[int], Awaitable[object]], n: int, in_flight: int) -> float:
    """Seconds for ``n`` calls of ``one(i)``, ``in_flight`` at a time."""
    start = time.perf_counter()
    for wave in range(0, n, in_flight):
        await asyncio.gather(*(one(i) for i in range(wave, min(n, wave + in_flight))))
    return time.perf_counter() - start


async def _latencies(one: Callable[[int], Awaitable[object]], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await one(i)
        out.append((time.perf_counter() - t0) * 1e6)
    return out


async def _one_repeat(url: str, n: int, samples: dict[str, list[float]]) -> None:
    tenant = f"bench-keyed-{uuid.uuid4().hex[:8]}"
    async with ActorSystem(tenant, settings=Settings(nats_urls=(url,))) as system:
        plain = await system.spawn(Echo, name="echo")
        for kind, cls in (("echo-k", Echo), ("small", Small), ("large", Large)):
            await system.spawn_keyed(cls, kind=kind, idle_after=3600)
        fresh = iter(range(10**9))

        async def plain_ask(i: int) -> object:
            return await plain.ask(i, timeout=10)

        def keyed(kind: str, keys: int) -> Callable[[int], Awaitable[object]]:
            refs = [system.ref(kind, key=f"k{j}") for j in range(keys)]
            return lambda i: refs[i % keys].ask(i, timeout=10)

        async def new_key(i: int) -> object:
            return await system.ref("echo-k", key=f"n{next(fresh)}").ask(i, timeout=10)

        for kind in ("echo-k", "small", "large"):  # the 100 active keys of each
            await _waves(keyed(kind, 100), 100, 100)
        await _waves(plain_ask, 200, 100)
        lat_new, lat_plain = (
            await _latencies(new_key, n // 10),
            await _latencies(plain_ask, n // 10),
        )
        samples["activation_p50_us"].append(statistics.median(lat_new))
        samples["plain_p50_us"].append(statistics.median(lat_plain))
        samples["activations_per_s"].append(n / await _waves(new_key, n, 100))
        samples["plain_asks_per_s"].append(n / await _waves(plain_ask, n, 100))
        for label, kind in (("keyed", "echo-k"), ("state_1k", "small"), ("state_64k", "large")):
            samples[f"{label}_asks_per_s"].append(n / await _waves(keyed(kind, 100), n, 100))


async def _memory(url: str, keys: int, actors: int) -> dict[str, float]:
    tenant = f"bench-keyed-mem-{uuid.uuid4().hex[:8]}"
    async with ActorSystem(tenant, settings=Settings(nats_urls=(url,))) as system:
        await system.spawn_keyed(Echo, kind="mem", idle_after=3600)
        await system.ref("mem", key="warm").ask(0, timeout=30)
        tracemalloc.start()
        before = _held()
        sem = asyncio.Semaphore(100)

        async def activate(i: int) -> None:
            async with sem:
                await system.ref("mem", key=f"m{i}").ask(i, timeout=30)

        await asyncio.gather(*(activate(i) for i in range(keys)))
        keyed = (_held() - before) / keys
        before = _held()
        for i in range(actors):
            await system.spawn(Echo, name=f"plain-{i}")
        plain = (_held() - before) / actors
        tracemalloc.stop()
    return {"keyed_bytes": keyed, "plain_bytes": plain, "keys": keys, "actors": actors}


_HOST = """
import asyncio, sys
from motadata_actors import Actor, ActorSystem
seen = []
class Echo(Actor):
    async def on_start(self):
        seen.append(self.key)
    async def on_message(self, msg, ctx):
        return msg
async def main():
    async with ActorSystem(sys.argv[1], lease_time=5) as system:
        await system.spawn_keyed(Echo, kind="spread", idle_after=3600, concurrency=128)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print("\\n".join(seen), flush=True)
asyncio.run(main())
"""


def _start_hosts(url: str, tenant: str, processes: int) -> list[subprocess.Popen[str]]:
    """Start ``processes`` children hosting the kind ``spread``; return once all are ready."""
    env = {"NATS_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(processes):
            child = subprocess.Popen(
                [sys.executable, "-c", _HOST, tenant], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            children.append(child)
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    except BaseException:
        for child in children:  # stopped by their pids, as every process started here
            child.kill()
            child.wait()
        raise
    return children


async def spread(url: str, keys: int, processes: int = 3) -> dict[str, Any]:
    """Touch ``keys`` keys once each, the kind hosted by ``processes`` child processes."""
    tenant = f"bench-keyed-spread-{uuid.uuid4().hex[:8]}"
    children = await asyncio.to_thread(_start_hosts, url, tenant, processes)
    try:
        policy = AskPolicy(timeout=30.0, attempt_timeout=5.0, attempts=6)
        async with ActorSystem(tenant, settings=Settings(nats_urls=(url,))) as system:
            sem = asyncio.Semaphore(200)

            async def touch(i: int) -> None:
                async with sem:
                    await system.ref("spread", key=f"s{i}", ask=policy).ask(i)

            start = time.perf_counter()
            await asyncio.gather(*(touch(i) for i in range(keys)))
            seconds = time.perf_counter() - start
        counts: collections.Counter[str] = collections.Counter()
        per_process = []
        for child in children:
            out, _ = await asyncio.to_thread(child.communicate, "", 120)
            activated = [k for k in out.split("\n") if k]
            per_process.append(len(activated))
            counts.update(activated)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return {
        "keys": keys, "processes": processes, "seconds": seconds,
        "per_process": per_process, "doubled": sum(1 for c in counts.values() if c > 1),
        "never": keys - len(counts),
    }  # fmt: skip


async def _run(repeats: int, n: int, url: str, keys: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        name: []
        for name in ("activation_p50_us", "plain_p50_us", "activations_per_s", "plain_asks_per_s",
                     "keyed_asks_per_s", "state_1k_asks_per_s", "state_64k_asks_per_s")
    }  # fmt: skip
    for r in range(repeats):
        await _one_repeat(url, n, samples)
        print(f"  keyed agents: repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    memory = await _memory(url, keys, max(100, keys // 10))
    print(f"  keyed agents: {keys * 10:,} keys across 3 processes", file=sys.stderr, flush=True)
    spread_result = await spread(url, keys * 10)
    return {"repeats": repeats, "asks": n, "samples": samples, "memory": memory,
            "spread": spread_result}  # fmt: skip


def run(repeats: int, n: int, url: str | None = None, keys: int = 10_000) -> dict[str, Any]:
    """Measure keyed agents beside a plain agent; starts a server unless ``url`` is given."""
    if url is not None:
        return asyncio.run(_run(repeats, n, url, keys))
    with NatsServer() as server:
        return asyncio.run(_run(repeats, n, server.url, keys))


def _ratios(ours: list[float], base: list[float]) -> tuple[float, float, float]:
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table: each figure beside its baseline, as a ratio."""
    s, mem = result["samples"], result["memory"]
    med = statistics.median
    rows = [
        ("first-message activation, p50 latency", f"{med(s['activation_p50_us']):.0f} us",
         "ask to an active plain agent, p50", f"{med(s['plain_p50_us']):.0f} us",
         _ratios(s["activation_p50_us"], s["plain_p50_us"]), "lower is better"),
        ("activations per second (new keys, 100 in flight)",
         f"{med(s['activations_per_s']):,.0f}/s", "asks to a plain agent, 100 in flight",
         f"{med(s['plain_asks_per_s']):,.0f}/s",
         _ratios(s["activations_per_s"], s["plain_asks_per_s"]), "higher is better"),
        ("asks to 100 active keyed agents, 100 in flight", f"{med(s['keyed_asks_per_s']):,.0f}/s",
         "asks to a plain agent, 100 in flight", f"{med(s['plain_asks_per_s']):,.0f}/s",
         _ratios(s["keyed_asks_per_s"], s["plain_asks_per_s"]), "higher is better"),
        ("asks saving a 1 KiB state each", f"{med(s['state_1k_asks_per_s']):,.0f}/s",
         "keyed agents without state", f"{med(s['keyed_asks_per_s']):,.0f}/s",
         _ratios(s["state_1k_asks_per_s"], s["keyed_asks_per_s"]), "higher is better"),
        ("asks saving a 64 KiB state each", f"{med(s['state_64k_asks_per_s']):,.0f}/s",
         "keyed agents without state", f"{med(s['keyed_asks_per_s']):,.0f}/s",
         _ratios(s["state_64k_asks_per_s"], s["keyed_asks_per_s"]), "higher is better"),
    ]  # fmt: skip
    lines = [
        "| keyed agents | ours | baseline (same run) | baseline | ratio (median, min-max) | |",
        "|---|---|---|---|---|---|",
    ]
    for label, ours, base_label, base, (ratio, lo, hi), better in rows:
        lines.append(f"| {label} | {ours} | {base_label} | {base} | "
                     f"{ratio:.2f}x ({lo:.2f}-{hi:.2f}) | {better} |")  # fmt: skip
    keyed, plain = mem["keyed_bytes"], mem["plain_bytes"]
    lines.append(
        f"| memory per active agent ({mem['keys']:,} keys) | {keyed / 1024:.1f} KiB | "
        f"per plain actor ({mem['actors']:,} actors) | {plain / 1024:.1f} KiB | "
        f"{keyed / plain:.2f}x | lower is better |"
    )
    sp = result["spread"]
    lines.append(
        f"\n{sp['keys']:,} keys touched once each with {sp['processes']} processes hosting the "
        f"kind: {sp['keys'] / sp['seconds']:,.0f} activations/s in all, keys per process "
        f"{sp['per_process']}, activated twice: {sp['doubled']}, never: {sp['never']}."
    )
    for label, key in (("1 KiB", "state_1k_asks_per_s"), ("64 KiB", "state_64k_asks_per_s")):
        cost = 1e6 / med(s[key]) - 1e6 / med(s["keyed_asks_per_s"])
        lines.append(f"\nSaving a {label} state costs {cost:+.0f} us per message (asks 100 in "
                     "flight; one compare-and-set write to the key-value bucket).")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the keyed-agent benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 repeats of 500 asks, not 5 of 3000")
    args = parser.parse_args(argv)
    repeats, n, keys = (2, 500, 1000) if args.quick else (5, 3000, 10_000)
    print(markdown(run(repeats, n, keys=keys)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
