"""Rows, ratio spreads and verdicts: met or missed only when the whole spread agrees."""

from __future__ import annotations

import pytest

from motadata_actors.benchmarks.measure import Samples, Timing
from motadata_actors.benchmarks.report import markdown
from motadata_actors.benchmarks.stats import latency_row, paired_ratios, rate_row, verdict


@pytest.mark.parametrize(
    ("ratios", "target", "kind", "expected"),
    [
        ([0.8, 0.9, 1.0], 0.7, "at least", "met"),
        ([0.5, 0.6, 0.69], 0.7, "at least", "missed"),
        ([0.6, 0.75, 0.8], 0.7, "at least", "within noise"),
        ([0.7, 0.7], 0.7, "at least", "met"),
        ([1.1, 1.2], 1.3, "at most", "met"),
        ([1.31, 1.5], 1.3, "at most", "missed"),
        ([1.2, 1.4], 1.3, "at most", "within noise"),
        ([1.0], None, "at least", None),
    ],
)
def test_verdict(ratios: list[float], target: float | None, kind: str, expected: str) -> None:
    assert verdict(ratios, target, kind) == expected  # type: ignore[arg-type]


def test_ratios_pair_repeats() -> None:
    assert paired_ratios([2.0, 3.0], [1.0, 6.0]) == [2.0, 0.5]
    with pytest.raises(ValueError, match="cannot pair"):
        paired_ratios([1.0], [1.0, 2.0])


def _samples(rates: list[float], latency: float | None = None) -> Samples:
    samples = Samples()
    for rate in rates:
        lat = (latency,) * 3 if latency is not None else ()
        samples.add(int(rate), Timing(1.0, int(rate), lat))
    return samples


def test_rate_row_reports_both_spreads_and_a_cautious_verdict() -> None:
    row = rate_row("nats tell", 128, "msgs/s", _samples([60, 80, 90]), _samples([100, 100, 100]),
                   "raw nats-py, same headers", 0.7)  # fmt: skip
    assert row["ours"] == {"median": 80, "min": 60, "max": 90}
    assert row["ratio"] == pytest.approx(0.8)
    assert row["ratio_spread"] == pytest.approx({"median": 0.8, "min": 0.6, "max": 0.9})
    assert (row["verdict"], row["met"]) == ("within noise", None)
    assert "0.80x (0.60-0.90)" in markdown([row])
    assert "within noise" in markdown([row])


def test_latency_row_pairs_the_p50_of_each_repeat() -> None:
    ours = _samples([1, 1], latency=130.0)
    base = _samples([1, 1], latency=100.0)
    row = latency_row("nats ask p50 latency", 128, ours, base, "raw", 1.2)
    assert row["ratio"] == pytest.approx(1.3)
    assert (row["verdict"], row["met"]) == ("missed", False)
    assert row["ours"]["p99"] == 130.0
