"""The keyed-agent benchmark runs end to end on a real nats-server (tiny sizes)."""

from __future__ import annotations

import asyncio

from motadata_actors.benchmarks import bench_keyed
from motadata_actors.mailbox import NatsServer


def test_keyed_rows_stand_beside_a_plain_agent(nats_server: NatsServer) -> None:
    result = asyncio.run(bench_keyed._run(1, 60, nats_server.url, 200))
    samples = result["samples"]
    assert all(len(v) == 1 and v[0] > 0 for v in samples.values())
    assert result["memory"]["keyed_bytes"] > 0 and result["memory"]["plain_bytes"] > 0
    text = bench_keyed.markdown(result)
    for label in (
        "first-message activation, p50 latency",
        "activations per second (new keys, 100 in flight)",
        "asks to 100 active keyed agents, 100 in flight",
        "asks saving a 1 KiB state each",
        "asks saving a 64 KiB state each",
        "memory per active agent (200 keys)",
    ):
        assert f"| {label} |" in text
    assert text.count("x (") == 5  # every rate or latency row is a ratio with its spread
    spread = result["spread"]
    assert spread["keys"] == 2000 and spread["doubled"] == 0 and spread["never"] == 0
    assert sum(spread["per_process"]) == 2000 and min(spread["per_process"]) > 0
