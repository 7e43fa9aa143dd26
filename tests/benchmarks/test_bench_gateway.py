"""The gateway row: 1,000 concurrent asks over HTTP beside over NATS, nothing lost."""

from __future__ import annotations

import pytest

from motadata_actors.benchmarks import bench_gateway
from motadata_actors.mailbox import NatsServer


@pytest.mark.anyio
async def test_both_sides_answer_every_ask_and_the_row_names_its_baseline(
    nats_server: NatsServer,
) -> None:
    result = await bench_gateway._run(1, 200, nats_server.url)
    assert result["concurrent"] == 200
    assert all(v > 0 for side in ("http", "nats") for v in result["asks_per_s"][side])
    row = bench_gateway.markdown(result)
    assert "over NATS (ref.ask)" in row
    assert "200 concurrent asks, all answered" in row
