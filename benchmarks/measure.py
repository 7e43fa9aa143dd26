"""Time-sized, interleaved measurement of a scenario's sides (ours and its baselines).

Rules (theory of operation):

* A side is a :data:`Batch`: ``await batch(n)`` sends ``n`` messages (or asks, or parts)
  on a setup made once for the scenario, and returns its :class:`Timing`.
* Calibration first: each side runs small batches, growing, until one takes a quarter of
  ``min_seconds``; its size is scaled from there to about ``1.25 * min_seconds``. The
  calibration batches also warm the side up; they are not recorded.
* Then ``repeats`` rounds. Each round runs every side once, back to back, so all sides
  of one round see the same machine load; the order reverses every round, so no side
  always runs first. A recorded batch lasts at least ``min_seconds``: a shorter one is
  discarded and run again, larger.
* Every message a batch sends, recorded or not, is added to its side's
  :class:`~motadata_actors.benchmarks.ledger.Target`, for the answered-exactly-once check.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import final

from .ledger import Target

__all__ = ("Batch", "Samples", "Side", "Timing", "ask_batch", "batch_size", "measure")

MAX_BATCH = 500_000
"""The most messages one batch sends (sinks are bounded above this)."""


@final
@dataclass(frozen=True, slots=True)
class Timing:
    """One batch: how long it took, how many messages it sent, per-ask latencies (us)."""

    elapsed: float
    sent: int
    latencies: tuple[float, ...] = ()


Batch = Callable[[int], Awaitable[Timing]]
"""``await batch(n)``: run ``n`` operations of one side and time them."""


@final
@dataclass(slots=True)
class Side:
    """One side of a scenario: its batch, where calibration starts, and what it sent."""

    key: str
    batch: Batch
    target: Target
    start: int = 32


@final
@dataclass(slots=True)
class Samples:
    """A side's recorded batches, one per repeat."""

    rates: list[float] = field(default_factory=list)
    """Operations per second."""
    p50s: list[float] = field(default_factory=list)
    """Median latency (us) of each batch that measured latencies."""
    latencies: list[float] = field(default_factory=list)
    """Every latency (us) of every recorded batch, pooled."""
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def add(self, n: int, timing: Timing) -> None:
        """Record one batch of ``n`` operations."""
        self.rates.append(n / timing.elapsed)
        self.seconds.append(timing.elapsed)
        self.sizes.append(n)
        if timing.latencies:
            self.p50s.append(statistics.median(timing.latencies))
            self.latencies.extend(timing.latencies)


def batch_size(n: int, elapsed: float, seconds: float, *, growth: float = 100.0) -> int:
    """Operations for a batch of about ``1.25 * seconds``, given ``n`` took ``elapsed``.

    At least ``n + 1`` (a batch that was too short grows), at most ``growth`` times ``n``
    and :data:`MAX_BATCH`.
    """
    wanted = math.ceil(n * 1.25 * seconds / max(elapsed, 1e-9))
    return max(n + 1, min(wanted, math.ceil(n * growth), MAX_BATCH))


async def _run(side: Side, n: int) -> Timing:
    timing = await side.batch(n)
    side.target.sent += timing.sent
    return timing


async def _calibrate(side: Side, min_seconds: float) -> int:
    n = side.start
    while True:
        timing = await _run(side, n)
        if timing.elapsed >= min_seconds / 4 or n >= MAX_BATCH:
            return min(batch_size(n, timing.elapsed, min_seconds), MAX_BATCH)
        n = batch_size(n, timing.elapsed, min_seconds / 4, growth=10.0)


async def measure(
    sides: Sequence[Side],
    *,
    repeats: int,
    min_seconds: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Samples]:
    """Calibrate every side, then run ``repeats`` rounds of all sides (see the rules)."""
    sizes = {side.key: await _calibrate(side, min_seconds) for side in sides}
    samples = {side.key: Samples() for side in sides}
    for r in range(repeats):
        for side in sides if r % 2 == 0 else list(reversed(sides)):
            n = sizes[side.key]
            timing = await _run(side, n)
            while timing.elapsed < min_seconds and n < MAX_BATCH:
                n = batch_size(n, timing.elapsed, min_seconds)
                timing = await _run(side, n)
            sizes[side.key] = n
            samples[side.key].add(n, timing)
        if progress is not None:
            progress(f"repeat {r + 1}/{repeats}")
    return samples


def ask_batch(one: Callable[[], Awaitable[object]], in_flight: int) -> Batch:
    """A batch of ``n`` asks made by ``one``: sequential (with latencies) or in waves.

    With ``in_flight`` above one, asks go in waves of ``in_flight`` (the last may be
    smaller), each wave awaited whole: both sides of a scenario are driven alike.
    """

    async def batch(n: int) -> Timing:
        clock = time.perf_counter
        if in_flight == 1:
            latencies = []
            start = clock()
            for _ in range(n):
                t0 = clock()
                await one()
                latencies.append((clock() - t0) * 1e6)
            return Timing(clock() - start, n, tuple(latencies))
        start = clock()
        remaining = n
        while remaining:
            wave = min(in_flight, remaining)
            await asyncio.gather(*(one() for _ in range(wave)))
            remaining -= wave
        return Timing(clock() - start, n)

    return batch
