"""The large-body row: a claimed ask beside raw nats-py's object store, on one server."""

from __future__ import annotations

import pytest

from motadata_actors.benchmarks import bench_claims
from motadata_actors.mailbox import NatsServer


@pytest.mark.anyio
async def test_both_sides_move_the_document_and_the_row_names_its_baseline(
    nats_server: NatsServer,
) -> None:
    result = await bench_claims._run(1, 2 * 1024 * 1024, 1, nats_server.url)
    assert result["size"] == 2 * 1024 * 1024
    assert all(v > 0 for side in ("ours", "raw") for v in result["mib_per_s"][side])
    row = bench_claims.markdown(result)
    assert "raw nats-py object store (put, get into a buffer, delete)" in row
    assert "a 2 MiB document, claimed ask" in row
