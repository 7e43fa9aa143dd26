"""The suite's report: a Markdown table and a PNG, from the rows of :mod:`.stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ("explain", "markdown", "plot")


def _spread(summary: dict[str, float], unit: str) -> str:
    if unit == "us":
        return (
            f"p50 {summary['median']:,.0f} ({summary['min']:,.0f}-{summary['max']:,.0f}), "
            f"p99 {summary['p99']:,.0f} us"
        )
    return f"{summary['median']:,.0f} ({summary['min']:,.0f}-{summary['max']:,.0f}) {unit}"


def _target(row: dict[str, Any]) -> str:
    if row["target"] is None:
        return ""
    sign = "≥" if row["target_kind"] == "at least" else "≤"
    return f"{sign} {row['target']:g}x"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table: each side's and the ratio's median (min-max), verdicts."""
    lines = [
        "| scenario | loop | payload | ours: median (min-max) | baseline: median (min-max) "
        "| baseline is | ours / baseline: median (min-max) | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        spread = row["ratio_spread"]
        lines.append(
            f"| {row['scenario']} | {row.get('loop', 'asyncio')} | {row['payload_bytes']} B "
            f"| {_spread(row['ours'], row['unit'])} | {_spread(row['base'], row['unit'])} "
            f"| {row['baseline']} | {row['ratio']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f}) "
            f"| {_target(row)} | {row['verdict'] or ''} |"
        )
    return "\n".join(lines)


def explain(repeats: int, min_seconds: float) -> str:
    """What the table's spreads and verdicts mean, for the lines below it."""
    return (
        f"Each side ran {repeats} recorded batches of at least {min_seconds:g} s each, sized "
        "by a calibration run; within a repeat the sides ran back to back, and the order "
        "reversed every repeat. min-max is the spread over repeats (latency rows: of each "
        "batch's p50); the ratio's is over the per-repeat ratios. A target is met or missed "
        "only when the ratio's whole spread is on one side of it; otherwise the verdict is "
        "within noise (this run cannot tell). Every request was answered exactly once, by "
        "the intended responder (checked after each scenario)."
    )


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
        gridspec_kw={"height_ratios": [len(rows), len(rates) or 1, 2 * len(latencies) or 1]},
    )  # fmt: skip
    _plot_ratios(ax_ratio, rows)
    labels = [_label(r) for r in rates]
    y = list(range(len(rates)))
    for offset, key, name in ((-0.2, "ours", "ours"), (0.2, "base", "baseline")):
        medians = [r[key]["median"] for r in rates]
        errors = [
            [m - r[key]["min"] for m, r in zip(medians, rates, strict=True)],
            [r[key]["max"] - m for m, r in zip(medians, rates, strict=True)],
        ]
        ax_rate.barh([i + offset for i in y], medians, 0.4, xerr=errors, label=name)
    ax_rate.set_yticks(y, labels, fontsize=7)
    ax_rate.invert_yaxis()
    ax_rate.set_xscale("log")
    ax_rate.set_xlabel("throughput: median, min-max (per second, log scale)")
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


_COLORS = {"met": "tab:green", "missed": "tab:red", "within noise": "tab:orange", None: "tab:blue"}


def _plot_ratios(ax: Any, rows: list[dict[str, Any]]) -> None:
    ratios = [r["ratio"] for r in rows]
    errors = [
        [r["ratio"] - r["ratio_spread"]["min"] for r in rows],
        [r["ratio_spread"]["max"] - r["ratio"] for r in rows],
    ]
    ax.barh(range(len(rows)), ratios, xerr=errors, color=[_COLORS[r["verdict"]] for r in rows])
    for i, r in enumerate(rows):
        if r["target"] is not None:
            ax.plot([r["target"], r["target"]], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(
        "ours / baseline, median and min-max over repeats (latency rows: lower is better; "
        "the black tick is the target)"
    )
    ax.set_title("motadata-actors benchmark (green: target met, red: missed, orange: within noise)")
