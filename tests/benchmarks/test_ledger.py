"""The answered-exactly-once check: pure cases, then shared subjects on a real nats-server."""

from __future__ import annotations

import contextlib

import pytest

from motadata_actors.benchmarks import sides
from motadata_actors.benchmarks.ledger import (
    Ledger,
    MeasurementError,
    Tally,
    Target,
    check_answers,
    scenario_names,
)
from motadata_actors.benchmarks.responder import ResponderProcess
from motadata_actors.mailbox import NatsServer

pytestmark = pytest.mark.anyio


def test_every_request_answered_once_by_its_responder_passes() -> None:
    targets = [Target("ours", frozenset({"a"}), sent=10), Target("raw", frozenset({"b"}), sent=4)]
    handled = check_answers("s", targets, {"a": 5, "b": 0, "c": 7}, {"a": 15, "b": 4, "c": 7})
    assert handled == {"a": 10, "b": 4, "c": 0}


def test_answered_twice_is_named_with_the_scenario() -> None:
    # Two subscribers on one subject (no queue group): each answers every request.
    targets = [Target("raw", frozenset({"local"}), sent=10)]
    with pytest.raises(MeasurementError, match="'nats ask, 100 in flight'") as caught:
        check_answers("nats ask, 100 in flight", targets, {}, {"local": 10, "other": 10})
    assert caught.value.scenario == "nats ask, 100 in flight"
    assert any("'other' handled 10 messages meant for another" in p for p in caught.value.problems)


def test_answers_split_with_another_responder_fail() -> None:
    # Two members of one queue group: the intended responder sees only part of the asks.
    targets = [Target("ours", frozenset({"here"}), sent=10)]
    with pytest.raises(MeasurementError, match="the rest went to another responder"):
        check_answers("s", targets, {"here": 0, "there": 0}, {"here": 6, "there": 4})


def test_a_responder_handling_more_than_was_sent_fails() -> None:
    targets = [Target("ours", frozenset({"a"}), sent=3)]
    with pytest.raises(MeasurementError, match="more than once"):
        check_answers("s", targets, {}, {"a": 4})


def test_a_group_of_replicas_shares_its_side() -> None:
    targets = [Target("2 replicas", frozenset({"r1", "r2"}), sent=10)]
    assert check_answers("s", targets, {}, {"r1": 3, "r2": 7}) == {"r1": 3, "r2": 7}
    with pytest.raises(MeasurementError, match="not in the ledger"):
        check_answers("s", [Target("x", frozenset({"gone"}), sent=1)], {}, {})


def test_scenario_names_are_valid_tenants_and_distinct_subjects() -> None:
    a, b = scenario_names("abc123", "ask1-local"), scenario_names("abc123", "ask1-remote")
    assert a.tenant != b.tenant
    assert not set(a.subjects) & set(b.subjects)
    assert a.raw_headers != a.raw_bare


async def _ask_raw(
    scenario: str, url: str, subject: str, n: int, ledger: Ledger, tally: Tally
) -> None:
    """``n`` raw asks, 10 in flight, answered on this connection and counted in ``tally``."""
    target = Target("raw, same headers", frozenset({tally.name}))
    async with (
        sides.raw_ask(url, subject, b'"x"', 10, headers=True, tally=tally) as batch,
        ledger.scenario(scenario, [target]),
    ):
        target.sent += (await batch(n)).sent


async def test_a_second_raw_responder_on_the_same_subject_is_detected(
    nats_server: NatsServer, tenant: str
) -> None:
    # What the old suite did: its same-process raw responder and the raw responder process
    # listened on one subject, so every request was answered twice.
    subject = scenario_names(tenant[:8], "shared").raw_headers
    ledger = Ledger()
    async with ResponderProcess.start(nats_server.url, "raw", [subject]) as other:
        here = Tally("raw responder, same process")
        with (
            ledger.serving(here, *other.counters.values()),
            pytest.raises(MeasurementError, match="shared raw subject") as caught,
        ):
            await _ask_raw("shared raw subject", nats_server.url, subject, 50, ledger, here)
    assert "meant for another responder" in str(caught.value)


async def test_a_second_echo_actor_in_the_tenant_takes_asks_and_is_detected(
    nats_server: NatsServer, tenant: str
) -> None:
    # What the old suite did with ours: the local echo actor and the responder process's
    # shared tenant and name (one queue group), so about half the asks went to the other.
    ledger = Ledger()
    async with ResponderProcess.start(nats_server.url, "ours", [tenant]) as other:
        here = Tally("our echo actor, this process")
        target = Target("ours", frozenset({here.name}))
        with ledger.serving(here, *other.counters.values()), pytest.raises(MeasurementError):
            async with (
                sides.our_ask(nats_server.url, tenant, "x", 10, here) as batch,
                ledger.scenario("shared tenant", [target]),
            ):
                target.sent += (await batch(200)).sent
        assert here.count < 200


async def test_own_subjects_pass_while_another_process_serves_other_names(
    nats_server: NatsServer, tenant: str
) -> None:
    names = scenario_names(tenant[:8], "local"), scenario_names(tenant[:8], "remote")
    ledger = Ledger()
    async with contextlib.AsyncExitStack() as stack:
        other = await stack.enter_async_context(
            ResponderProcess.start(nats_server.url, "raw", [names[1].raw_headers])
        )
        here = Tally("raw responder, same process")
        stack.enter_context(ledger.serving(here, *other.counters.values()))
        await _ask_raw("local", nats_server.url, names[0].raw_headers, 50, ledger, here)
        remote = Target("remote", frozenset({other.counters[names[1].raw_headers].name}))
        async with (
            sides.raw_ask(nats_server.url, names[1].raw_headers, b'"x"', 1, headers=True,
                          tally=None) as batch,
            ledger.scenario("remote", [remote]),
        ):  # fmt: skip
            remote.sent += (await batch(20)).sent
    assert here.count == 50
    assert [r["scenario"] for r in ledger.records] == ["local", "remote"]
    [served_by] = remote.responders
    assert ledger.records[1]["handled"] == {served_by: 20}
