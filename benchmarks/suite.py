"""The benchmark suite: each scenario beside its baseline, interleaved, reported as ratios.

Scenarios (128-byte payloads; 4 KiB too in the full run):

1. tell throughput over NATS: ours vs raw nats-py publish/subscribe with the same
   payload and headers, and with no headers;
2. ask over NATS: sequential p50/p99 latency and throughput with 100 in flight, vs raw
   nats-py ``request`` with the same payload and headers, the responder in the same process
   and in another OS process (:mod:`~motadata_actors.benchmarks.responder`);
3. in process: tell and ask vs Pykka and a plain asyncio-queue actor;
4. durable mailboxes vs raw nats-py JetStream (``bench_durable``), scale-out with one to
   three responder processes on one server and a three-node cluster (``bench_scale``),
   codecs and telemetry (``bench_codecs``, ``bench_telemetry``);
5. streaming replies: the parts per second of one ``ask_stream`` (windows 256, the
   default, and 64) vs raw nats-py publishing the same parts to another connection
   (``bench_streaming``).

Every repeat runs baseline then ours, back to back, so both see the same machine load.
Results: a JSON file, a Markdown table and (with matplotlib) a PNG, in ``--out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import CONTENT_TYPE, MESSAGE_ID, NatsServer, new_message_id

from .responder import RAW_SUBJECT

__all__ = ("run_suite",)

HEADERS_LIKE_OURS = {CONTENT_TYPE: "application/json", MESSAGE_ID: "x" * 16}
STREAM_SCENARIO = "nats streaming reply"
"""The streaming rows' scenario names start with this (CI looks them up by it)."""
STREAM_WINDOWS = (256, 64)
"""Credit windows the streaming scenario runs with; the first (the default) is the main row."""


def progress(text: str) -> None:
    """One progress line on stderr."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- the actors under test ------------------------------------------------------------------


class Sink(Actor):
    """Counts tells; sets ``done`` at ``target``."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.count += 1
        if self.count == self.target:
            self.done.set()


