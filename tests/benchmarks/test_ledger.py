"""The answered-exactly-once check."""

from __future__ import annotations

import pytest

from motadata_actors.benchmarks.ledger import (
    MeasurementError,
    Target,
    check_answers,
    scenario_names,
)


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
