"""Rows of the report: each side's spread, the ratio's spread, and a verdict that holds still.

A ratio compares ours with one baseline, repeat by repeat: the two batches of a repeat ran
back to back (:mod:`~motadata_actors.benchmarks.measure`), so their ratio sees one machine
load. The row's ratio is the median of those per-repeat ratios, its spread their min and
max. The verdict on a target is ``met`` or ``missed`` only when the whole spread is on one
side of it; otherwise it is ``within noise``: the run cannot tell, and a second run must
not be able to contradict it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, Literal

from .measure import Samples

__all__ = (
    "VERDICTS",
    "latency_row",
    "paired_ratios",
    "percentile",
    "rate_row",
    "summary",
    "verdict",
)

Verdict = Literal["met", "missed", "within noise"]
VERDICTS: tuple[Verdict, ...] = ("met", "missed", "within noise")
TargetKind = Literal["at least", "at most"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired_ratios(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """``ours[i] / base[i]`` for each repeat ``i`` (the same number of repeats each)."""
    if len(ours) != len(base) or not ours:
        raise ValueError(f"cannot pair {len(ours)} repeats with {len(base)}")
    return [o / b for o, b in zip(ours, base, strict=True)]


def verdict(ratios: Sequence[float], target: float | None, kind: TargetKind) -> Verdict | None:
    """``met``/``missed`` when every ratio is on one side of ``target``, else ``within noise``.

    ``kind`` says which side is good: ``at least`` (throughput) or ``at most`` (latency).
    No target, no verdict (None).
    """
    if target is None:
        return None
    low, high = min(ratios), max(ratios)
    if kind == "at least":
        all_good, any_good = low >= target, high >= target
    else:
        all_good, any_good = high <= target, low <= target
    if all_good:
        return "met"
    if not any_good:
        return "missed"
    return "within noise"


def _row(
    scenario: str,
    size: int,
    unit: str,
    baseline: str,
    ratios: list[float],
    target: float | None,
    kind: TargetKind,
) -> dict[str, Any]:
    decided = verdict(ratios, target, kind)
    return {
        "scenario": scenario,
        "payload_bytes": size,
        "unit": unit,
        "baseline": baseline,
        "ratio": statistics.median(ratios),
        "ratio_spread": summary(ratios),
        "repeats": len(ratios),
        "target": target,
        "target_kind": kind,
        "verdict": decided,
        "met": None if decided in (None, "within noise") else decided == "met",
    }


def rate_row(
    scenario: str,
    size: int,
    unit: str,
    ours: Samples,
    base: Samples,
    baseline: str,
    target: float | None,
) -> dict[str, Any]:
    """A throughput row: higher is better; the target is a ratio of at least ``target``."""
    row = _row(
        scenario, size, unit, baseline, paired_ratios(ours.rates, base.rates), target, "at least"
    )
    row["ours"] = summary(ours.rates)
    row["base"] = summary(base.rates)
    row["batch_seconds"] = {"ours": min(ours.seconds), "base": min(base.seconds)}
    return row


def latency_row(
    scenario: str,
    size: int,
    ours: Samples,
    base: Samples,
    baseline: str,
    target: float | None,
) -> dict[str, Any]:
    """A p50 latency row: lower is better; the target is a ratio of at most ``target``.

    ``ours`` and ``base`` summarize the per-repeat p50s, plus the p99 of all latencies.
    """
    row = _row(
        scenario, size, "us", baseline, paired_ratios(ours.p50s, base.p50s), target, "at most"
    )
    for key, samples in (("ours", ours), ("base", base)):
        row[key] = {**summary(samples.p50s), "p99": percentile(samples.latencies, 0.99)}
    row["batch_seconds"] = {"ours": min(ours.seconds), "base": min(base.seconds)}
    row["distribution"] = {
        "ours": _percentiles(ours.latencies),
        "base": _percentiles(base.latencies),
    }
    return row


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    """p1, p5, p25, p50, p75, p95, p99 of ``values``: enough to draw their distribution."""
    return {f"p{q}": percentile(values, q / 100) for q in (1, 5, 25, 50, 75, 95, 99)}
