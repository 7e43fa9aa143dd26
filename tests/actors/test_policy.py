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
from motadata_actors.actors._policy import RestartIntensity


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


def test_ask_attempts_share_the_budget_and_stop_at_the_deadline() -> None:
    from motadata_actors.actors._policy import AskAttempts

    policy = AskPolicy(timeout=3.0, attempts=3, backoff=Backoff(0.5, 0.5, jitter=0.0))
    attempts = AskAttempts(policy, policy.timeout, now=10.0)
    assert attempts.next(10.0) == 1.0 and attempts.number == 1
    assert attempts.failed(AskTimeout("x"), 11.0) == 0.5  # the backoff, within the budget
    assert attempts.next(11.5) == 1.0 and attempts.number == 2
    assert attempts.failed(NoResponders("x"), 12.5) == 0.5
    assert attempts.next(12.9) == pytest.approx(0.1)  # only what is left of the budget
    assert attempts.failed(AskTimeout("x"), 13.0) is None  # the last attempt
    assert attempts.next(13.0) is None
    # A handler's error is not retried; nor is anything past the deadline.
    once = AskAttempts(policy, 3.0, now=0.0)
    once.next(0.0)
    assert once.failed(RemoteError("ValueError", "no"), 0.1) is None
    late = AskAttempts(policy, 3.0, now=0.0)
    assert late.next(3.0) is None


@pytest.mark.anyio
async def test_under_a_manual_clock_a_handler_deadline_is_virtual_too() -> None:
    """Asks, retries and handler deadlines all run on the system's clock."""
    from motadata_actors import Actor, ActorSystem, Context, InProcessTransport

    started = anyio.Event()

    class Stuck(Actor):
        async def on_message(self, msg: object, ctx: Context) -> object:
            assert ctx.deadline == clock.now() + 5.0  # the asker's 5 s, on the manual clock
            started.set()
            await anyio.sleep_forever()

    clock = ManualClock(start=1000.0)
    async with ActorSystem("manual", transport=InProcessTransport(), clock=clock) as system:
        ref = await system.spawn(Stuck, name="stuck")
        result: list[BaseException] = []

        async def ask() -> None:
            try:
                await ref.ask("hang", timeout=5.0)
            except AskTimeout as exc:
                result.append(exc)

        with anyio.fail_after(10):  # real seconds: nothing here may wait for real time
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await started.wait()
                await anyio.wait_all_tasks_blocked()
                assert not system.events("overran")
                clock.advance(5.0)
        assert len(result) == 1
        assert [e.detail for e in system.events("overran")] == ["on sdk.agent.client.stuck.manual"]
