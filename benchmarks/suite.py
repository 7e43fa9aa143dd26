"""The benchmark suite: each scenario beside its baselines, interleaved, reported as ratios.

Scenarios (128-byte payloads; 4 KiB too in the full run), each on names of its own
(:func:`scenario_plan`: a tenant, raw nats-py subjects, streams):

1. tell throughput over NATS: ours vs raw nats-py publish/subscribe with the same
   payload and no headers (a plain JSON core tell of ours sends none), and vs FastStream's
   NATS broker, the framework users would otherwise pick (with the ``bench`` extra; a
   reference row sets it beside raw nats-py too);
2. ask over NATS, sequential (throughput and p50 latency) and with 100 in flight, the
   responder in the same process and in another OS process
   (:mod:`~motadata_actors.benchmarks.responder`): ours vs raw nats-py ``request`` with our
   two headers (``Sdk-Message-Id``, ``Sdk-Timeout-Ms``), and with none; responder in the
   same process: vs FastStream's ``broker.request`` too;
3. streaming replies: the parts per second of ``ask_stream`` (windows 256, the default,
   and 64) vs raw nats-py publishing the same parts to another connection
   (``bench_streaming``);
4. durable mailboxes vs raw nats-py JetStream (``bench_durable``), scale-out with one to
   three responder processes on one server and a three-node cluster (``bench_scale``);
5. in process: tell and ask vs a plain asyncio-queue actor and Pykka;
6. telemetry and codecs (``bench_telemetry``; ``bench_codecs``, ours vs the very library
   each codec wraps);
7. keyed agents beside a plain agent (``bench_keyed``): first-message activation,
   activations per second, asks to active keys, state saves of 1 and 64 KiB, memory;
8. large bodies (``bench_claims``): a claimed ask beside raw nats-py's object store, and a
   1536-d float32 embedding per codec (``bench_codecs``);
9. the HTTP gateway (``bench_gateway``): 1,000 concurrent asks over HTTP beside over NATS.

How (:mod:`~motadata_actors.benchmarks.measure`): every side of a scenario is set up once,
calibrated, then run in time-sized batches (at least ``min_seconds`` each), all sides back
to back in each repeat, the order reversed every repeat. Rows
(:mod:`~motadata_actors.benchmarks.stats`) give each side's and the ratio's median and
spread, and a verdict on the target that is ``met`` or ``missed`` only when the ratio's
whole spread is on one side of it. After each scenario the
:class:`~motadata_actors.benchmarks.ledger.Ledger` checks that every request (or tell) was
handled exactly once, by the responder meant to: a shared subject or queue group fails the
run with :class:`~motadata_actors.benchmarks.ledger.MeasurementError`.

Results: a JSON file, a Markdown table and (with matplotlib) a PNG, in ``--out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, final

from motadata_actors.mailbox import NatsCluster, NatsServer

from . import bench_durable, bench_scale, bench_streaming, sides
from .ledger import Counter, Ledger, ScenarioNames, Tally, Target, scenario_names
from .measure import Batch, Samples, Side, measure
from .report import explain, markdown, plot
from .responder import ResponderProcess
from .stats import latency_row, rate_row

__all__ = ("Config", "run_suite", "scenario_plan")

_T = TypeVar("_T")

STREAM_SCENARIO = "nats streaming reply"
"""The streaming rows' scenario names start with this (CI looks them up by it)."""
STREAM_WINDOWS = (256, 64)
"""Credit windows the streaming scenario runs with; the first (the default) is the main row."""
SAME_HEADERS = "raw nats-py request, same headers"
NO_HEADERS = "raw nats-py request, no headers"
PEER_TELL = "FastStream (NATS) publish/subscriber"
PEER_ASK = "FastStream (NATS) request/subscriber"
PEER_NOTE = "(peer, for reference)"
"""Ends the scenario of a row that sets the peer (FastStream) beside raw nats-py, not ours."""
_ASKS = ((1, "local"), (100, "local"), (1, "remote"), (100, "remote"))
"""(asks in flight, where the responder runs) of the NATS ask scenarios."""
_SCALE_WHERE = ("one server", "three-node cluster")
"""Where the scale-out scenario runs: the suite's server, then a cluster of its own."""