class Echo(Actor):
    """Answers every ask with what it got."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


# -- NATS scenarios ----------------------------------------------------------------------------


async def raw_tell(url: str, n: int, payload: bytes, headers: dict[str, str] | None) -> float:
    """Messages per second, raw nats-py publish -> subscribe callback (one connection)."""
    import nats

    nc = await nats.connect(url)
    got = 0
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        nonlocal got
        got += 1
        if got == n:
            done.set()

    await nc.subscribe("bench.raw.tell", cb=cb, pending_msgs_limit=n + 10)
    await nc.flush()
    start = time.perf_counter()
    for _ in range(n):
        await nc.publish("bench.raw.tell", payload, headers=dict(headers) if headers else None)
    await asyncio.wait_for(done.wait(), 60)
    elapsed = time.perf_counter() - start
    await nc.close()
    return n / elapsed


async def our_tell(settings: Settings, n: int, payload: str) -> float:
    """Messages per second, ``ref.tell`` to an actor that counts them."""
    async with ActorSystem("bench", settings=settings) as system:
        sink = Sink()
        sink.target = n
        ref = await system.spawn(lambda: sink, name="sink")
        start = time.perf_counter()
        for _ in range(n):
            await ref.tell(payload)
        await asyncio.wait_for(sink.done.wait(), 60)
        return n / (time.perf_counter() - start)


async def raw_ask(
    url: str, n: int, payload: bytes, in_flight: int, *, local: bool = True
) -> tuple[float, list[float]]:
    """(requests per second, latencies in us), raw nats-py request/reply with our headers.

    The responder shares the connection in this process (as our asker and actor share the
    system's), or (``local=False``) is the ``raw``
    :mod:`~motadata_actors.benchmarks.responder` already running in another process.
    """
    import nats

    nc = await nats.connect(url)
    if local:

        async def reply(msg: Any) -> None:
            await nc.publish(msg.reply, msg.data, headers={CONTENT_TYPE: "application/json"})

        await nc.subscribe(RAW_SUBJECT, cb=reply)
        await nc.flush()
    latencies: list[float] = []

    async def one() -> None:
        t0 = time.perf_counter()
        headers = {**HEADERS_LIKE_OURS, MESSAGE_ID: new_message_id(), "Sdk-Timeout-Ms": "5000"}
        await nc.request(RAW_SUBJECT, payload, timeout=5, headers=headers)
        latencies.append((time.perf_counter() - t0) * 1e6)

    rate = await _drive(one, n, in_flight)
    await nc.close()
    return rate, latencies


async def our_ask(
    settings: Settings, n: int, payload: str, in_flight: int, *, local: bool = True
) -> tuple[float, list[float]]:
    """(asks per second, latencies in us), ``ref.ask`` to an echo actor.

    The echo actor is spawned in this system, or (``local=False``) is the ``ours``
    :mod:`~motadata_actors.benchmarks.responder` already running in another process.
    """
    async with ActorSystem("bench", settings=settings) as system:
        ref = await system.spawn(Echo, name="echo") if local else system.ref("echo")
        latencies: list[float] = []

        async def one() -> None:
            t0 = time.perf_counter()
            await ref.ask(payload, timeout=5)
            latencies.append((time.perf_counter() - t0) * 1e6)

        return await _drive(one, n, in_flight), latencies


@contextlib.asynccontextmanager
async def responder_process(url: str, kind: str) -> AsyncIterator[None]:
    """Run a ``raw`` or ``ours`` responder in another OS process; stop it by its pid."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "motadata_actors.benchmarks.responder", url, kind,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"the {kind} responder did not start (exit {proc.returncode})")
        yield
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # it exits when its stdin closes
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _drive(one: Callable[[], Awaitable[None]], n: int, in_flight: int) -> float:
    for _ in range(20):  # warm up
        await one()
    start = time.perf_counter()
    if in_flight == 1:
        for _ in range(n):
            await one()
    else:
        remaining = n
        while remaining:
            batch = min(in_flight, remaining)
            await asyncio.gather(*(one() for _ in range(batch)))
            remaining -= batch
    return n / (time.perf_counter() - start)


# -- in-process baselines -------------------------------------------------------------------------


async def queue_actor_ask(n: int, payload: str) -> tuple[float, list[float]]:
    """A plain asyncio-queue actor answering asks through futures."""
    queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()

    async def actor() -> None:
        while True:
            msg, fut = await queue.get()
            fut.set_result(msg)

    task = asyncio.create_task(actor())
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def one() -> None:
        t0 = time.perf_counter()
        fut = loop.create_future()
        await queue.put((payload, fut))
        await fut
        latencies.append((time.perf_counter() - t0) * 1e6)

    rate = await _drive(one, n, 1)
    task.cancel()
    return rate, latencies


async def queue_actor_tell(n: int, payload: str) -> float:
    """A plain asyncio-queue actor counting tells."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = asyncio.Event()

    async def actor() -> None:
        count = 0
        while True:
            await queue.get()
            count += 1
            if count == n:
                done.set()

    task = asyncio.create_task(actor())
    start = time.perf_counter()
    for _ in range(n):
        await queue.put(payload)
    await done.wait()
    rate = n / (time.perf_counter() - start)
    task.cancel()
    return rate


def pykka_rates(n: int, payload: str) -> tuple[float, float, list[float]] | None:
    """(tell rate, sequential ask rate, ask latencies) with Pykka, or None if not installed."""
    try:
        import pykka
    except ImportError:
        return None

    done = threading.Event()

    class PEcho(pykka.ThreadingActor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.target = n

        def on_receive(self, message: Any) -> Any:
            if message == "tell":
                self.count += 1
                if self.count == self.target:
                    done.set()
                return None
            return message

    ref = PEcho.start()
    start = time.perf_counter()
    for _ in range(n):
        ref.tell("tell")
    done.wait(60)
    tell_rate = n / (time.perf_counter() - start)
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        ref.ask(payload)
        latencies.append((time.perf_counter() - t0) * 1e6)
    ask_rate = n / (time.perf_counter() - start)
    ref.stop()
    return tell_rate, ask_rate, latencies


# -- the run ------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


async def _nats_rows(url: str, repeats: int, n: int, sizes: list[int]) -> list[dict[str, Any]]:
    async with responder_process(url, "raw"), responder_process(url, "ours"):
        return await _nats_rows_with_responders(url, repeats, n, sizes)


async def _nats_rows_with_responders(
    url: str, repeats: int, n: int, sizes: list[int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # The same bound on undelivered messages as the raw subscriber gets (n + 10): a burst of
    # n tells must not be cut by a smaller mailbox on one side only.
    settings = Settings(nats_urls=(url,), mailbox_capacity=n + 10)
    for size in sizes:
        payload = "x" * (size - 2)  # JSON adds two quotes: the body is `size` bytes
        body = f'"{payload}"'.encode()
        s: dict[str, list[float]] = {}
        lat: dict[str, list[float]] = {}
        for r in range(repeats):
            s.setdefault("raw_tell_headers", []).append(
                await raw_tell(url, n, body, HEADERS_LIKE_OURS)
            )
            s.setdefault("raw_tell_bare", []).append(await raw_tell(url, n, body, None))
            s.setdefault("our_tell", []).append(await our_tell(settings, n, payload))
            rate, l1 = await raw_ask(url, n // 4, body, 1)
            s.setdefault("raw_ask_seq", []).append(rate)
            lat.setdefault("raw_ask_seq", []).extend(l1)
            rate, l2 = await our_ask(settings, n // 4, payload, 1)
            s.setdefault("our_ask_seq", []).append(rate)
            lat.setdefault("our_ask_seq", []).extend(l2)
            s.setdefault("raw_ask_100", []).append((await raw_ask(url, n, body, 100))[0])
            s.setdefault("our_ask_100", []).append((await our_ask(settings, n, payload, 100))[0])
            # The same, answered from another OS process (started once, below).
            rate, l1 = await raw_ask(url, n // 4, body, 1, local=False)
            s.setdefault("raw_ask_seq_remote", []).append(rate)
            lat.setdefault("raw_ask_seq_remote", []).extend(l1)
            rate, l2 = await our_ask(settings, n // 4, payload, 1, local=False)
            s.setdefault("our_ask_seq_remote", []).append(rate)
            lat.setdefault("our_ask_seq_remote", []).extend(l2)
            s.setdefault("raw_ask_100_remote", []).append(
                (await raw_ask(url, n, body, 100, local=False))[0]
            )
            s.setdefault("our_ask_100_remote", []).append(
                (await our_ask(settings, n, payload, 100, local=False))[0]
            )
            progress(f"nats {size} B: repeat {r + 1}/{repeats}")
        rows += [
            _row(
                "nats tell",
                size,
                "msgs/s",
                s["our_tell"],
                s["raw_tell_headers"],
                "raw nats-py, same headers",
                0.70,
            ),
            _row(
                "nats tell",
                size,
                "msgs/s",
                s["our_tell"],
                s["raw_tell_bare"],
                "raw nats-py, no headers",
                0.50,
            ),
            _row(
                "nats ask, 100 in flight",
                size,
                "asks/s",
                s["our_ask_100"],
                s["raw_ask_100"],
                "raw nats-py request",
                0.70,
            ),
            _row(
                "nats ask, sequential",
                size,
                "asks/s",
                s["our_ask_seq"],
                s["raw_ask_seq"],
                "raw nats-py request",
                None,
            ),
            _latency_row(
                "nats ask p50 latency",
                size,
                lat["our_ask_seq"],
                lat["raw_ask_seq"],
                "raw nats-py request",
                1.3,
            ),
            _row(
                "nats ask, 100 in flight, responder in another process",
                size,
                "asks/s",
                s["our_ask_100_remote"],
                s["raw_ask_100_remote"],
                "raw nats-py request",
                0.70,
            ),
            _latency_row(
                "nats ask p50 latency, responder in another process",
                size,
                lat["our_ask_seq_remote"],
                lat["raw_ask_seq_remote"],
                "raw nats-py request",
                1.3,
            ),
        ]
    return rows


async def _inprocess_rows(repeats: int, n: int) -> list[dict[str, Any]]:
    settings = Settings(enable_nats=False, mailbox_capacity=n + 10)
    payload = "x" * 126
    s: dict[str, list[float]] = {}
    lat: dict[str, list[float]] = {}
    for r in range(repeats):
        s.setdefault("queue_tell", []).append(await queue_actor_tell(n, payload))
        s.setdefault("our_tell", []).append(await our_tell(settings, n, payload))
        rate, l1 = await queue_actor_ask(n, payload)
        s.setdefault("queue_ask", []).append(rate)
        lat.setdefault("queue_ask", []).extend(l1)
        rate, l2 = await our_ask(settings, n, payload, 1)
        s.setdefault("our_ask", []).append(rate)
        lat.setdefault("our_ask", []).extend(l2)
        pykka = await asyncio.to_thread(pykka_rates, n, payload)
        if pykka is not None:
            s.setdefault("pykka_tell", []).append(pykka[0])
            s.setdefault("pykka_ask", []).append(pykka[1])
            lat.setdefault("pykka_ask", []).extend(pykka[2])
        progress(f"in-process: repeat {r + 1}/{repeats}")
    rows = [
        _row(
            "in-process tell",
            128,
            "msgs/s",
            s["our_tell"],
            s["queue_tell"],
            "plain asyncio-queue actor",
            None,
        ),
        _latency_row(
            "in-process ask p50 latency",
            128,
            lat["our_ask"],
            lat["queue_ask"],
            "plain asyncio-queue actor",
            3.0,
        ),
    ]
    if "pykka_tell" in s:
        rows += [
            _row(
                "in-process tell", 128, "msgs/s", s["our_tell"], s["pykka_tell"], "Pykka tell", 2.0
            ),
            _row(
                "in-process ask, sequential",
                128,
                "asks/s",
                s["our_ask"],
                s["pykka_ask"],
                "Pykka ask",
                5.0,
            ),
        ]
    else:
        progress(
            "Pykka is not installed (pip install 'motadata-actors[bench]'): its rows are skipped"
        )
    return rows


async def _durable_rows(url: str, repeats: int, n: int) -> list[dict[str, Any]]:
    from . import bench_durable

    body = b'"' + b"x" * 126 + b'"'
    s: dict[str, list[float]] = {}
    for r in range(repeats):
        for mode in ("tell", "ask"):
            count = n if mode == "tell" else n // 4
            s.setdefault(f"raw_{mode}", []).append(
                await bench_durable.raw_jetstream(url, count, body, mode)
            )
            s.setdefault(f"our_{mode}", []).append(
                await bench_durable.our_durable(url, count, "x" * 126, mode)
            )
        progress(f"durable: repeat {r + 1}/{repeats}")
    return [
        _row("durable tell (stored, handled, acked)", 128, "msgs/s", s["our_tell"],
             s["raw_tell"], "raw nats-py JetStream", 0.70),
        _row("durable ask, sequential", 128, "asks/s", s["our_ask"], s["raw_ask"],
             "raw nats-py JetStream", 0.70),
    ]  # fmt: skip


async def _streaming_rows(url: str, repeats: int, n: int) -> list[dict[str, Any]]:
    from . import bench_streaming

    payload = "x" * 126  # 128 bytes of JSON
    body = f'"{payload}"'.encode()
    s: dict[str, list[float]] = {}
    for r in range(repeats):
        s.setdefault("raw_headers", []).append(
            await bench_streaming.raw_stream(url, n, body, headers=True)
        )
        s.setdefault("raw_bare", []).append(
            await bench_streaming.raw_stream(url, n, body, headers=False)
        )
        for window in STREAM_WINDOWS:
            s.setdefault(f"ours_{window}", []).append(
                await bench_streaming.our_stream(url, n, payload, window)
            )
        progress(f"streaming: repeat {r + 1}/{repeats}")
    main, *others = STREAM_WINDOWS
    return [
        _row(f"{STREAM_SCENARIO}, window {main} (default)", 128, "parts/s", s[f"ours_{main}"],
             s["raw_headers"], "raw nats-py, same headers", 0.60),
        _row(f"{STREAM_SCENARIO}, window {main} (default)", 128, "parts/s", s[f"ours_{main}"],
             s["raw_bare"], "raw nats-py, no headers", None),
    ] + [
        _row(f"{STREAM_SCENARIO}, window {w}", 128, "parts/s", s[f"ours_{w}"],
             s["raw_headers"], "raw nats-py, same headers", None)
        for w in others
    ]  # fmt: skip


async def _scale_rows(url: str, repeats: int, n: int) -> list[dict[str, Any]]:
    from . import bench_scale

    samples: dict[str, dict[int, list[float]]] = {}
    for r in range(max(1, repeats // 2)):
        for where, rates in (await bench_scale.scale_rates(url, n)).items():
            for replicas, rate in rates.items():
                samples.setdefault(where, {}).setdefault(replicas, []).append(rate)
        progress(f"scale out: repeat {r + 1}")
    return [
        _row(f"ask, 100 in flight, {k} responder processes, {where}", 128, "asks/s",
             by_count[k], by_count[1], f"1 responder process, {where}", None)
        for where, by_count in samples.items()
        for k in (2, 3)
    ]  # fmt: skip


def await_rows(coro: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run a scenario coroutine on a fresh asyncio loop; tag its rows with the loop."""
    rows = asyncio.run(coro)
    for row in rows:
        row["loop"] = "asyncio"
    return rows


def _row(
    scenario: str,
    size: int,
    unit: str,
    ours: list[float],
    base: list[float],
    baseline: str,
    target: float | None,
) -> dict[str, Any]:
    ratio = statistics.median(ours) / statistics.median(base)
    return {
        "scenario": scenario, "payload_bytes": size, "unit": unit, "baseline": baseline,
        "ours": _summary(ours), "base": _summary(base), "ratio": ratio,
        "target": target, "target_kind": "at least",
        "met": None if target is None else ratio >= target,
    }  # fmt: skip


def _latency_row(
    scenario: str,
    size: int,
    ours: list[float],
    base: list[float],
    baseline: str,
    target: float | None,
) -> dict[str, Any]:
    ratio = _pct(ours, 0.5) / _pct(base, 0.5)
    return {
        "scenario": scenario, "payload_bytes": size, "unit": "us", "baseline": baseline,
        "ours": {"median": _pct(ours, 0.5), "min": min(ours), "max": _pct(ours, 0.99)},
        "base": {"median": _pct(base, 0.5), "min": min(base), "max": _pct(base, 0.99)},
        "ratio": ratio, "target": target, "target_kind": "at most",
        "met": None if target is None else ratio <= target,
        "distribution": {"ours": _percentiles(ours), "base": _percentiles(base)},
    }  # fmt: skip


def _percentiles(values: list[float]) -> dict[str, float]:
    """p1, p5, p25, p50, p75, p95, p99 of ``values``: enough to draw their distribution."""
    return {f"p{q}": _pct(values, q / 100) for q in (1, 5, 25, 50, 75, 95, 99)}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (latency rows show p50 and p99)."""
    lines = [
        "| scenario | loop | payload | ours (median, min-max) | baseline (median, min-max) "
        "| baseline is | ours / baseline | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        o, b, unit = row["ours"], row["base"], row["unit"]
        spread = (
            "p50 {median:,.0f} (p99 {max:,.0f})"
            if unit == "us"
            else "{median:,.0f} ({min:,.0f}-{max:,.0f})"
        )
        target = (
            ""
            if row["target"] is None
            else (
                f"{'≥' if row['target_kind'] == 'at least' else '≤'} {row['target']:g}x "
                f"{'met' if row['met'] else 'NOT met'}"
            )
        )
        lines.append(
            f"| {row['scenario']} | {row.get('loop', 'asyncio')} | {row['payload_bytes']} B "
            f"| {spread.format(**o)} {unit} | "
            f"{spread.format(**b)} {unit} | {row['baseline']} | {row['ratio']:.2f}x | {target} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """Ratios, throughput and latency distributions per scenario; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rates = [r for r in rows if r["unit"] != "us"]
    latencies = [r for r in rows if r["unit"] == "us"]
    fig, (ax_ratio, ax_rate, ax_lat) = plt.subplots(
        3, 1, figsize=(12, 0.45 * (len(rows) + len(rates) + 2 * len(latencies)) + 4),
        gridspec_kw={"height_ratios": [len(rows), len(rates), 2 * len(latencies) or 1]},
    )  # fmt: skip
    _plot_ratios(ax_ratio, rows)
    labels = [_label(r) for r in rates]
    y = list(range(len(rates)))
    ax_rate.barh([i - 0.2 for i in y], [r["ours"]["median"] for r in rates], 0.4, label="ours")
    ax_rate.barh([i + 0.2 for i in y], [r["base"]["median"] for r in rates], 0.4, label="baseline")
    ax_rate.set_yticks(y, labels, fontsize=7)
    ax_rate.invert_yaxis()
    ax_rate.set_xscale("log")
    ax_rate.set_xlabel("throughput, median (messages or asks per second, log scale)")
    ax_rate.legend(fontsize=7)
    stats, names = [], []
    for r in latencies:
        for who in ("ours", "base"):
            d = r["distribution"][who]
            stats.append(
                {"whislo": d["p1"], "q1": d["p25"], "med": d["p50"], "q3": d["p75"],
                 "whishi": d["p99"], "fliers": []}
            )  # fmt: skip
            names.append(f"{_label(r)}: {'ours' if who == 'ours' else 'baseline'}")
    if stats:
        ax_lat.bxp(stats, orientation="horizontal", showfliers=False)
        ax_lat.set_yticks(range(1, len(names) + 1), names, fontsize=7)
        ax_lat.invert_yaxis()
        ax_lat.set_xscale("log")
    ax_lat.set_xlabel("latency in us (box: p25-p75, line: p50, whiskers: p1-p99; log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _label(row: dict[str, Any]) -> str:
    loop = row.get("loop", "asyncio")
    return f"{row['scenario']}, {row['payload_bytes']} B, {loop} vs {row['baseline']}"


def _plot_ratios(ax: Any, rows: list[dict[str, Any]]) -> None:
    colors = [
        "tab:green" if r["met"] else ("tab:red" if r["met"] is False else "tab:blue") for r in rows
    ]
    ax.barh(range(len(rows)), [r["ratio"] for r in rows], color=colors)
    for i, r in enumerate(rows):
        if r["target"] is not None:
            ax.plot([r["target"], r["target"]], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ours / baseline (latency rows: lower is better; the black tick is the target)")
    ax.set_title("motadata-actors benchmark (green: target met, red: not met)")


def run_suite(out: Path, *, quick: bool) -> dict[str, Any]:
    """Run every scenario; write ``results.json``, ``results.md`` and ``results.png`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    repeats, n, sizes = (3, 2000, [128]) if quick else (5, 10_000, [128, 4096])
    stream_parts = 5000 if quick else 50_000  # parts in one streaming reply
    started = time.time()
    progress(
        f"{'quick' if quick else 'full'} run: {repeats} repeats of {n} messages; results in {out}"
    )
    loops = ["asyncio"]
    try:
        import uvloop  # noqa: F401

        loops.append("uvloop")
    except ImportError:
        progress("uvloop is not installed: asyncio loop only (pip install uvloop to compare)")
    rows: list[dict[str, Any]] = []
    from . import bench_codecs, bench_telemetry

    with NatsServer() as server:
        for loop_name in loops:
            progress(f"NATS scenarios on {loop_name} (server {server.url})")
            runner = _runner(loop_name)
            for row in runner(_nats_rows(server.url, repeats, n, sizes)):
                row["loop"] = loop_name
                rows.append(row)
            progress(
                f"streaming replies on {loop_name}: {stream_parts} parts of 128 B, "
                f"windows {' and '.join(map(str, STREAM_WINDOWS))}"
            )
            for row in runner(_streaming_rows(server.url, repeats, stream_parts)):
                row["loop"] = loop_name
                rows.append(row)
        progress("durable mailboxes (JetStream) vs raw nats-py JetStream")
        rows += await_rows(_durable_rows(server.url, repeats, 300 if quick else 2000))
        progress("scale out: 1, 2 and 3 responder processes, one server and a 3-node cluster")
        rows += await_rows(_scale_rows(server.url, repeats, n))
        progress("telemetry: off, unsampled, 10 % and always sampled (sequential asks)")
        telemetry = bench_telemetry.run(2 if quick else 5, 300 if quick else 3000, server.url)
    progress("in-process scenarios")
    for row in asyncio.run(_inprocess_rows(repeats, n)):
        row["loop"] = "asyncio"
        rows.append(row)
    progress("codecs")
    codecs = bench_codecs.run(3 if quick else 7, 0.05 if quick else 0.3)
    result = {
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "seconds": round(time.time() - started, 1),
        "rows": rows,
        "codecs": codecs,
        "telemetry": telemetry,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    text = (
        f"{markdown(rows)}\n\n### Telemetry\n\n{bench_telemetry.markdown(telemetry)}\n\n"
        f"### Codecs\n\n{bench_codecs.markdown(codecs)}\n"
    )
    (out / "results.md").write_text(text)
    plotted = plot(rows, out / "results.png")
    if not plotted:
        progress("matplotlib is not installed: no plot (pip install 'motadata-actors[bench]')")
    progress(f"done in {result['seconds']} s")
    print(text)
    return result


def _runner(loop_name: str) -> Callable[[Awaitable[Any]], Any]:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run  # type: ignore[no-any-return]
    return asyncio.run  # type: ignore[return-value]
