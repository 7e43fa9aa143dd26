"""The suite's plan and its NATS scenarios, end to end on a real nats-server (tiny batches)."""

from __future__ import annotations

import pytest

from motadata_actors.benchmarks import suite
from motadata_actors.benchmarks.ledger import MeasurementError
from motadata_actors.mailbox import NatsServer

pytestmark = pytest.mark.anyio

TINY = suite.Config(repeats=2, min_seconds=0.01, sizes=(128,), loops=("asyncio",))


def test_every_scenario_has_its_own_tenant_and_subjects() -> None:
    config = suite.Config.for_run(quick=False, loops=("asyncio", "uvloop"))
    plan = suite.scenario_plan("r1", config)
    tenants = [n.tenant for n in plan.values()]
    assert len(set(tenants)) == len(tenants) == len(plan)
    subjects = [s for n in plan.values() for s in n.subjects]
    assert len(set(subjects)) == len(subjects)
    # Distinct across runs too: a second suite on the same server shares nothing.
    other = suite.scenario_plan("r2", config)
    assert not set(tenants) & {n.tenant for n in other.values()}


def test_the_quick_run_alternates_an_even_number_of_long_enough_batches() -> None:
    quick = suite.Config.for_run(quick=True, loops=("asyncio",))
    assert quick.repeats % 2 == 0
    assert quick.min_seconds >= 0.2


@pytest.mark.slow
async def test_nats_scenarios_answer_each_request_once_with_labelled_baselines(
    nats_server: NatsServer, tenant: str
) -> None:
    names = suite.scenario_plan(tenant[1:7], TINY)
    rows, records = await suite._nats_rows(nats_server.url, TINY, names, "asyncio", 128)
    # One record per scenario, each request handled once, by the responder meant to.
    assert [r["scenario"] for r in records] == [
        "nats tell, 128 B",
        "nats ask, sequential, responder in the same process, 128 B",
        "nats ask, 100 in flight, responder in the same process, 128 B",
        "nats ask, sequential, responder in another process, 128 B",
        "nats ask, 100 in flight, responder in another process, 128 B",
    ]
    for record in records:
        sent, handled = record["sent"], record["handled"]
        assert isinstance(sent, dict) and isinstance(handled, dict)
        assert sorted(sent.values()) == sorted(handled.values())
        # The peer (FastStream) is measured beside a responder in this process only.
        local = "another process" not in str(record["scenario"])
        peer_handled = [n for name, n in handled.items() if name.startswith("FastStream")]
        assert peer_handled == ([sent["FastStream"]] if local else [])
    asks = [r for r in rows if r["scenario"].startswith("nats ask")]
    by_scenario: dict[str, set[str]] = {}
    for row in asks:
        by_scenario.setdefault(row["scenario"], set()).add(row["baseline"])
    assert len(by_scenario) == 6  # sequential, latency, 100 in flight; here and elsewhere
    for scenario, baselines in by_scenario.items():
        peer = "same process" in scenario and not scenario.startswith("nats ask, sequential")
        assert baselines == {
            "raw nats-py request, same headers",
            "raw nats-py request, no headers",
        } | ({suite.PEER_ASK} if peer else set())
    assert {r["baseline"] for r in rows if r["scenario"] == "nats tell"} == {
        "raw nats-py, no headers (ours sends none either)",
        suite.PEER_TELL,
    }
    # The reference rows set FastStream beside bare raw nats-py, without targets.
    reference = {r["scenario"]: r for r in rows if r["scenario"].endswith(suite.PEER_NOTE)}
    assert sorted(reference) == [
        "FastStream ask p50 latency, responder in the same process (peer, for reference)",
        "FastStream ask, 100 in flight, responder in the same process (peer, for reference)",
        "FastStream tell (peer, for reference)",
    ]
    assert all(r["target"] is None for r in reference.values())
    assert {r["baseline"] for r in reference.values()} == {
        "raw nats-py, no headers",
        "raw nats-py request, no headers",
    }
    for row in rows:
        assert row["ratio"] > 0 and row["repeats"] == TINY.repeats
        assert row["ratio_spread"]["min"] <= row["ratio"] <= row["ratio_spread"]["max"]
        assert min(row["batch_seconds"].values()) >= TINY.min_seconds


@pytest.mark.slow
async def test_a_local_scenario_sharing_the_responder_processes_names_fails_loudly(
    nats_server: NatsServer, tenant: str
) -> None:
    # The old suite's layout: the same-process ask used the names the responder
    # processes serve, so they answered (or took) its requests too.
    names = suite.scenario_plan(tenant[1:7], TINY)
    for in_flight in (1, 100):
        names[f"asyncio-128-ask{in_flight}-local"] = names[f"asyncio-128-ask{in_flight}-remote"]
    with pytest.raises(MeasurementError) as caught:
        await suite._nats_rows(nats_server.url, TINY, names, "asyncio", 128)
    assert caught.value.scenario == "nats ask, sequential, responder in the same process, 128 B"
    assert "responder in process" in str(caught.value)