Maker = tuple[str, AbstractAsyncContextManager[Batch], Target, int]
"""One side to set up: its key, the context that makes its batch, its target, its first size."""


def progress(text: str) -> None:
    """One progress line on stderr."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


@final
@dataclass(frozen=True, slots=True)
class Config:
    """How long and how often to measure."""

    repeats: int
    """Recorded batches per side; the order of the sides reverses after each."""
    min_seconds: float
    """The shortest a recorded batch may run."""
    sizes: tuple[int, ...] = (128,)
    """Payload sizes of the NATS tell and ask scenarios, in bytes."""
    loops: tuple[str, ...] = ("asyncio",)
    """Event loops of the NATS and streaming scenarios."""

    @classmethod
    def for_run(cls, *, quick: bool, loops: tuple[str, ...]) -> Config:
        """The quick run (under two minutes on two cores) or the full one."""
        if quick:
            return cls(repeats=4, min_seconds=0.2, sizes=(128,), loops=loops)
        return cls(repeats=6, min_seconds=0.3, sizes=(128, 4096), loops=loops)


def _ask_key(in_flight: int, where: str) -> str:
    return f"ask{in_flight}-{where}"


def scenario_plan(run_id: str, config: Config) -> dict[str, ScenarioNames]:
    """The names of every scenario (and of each side that needs its own), by key.

    Every key gets a tenant no other has, and with it raw subjects no other has.
    """
    keys: list[str] = []
    for loop in config.loops:
        for size in config.sizes:
            keys.append(f"{loop}-{size}-tell")
            keys += [f"{loop}-{size}-{_ask_key(i, w)}" for i, w in _ASKS]
        keys += [f"{loop}-stream-w{w}" for w in STREAM_WINDOWS]
    keys += ["durable-tell", "durable-ask", "inprocess-tell", "inprocess-ask"]
    keys += [f"scale{i}-{k}" for i in range(len(_SCALE_WHERE)) for k in bench_scale.REPLICAS]
    return {key: scenario_names(run_id, key) for key in keys}


def _payload(size: int) -> tuple[str, bytes]:
    payload = "x" * (size - 2)  # JSON adds two quotes: the body is `size` bytes
    return payload, f'"{payload}"'.encode()


@contextlib.contextmanager
def _quiet_loop_lag() -> Iterator[None]:
    """Silence our systems' loop-lag warning while a scenario's sides take turns.

    Our side's system stays up, idle, while a baseline runs: a raw publisher that floods
    the loop, or Pykka's threads holding the GIL. The warning would report what the
    baseline itself does; a blocked loop on our side shows in its figures anyway.
    """
    logger = logging.getLogger("motadata_actors.system")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _measured(
    ledger: Ledger,
    scenario: str,
    makers: Sequence[Maker],
    config: Config,
) -> dict[str, Samples]:
    """Set up each side, measure them all, check every message was handled once."""
    async with contextlib.AsyncExitStack() as stack:
        measured = []
        for key, maker, target, start in makers:
            batch: Batch = await stack.enter_async_context(maker)
            measured.append(Side(key, batch, target, start))
        with _quiet_loop_lag():
            async with ledger.scenario(scenario, [s.target for s in measured]):
                return await measure(
                    measured,
                    repeats=config.repeats,
                    min_seconds=config.min_seconds,
                    progress=_progress_of(scenario),
                )


def _progress_of(scenario: str) -> Callable[[str], None]:
    return lambda text: progress(f"{scenario}: {text}")


def _target(side: str, *counters: Counter) -> Target:
    return Target(side, frozenset(c.name for c in counters))


# -- NATS tell and ask -------------------------------------------------------------------------


async def _nats_rows(
    url: str, config: Config, names: dict[str, ScenarioNames], loop: str, size: int
) -> tuple[list[dict[str, Any]], list[dict[str, object]]]:
    """Tell and ask rows for one loop and payload size, with their ledger records."""
    ledger = Ledger()
    remote = [names[f"{loop}-{size}-{_ask_key(i, w)}"] for i, w in _ASKS if w == "remote"]
    raw_subjects = [s for n in remote for s in (n.raw_headers, n.raw_bare)]
    async with (
        ResponderProcess.start(url, "raw", raw_subjects) as raw_child,
        ResponderProcess.start(url, "ours", [n.tenant for n in remote]) as our_child,
    ):
        # The responder processes serve the remote scenarios; the ledger watches them
        # through every scenario, so a local one they answer fails the run.
        with ledger.serving(*raw_child.counters.values(), *our_child.counters.values()):
            rows = await _tell_rows(url, config, names[f"{loop}-{size}-tell"], size, ledger)
            for in_flight, where in _ASKS:
                n = names[f"{loop}-{size}-{_ask_key(in_flight, where)}"]
                children = (raw_child, our_child) if where == "remote" else None
                rows += await _ask_rows(url, config, n, size, in_flight, children, ledger)
    return rows, ledger.records


async def _tell_rows(
    url: str, config: Config, names: ScenarioNames, size: int, ledger: Ledger
) -> list[dict[str, Any]]:
    payload, body = _payload(size)
    ours = Tally("our counting actor")
    raw_b = Tally("raw subscriber, no headers")
    peer = Tally("FastStream subscriber")
    scenario = f"nats tell, {size} B"
    # Our plain JSON core tell sends no header (no Content-Type for the default codec, no
    # id for what is never resent), so bare raw nats-py is the like-for-like baseline.
    makers: list[Maker] = [
        ("ours", sides.our_tell(url, names.tenant, payload, ours), _target("ours", ours), 64),
        ("raw_bare", sides.raw_tell(url, names.raw_bare, body, None, raw_b),
         _target("raw, no headers", raw_b), 64),
    ]  # fmt: skip
    if sides.faststream_available():
        makers.append(("peer", sides.faststream_tell(url, names.peer, payload, peer),
                       _target("FastStream", peer), 64))  # fmt: skip
    with ledger.serving(ours, raw_b, peer):
        s = await _measured(ledger, scenario, makers, config)
    rows = [
        rate_row("nats tell", size, "msgs/s", s["ours"], s["raw_bare"],
                 "raw nats-py, no headers (ours sends none either)", 0.50),
    ]  # fmt: skip
    if "peer" in s:
        rows += [
            rate_row("nats tell", size, "msgs/s", s["ours"], s["peer"], PEER_TELL, None),
            rate_row(f"FastStream tell {PEER_NOTE}", size, "msgs/s", s["peer"], s["raw_bare"],
                     "raw nats-py, no headers", None),
        ]  # fmt: skip
    return rows


async def _ask_rows(
    url: str,
    config: Config,
    names: ScenarioNames,
    size: int,
    in_flight: int,
    children: tuple[ResponderProcess, ResponderProcess] | None,
    ledger: Ledger,
) -> list[dict[str, Any]]:
    payload, body = _payload(size)
    where = "responder in another process" if children else "responder in the same process"
    answering: tuple[Tally | None, Tally | None, Tally | None] = (None, None, None)
    peer: Tally | None = None
    counters: tuple[Counter, Counter, Counter]
    if children is None:  # answered here, counted in these tallies
        here = (Tally("our echo actor, this process"), Tally("raw responder, same headers"),
                Tally("raw responder, no headers"))  # fmt: skip
        answering, counters = here, here
        if sides.faststream_available():  # the peer is measured beside a local responder
            peer = Tally("FastStream responder")
    else:
        raw_child, our_child = children
        counters = (our_child.counters[names.tenant], raw_child.counters[names.raw_headers],
                    raw_child.counters[names.raw_bare])  # fmt: skip
    ours, raw_h, raw_b = answering
    mode = "sequential" if in_flight == 1 else f"{in_flight} in flight"
    scenario = f"nats ask, {mode}, {where}, {size} B"
    makers: list[Maker] = [
        ("ours", sides.our_ask(url, names.tenant, payload, in_flight, ours),
         _target("ours", counters[0]), in_flight),
        ("raw_headers", sides.raw_ask(url, names.raw_headers, body, in_flight, headers=True,
                                      tally=raw_h),
         _target("raw, same headers", counters[1]), in_flight),
        ("raw_bare", sides.raw_ask(url, names.raw_bare, body, in_flight, headers=False,
                                   tally=raw_b),
         _target("raw, no headers", counters[2]), in_flight),
    ]  # fmt: skip
    if peer is not None:
        makers.append(("peer", sides.faststream_ask(url, names.peer, payload, in_flight, peer),
                       _target("FastStream", peer), in_flight))  # fmt: skip
    with ledger.serving(*(t for t in (*answering, peer) if t is not None)):
        s = await _measured(ledger, scenario, makers, config)
    peer_rows = _peer_ask_rows(s, size, mode, where) if peer is not None else []
    if in_flight == 1:
        return [
            rate_row(f"nats ask, sequential, {where}", size, "asks/s", s["ours"],
                     s["raw_headers"], SAME_HEADERS, None),
            rate_row(f"nats ask, sequential, {where}", size, "asks/s", s["ours"],
                     s["raw_bare"], NO_HEADERS, None),
            latency_row(f"nats ask p50 latency, {where}", size, s["ours"], s["raw_headers"],
                        SAME_HEADERS, None),
            latency_row(f"nats ask p50 latency, {where}", size, s["ours"], s["raw_bare"],
                        NO_HEADERS, 1.15),
            *peer_rows,
        ]  # fmt: skip
    return [
        rate_row(f"nats ask, {mode}, {where}", size, "asks/s", s["ours"], s["raw_headers"],
                 SAME_HEADERS, 0.80),
        rate_row(f"nats ask, {mode}, {where}", size, "asks/s", s["ours"], s["raw_bare"],
                 NO_HEADERS, 0.60),
        *peer_rows,
    ]  # fmt: skip


def _peer_ask_rows(s: dict[str, Samples], size: int, mode: str, where: str) -> list[dict[str, Any]]:
    """Ours beside FastStream, and FastStream beside bare raw nats-py (no targets)."""
    if mode == "sequential":
        return [
            latency_row(f"nats ask p50 latency, {where}", size, s["ours"], s["peer"], PEER_ASK,
                        None),
            latency_row(f"FastStream ask p50 latency, {where} {PEER_NOTE}", size, s["peer"],
                        s["raw_bare"], NO_HEADERS, None),
        ]  # fmt: skip
    return [
        rate_row(f"nats ask, {mode}, {where}", size, "asks/s", s["ours"], s["peer"], PEER_ASK,
                 None),
        rate_row(f"FastStream ask, {mode}, {where} {PEER_NOTE}", size, "asks/s", s["peer"],
                 s["raw_bare"], NO_HEADERS, None),
    ]  # fmt: skip


# -- streaming, durable, scale out -------------------------------------------------------------


async def _streaming_rows(
    url: str, config: Config, names: dict[str, ScenarioNames], loop: str
) -> tuple[list[dict[str, Any]], list[dict[str, object]]]:
    ledger = Ledger()
    payload, body = _payload(128)
    raw_names = names[f"{loop}-stream-w{STREAM_WINDOWS[0]}"]
    tallies = {w: Tally(f"streaming actor, window {w}") for w in STREAM_WINDOWS}
    raw_h, raw_b = Tally("raw subscriber, same headers"), Tally("raw subscriber, no headers")
    makers: list[Maker] = [
        (f"ours_{w}", bench_streaming.our_stream(url, names[f"{loop}-stream-w{w}"].tenant,
                                                 payload, w, tallies[w]),
         _target(f"ours, window {w}", tallies[w]), 200)
        for w in STREAM_WINDOWS
    ]  # fmt: skip
    makers += [
        ("raw_headers", bench_streaming.raw_stream(url, raw_names.raw_headers, body, True, raw_h),
         _target("raw, same headers", raw_h), 200),
        ("raw_bare", bench_streaming.raw_stream(url, raw_names.raw_bare, body, False, raw_b),
         _target("raw, no headers", raw_b), 200),
    ]  # fmt: skip
    with ledger.serving(*tallies.values(), raw_h, raw_b):
        s = await _measured(ledger, f"{STREAM_SCENARIO}, {loop}", makers, config)
    main, *others = STREAM_WINDOWS
    rows = [
        rate_row(f"{STREAM_SCENARIO}, window {main} (default)", 128, "parts/s", s[f"ours_{main}"],
                 s["raw_headers"], "raw nats-py, same headers", 0.60),
        rate_row(f"{STREAM_SCENARIO}, window {main} (default)", 128, "parts/s", s[f"ours_{main}"],
                 s["raw_bare"], "raw nats-py, no headers", None),
    ] + [
        rate_row(f"{STREAM_SCENARIO}, window {w}", 128, "parts/s", s[f"ours_{w}"],
                 s["raw_headers"], "raw nats-py, same headers", None)
        for w in others
    ]  # fmt: skip
    return rows, ledger.records


async def _durable_rows(
    url: str, config: Config, names: dict[str, ScenarioNames]
) -> tuple[list[dict[str, Any]], list[dict[str, object]]]:
    ledger = Ledger()
    payload, body = _payload(128)
    s: dict[str, dict[str, Samples]] = {}
    for mode in ("tell", "ask"):
        n = names[f"durable-{mode}"]
        ours, raw = Tally(f"our durable actor ({mode})"), Tally(f"raw JetStream consumer ({mode})")
        with ledger.serving(ours, raw):
            s[mode] = await _measured(ledger, f"durable {mode}", [
                ("ours", bench_durable.our_durable(url, n.tenant, payload, mode, ours),
                 _target("ours", ours), 16),
                ("raw", bench_durable.raw_jetstream(url, n.raw_headers, f"bench-{n.tenant}",
                                                    body, mode, raw),
                 _target("raw", raw), 16),
            ], config)  # fmt: skip
    return [
        rate_row("durable tell (stored, handled, acked)", 128, "msgs/s", s["tell"]["ours"],
                 s["tell"]["raw"], "raw nats-py JetStream, same headers", 0.70),
        rate_row("durable ask, sequential", 128, "asks/s", s["ask"]["ours"], s["ask"]["raw"],
                 "raw nats-py JetStream, same headers", 0.70),
    ], ledger.records  # fmt: skip


async def _scale_rows(
    url: str, config: Config, names: dict[str, ScenarioNames]
) -> tuple[list[dict[str, Any]], list[dict[str, object]]]:
    ledger = Ledger()
    rows: list[dict[str, Any]] = []
    for i, where in enumerate(_SCALE_WHERE):
        by_count = {k: names[f"scale{i}-{k}"] for k in bench_scale.REPLICAS}
        scenario = f"ask, 100 in flight, 1-3 responder processes, {where}"
        async with contextlib.AsyncExitStack() as stack:
            asker, responders = url, [url]
            if where == "three-node cluster":
                cluster = stack.enter_context(NatsCluster(3))
                asker, responders = cluster.urls[0], cluster.urls
            s = await bench_scale.scale_samples(
                ledger, scenario, asker, responders, by_count,
                repeats=config.repeats, min_seconds=config.min_seconds,
                progress=_progress_of(scenario),
            )  # fmt: skip
        rows += [
            rate_row(f"ask, 100 in flight, {k} responder processes, {where}", 128, "asks/s",
                     s[k], s[1], f"1 responder process, {where}", None)
            for k in bench_scale.REPLICAS[1:]
        ]  # fmt: skip
    return rows, ledger.records


# -- in process ----------------------------------------------------------------------------------


def _has_pykka() -> bool:
    try:
        import pykka  # noqa: F401
    except ImportError:
        return False
    return True


async def _inprocess_rows(
    config: Config, names: dict[str, ScenarioNames]
) -> tuple[list[dict[str, Any]], list[dict[str, object]]]:
    ledger = Ledger()
    payload = "x" * 126
    pykka = _has_pykka()
    if not pykka:
        progress(
            "Pykka is not installed (pip install 'motadata-actors[bench]'): its rows are skipped"
        )
    s: dict[str, dict[str, Samples]] = {}
    for kind in ("tell", "ask"):
        ours, queue, pk = (Tally(f"our actor ({kind})"), Tally(f"asyncio-queue actor ({kind})"),
                           Tally(f"Pykka actor ({kind})"))  # fmt: skip
        tenant = names[f"inprocess-{kind}"].tenant
        if kind == "tell":
            makers = [("ours", sides.our_tell(None, tenant, payload, ours)),
                      ("queue", sides.queue_tell(payload, queue))]  # fmt: skip
            if pykka:
                makers.append(("pykka", sides.pykka_tell(pk)))
        else:
            makers = [("ours", sides.our_ask(None, tenant, payload, 1, ours)),
                      ("queue", sides.queue_ask(payload, queue))]  # fmt: skip
            if pykka:
                makers.append(("pykka", sides.pykka_ask(payload, pk)))
        tallies = {"ours": ours, "queue": queue, "pykka": pk}
        with ledger.serving(ours, queue, pk):
            s[kind] = await _measured(ledger, f"in-process {kind}", [
                (key, maker, _target(key, tallies[key]), 64) for key, maker in makers
            ], config)  # fmt: skip
    rows = [
        rate_row("in-process tell", 128, "msgs/s", s["tell"]["ours"], s["tell"]["queue"],
                 "plain asyncio-queue actor", None),
        latency_row("in-process ask p50 latency", 128, s["ask"]["ours"], s["ask"]["queue"],
                    "plain asyncio-queue actor", 3.0),
    ]  # fmt: skip
    if pykka:
        rows += [
            rate_row("in-process tell", 128, "msgs/s", s["tell"]["ours"], s["tell"]["pykka"],
                     "Pykka tell", 1.0),
            rate_row("in-process ask, sequential", 128, "asks/s", s["ask"]["ours"],
                     s["ask"]["pykka"], "Pykka ask", 2.0),
        ]  # fmt: skip
    return rows, ledger.records


# -- the run -------------------------------------------------------------------------------------


def run_suite(out: Path, *, quick: bool) -> dict[str, Any]:
    """Run every scenario; write ``results.json``, ``results.md`` and ``results.png`` to ``out``."""
    from . import bench_claims, bench_codecs, bench_gateway, bench_keyed, bench_telemetry

    out.mkdir(parents=True, exist_ok=True)
    loops = ["asyncio"]
    try:
        import uvloop  # noqa: F401

        loops.append("uvloop")
    except ImportError:
        progress("uvloop is not installed: asyncio loop only (pip install uvloop to compare)")
    config = Config.for_run(quick=quick, loops=tuple(loops))
    names = scenario_plan(uuid.uuid4().hex[:6], config)
    started = time.time()
    progress(
        f"{'quick' if quick else 'full'} run: {config.repeats} repeats per side, batches of at "
        f"least {config.min_seconds:g} s; results in {out}"
    )
    rows: list[dict[str, Any]] = []
    answered: list[dict[str, object]] = []

    def run(loop: str, coro: Coroutine[Any, Any, tuple[list[dict[str, Any]], list[Any]]]) -> None:
        new_rows, records = _runner(loop)(coro)
        for row in new_rows:
            row["loop"] = loop
        rows.extend(new_rows)
        answered.extend(records)
        progress(f"{len(rows)} rows after {time.time() - started:.0f} s")

    if not sides.faststream_available():
        progress(
            "FastStream is not installed (pip install 'motadata-actors[bench]'): "
            "its peer rows are skipped"
        )
    with NatsServer() as server:
        url = server.url
        for loop in config.loops:
            for size in config.sizes:
                progress(f"NATS tell and ask, {size} B, on {loop} (server {url})")
                run(loop, _nats_rows(url, config, names, loop, size))
            progress(f"streaming replies on {loop}: windows {STREAM_WINDOWS}")
            run(loop, _streaming_rows(url, config, names, loop))
        progress("durable mailboxes (JetStream) vs raw nats-py JetStream")
        run("asyncio", _durable_rows(url, config, names))
        progress("scale out: 1, 2 and 3 responder processes, one server and a 3-node cluster")
        run("asyncio", _scale_rows(url, config, names))
        progress("telemetry: off, unsampled, 10 % and always sampled (sequential asks)")
        telemetry = bench_telemetry.run(2 if quick else 5, 300 if quick else 3000, url)
        progress("keyed agents beside a plain agent: activation, rate, memory, state saves")
        keyed = bench_keyed.run(2 if quick else 5, 500 if quick else 3000, url,
                                keys=1000 if quick else 10_000)  # fmt: skip
        progress("large bodies: a claimed ask beside raw nats-py's object store")
        large = bench_claims.run(2 if quick else 5, (4 if quick else 32) * 1024 * 1024, 2, url)
        gateway = None
        if bench_gateway.available():
            progress("the HTTP gateway: 1,000 concurrent asks over HTTP beside over NATS")
            gateway = bench_gateway.run(2 if quick else 5, 1000, url)
        else:
            progress("no HTTP gateway rows: pip install 'motadata-actors[gateway,bench]'")
    progress("in-process scenarios")
    run("asyncio", _inprocess_rows(config, names))
    progress("codecs (ours vs the library each wraps)")
    codecs = bench_codecs.run(4 if quick else 6, 0.05 if quick else 0.3)
    codecs["vectors"] = bench_codecs.run_vectors(4 if quick else 6, 0.05 if quick else 0.3)
    result = {
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "seconds": round(time.time() - started, 1),
        "repeats": config.repeats,
        "min_batch_seconds": config.min_seconds,
        "rows": rows,
        "answered": answered,
        "codecs": codecs,
        "telemetry": telemetry,
        "keyed": keyed,
        "large_bodies": large,
        "gateway": gateway,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    gateway_text = f"### HTTP gateway\n\n{bench_gateway.markdown(gateway)}\n\n" if gateway else ""
    text = (
        f"{markdown(rows)}\n\n{explain(config.repeats, config.min_seconds)}\n\n"
        f"### Telemetry\n\n{bench_telemetry.markdown(telemetry)}\n\n"
        f"### Keyed agents\n\n{bench_keyed.markdown(keyed)}\n\n"
        f"### Large bodies\n\n{bench_claims.markdown(large)}\n\n"
        f"{gateway_text}"
        f"### Codecs\n\n{bench_codecs.markdown(codecs)}\n\n"
        f"{bench_codecs.vector_markdown(codecs['vectors'])}\n"
    )
    (out / "results.md").write_text(text)
    if not plot(rows, out / "results.png"):
        progress("matplotlib is not installed: no plot (pip install 'motadata-actors[bench]')")
    progress(f"done in {result['seconds']} s")
    print(text)
    return result


def _runner(loop_name: str) -> Callable[[Coroutine[Any, Any, _T]], _T]:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run  # type: ignore[no-any-return, unused-ignore]
    return asyncio.run
