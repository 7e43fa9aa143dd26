"""Sans-io policies and the manual clock: no server, no sleeping."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from motadata_actors import (
    AskPolicy,
    AskTimeout,
    Backoff,
    ConfigError,
    ManualClock,
    NoResponders,
    RemoteError,
)
from motadata_actors.actors import RestartIntensity


def test_backoff_grows_exponentially_and_is_capped() -> None:
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)
    assert [b.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.delay(10_000) == 1.0


@given(st.integers(0, 100), st.floats(0, 1))
def test_backoff_jitter_stays_within_its_spread_and_the_cap(n: int, r: float) -> None:
    b = Backoff(initial=0.05, maximum=2.0, multiplier=2.0, jitter=0.2)
    base = min(2.0, 0.05 * 2.0 ** min(n, 64))
    d = b.delay(n, rand=lambda: r)
    assert 0.8 * base - 1e-12 <= d <= min(2.0, 1.2 * base) + 1e-12


def test_backoff_refuses_negative_values() -> None:
    with pytest.raises(ConfigError):
        Backoff(initial=-1)


def test_restart_intensity_counts_within_the_window() -> None:
    i = RestartIntensity(max_restarts=2, within=10.0)
    assert i.record(0.0) and i.record(1.0)
    assert not i.record(2.0)  # the third within 10 s
    assert i.record(12.5)  # the earlier ones have left the window
    assert i.recent(12.5) == 1
    i.reset()
    assert i.recent(12.5) == 0


@pytest.mark.parametrize(("max_restarts", "within"), [(-1, 1.0), (1, 0.0), ("3", 1.0)])
def test_restart_intensity_refuses_bad_limits(max_restarts: object, within: float) -> None:
    with pytest.raises(ConfigError):
        RestartIntensity(max_restarts, within)  # type: ignore[arg-type]


def test_ask_policy_defaults_overrides_and_validation() -> None:
    p = AskPolicy(timeout=3.0, attempts=3)
    assert p.per_attempt() == 1.0
    assert AskPolicy(timeout=3.0, attempt_timeout=5.0).per_attempt() == 3.0
    q = p.with_overrides(timeout=1.0, attempt_timeout=0.2)
    assert (q.timeout, q.attempt_timeout, q.attempts) == (1.0, 0.2, 3)
    assert p.with_overrides() is p
    assert p.retryable(AskTimeout("x")) and p.retryable(NoResponders("x"))
    assert not p.retryable(RemoteError("KeyError", "x"))
    for bad in (
        {"timeout": 0},
        {"timeout": float("inf")},
        {"attempts": 0},
        {"attempt_timeout": -1.0},
    ):
        with pytest.raises(ConfigError):
            AskPolicy(**bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_manual_clock_wakes_sleepers_only_when_advanced() -> None:
    clock = ManualClock(start=100.0)
    woke: list[float] = []

    async def sleeper(d: float) -> None:
        await clock.sleep(d)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 5.0)
        tg.start_soon(sleeper, 1.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 2 and woke == []
        clock.advance(1.0)
        await anyio.wait_all_tasks_blocked()
        assert woke == [101.0]
        clock.advance(4.0)
    assert woke == [101.0, 105.0]
