"""Time-sized, alternating batches, measured on fake sides (no clock: each batch says its time)."""

from __future__ import annotations

import pytest

from motadata_actors.benchmarks.ledger import Target
from motadata_actors.benchmarks.measure import MAX_BATCH, Side, Timing, batch_size, measure

pytestmark = pytest.mark.anyio


def test_batch_size_scales_to_a_quarter_more_than_asked() -> None:
    assert batch_size(100, 0.1, 1.0) == 1250
    assert batch_size(100, 2.0, 1.0) == 101  # too long already: still grows by one
    assert batch_size(10, 1e-6, 1.0) == 1000  # at most 100 times
    assert batch_size(10, 1e-6, 1.0, growth=10) == 100
    assert batch_size(400_000, 0.1, 1.0) == MAX_BATCH


class FakeSide:
    """A side whose batch of ``n`` "takes" ``n * cost`` seconds; logs each call."""

    def __init__(self, key: str, cost: float, log: list[tuple[str, int]]) -> None:
        self.key, self.cost, self.log = key, cost, log

    async def __call__(self, n: int) -> Timing:
        self.log.append((self.key, n))
        return Timing(n * self.cost, n, tuple([self.cost * 1e6] * n))

    def side(self) -> Side:
        return Side(self.key, self, Target(self.key, frozenset({self.key})), start=10)


async def test_every_recorded_batch_lasts_the_minimum_and_every_send_is_counted() -> None:
    log: list[tuple[str, int]] = []
    fast, slow = FakeSide("fast", 1e-5, log), FakeSide("slow", 1e-3, log)
    sides = [fast.side(), slow.side()]
    samples = await measure(sides, repeats=4, min_seconds=0.5)
    for key, side in (("fast", fast), ("slow", slow)):
        assert len(samples[key].rates) == 4
        assert all(s >= 0.5 for s in samples[key].seconds)
        assert samples[key].rates == pytest.approx([1 / side.cost] * 4)
        assert samples[key].p50s == pytest.approx([side.cost * 1e6] * 4)
    for side in sides:  # calibration and discarded batches count too
        assert side.target.sent == sum(n for k, n in log if k == side.key)


async def test_sides_take_turns_and_the_order_reverses_every_repeat() -> None:
    log: list[tuple[str, int]] = []
    a, b, c = (FakeSide(k, 1e-3, log) for k in "abc")
    await measure([a.side(), b.side(), c.side()], repeats=4, min_seconds=0.1)
    recorded = [k for k, n in log if n * 1e-3 >= 0.1][-12:]
    assert recorded == list("abccbaabccba")


async def test_a_batch_that_ran_short_is_run_again_longer() -> None:
    log: list[tuple[str, int]] = []

    class Speeding(FakeSide):
        async def __call__(self, n: int) -> Timing:
            # Ten times faster after calibration: the sized batch is too short once.
            self.cost = 1e-4 if len(self.log) >= 2 else 1e-3
            return await super().__call__(n)

    side = Speeding("s", 1e-3, log).side()
    samples = await measure([side], repeats=2, min_seconds=0.2)
    assert all(s >= 0.2 for s in samples["s"].seconds)
    # Calibration (10, then 63 operations) sized 250; those took 25 ms, not 200: discarded,
    # and every recorded batch ran with the larger size.
    assert [n for _, n in log] == [10, 63, 250, 2500, 2500]
    assert samples["s"].sizes == [2500, 2500]
    assert side.target.sent == 10 + 63 + 250 + 2500 + 2500
