"""Ask policies against a real nats-server: timeouts, retries, duplicates, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    AskPolicy,
    AskTimeout,
    Backoff,
    ConfigError,
    Context,
    NoResponders,
    RemoteError,
    Settings,
)
from motadata_actors.mailbox import (
    ATTEMPT,
    MESSAGE_ID,
    TIMEOUT_MS,
    InProcessTransport,
    NatsServer,
    Transport,
)

from ..conftest import connect

pytestmark = pytest.mark.anyio

FAST = Backoff(0.01, 0.05, jitter=0.0)


class Flaky(Actor):
    """Hangs on the first two attempts of an ask, answers the third."""

    calls: ClassVar[list[tuple[str | None, str | None, int]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        attempt = int(ctx.headers.get(ATTEMPT, "1"))
        Flaky.calls.append((ctx.message_id, ctx.headers.get(ATTEMPT), int(ctx.headers[TIMEOUT_MS])))
        if attempt < 3:
            await anyio.sleep(30)  # hung: cancelled at this attempt's deadline
        return f"{msg} on attempt {attempt}"


class Hung(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        await anyio.sleep(30)


class Counting(Actor):
    handled = 0

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Counting.handled += 1
        if msg == "fail":
            raise ValueError("not retried")
        return Counting.handled


@pytest.fixture
async def system(nats_server: NatsServer, tenant: str) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(tenant, transport=await connect(nats_server)) as system:
        yield system


async def test_a_flaky_responder_succeeds_on_the_third_attempt(system: ActorSystem) -> None:
    Flaky.calls = []
    policy = AskPolicy(timeout=3.0, attempt_timeout=0.3, attempts=3, backoff=FAST)
    ref = await system.spawn(Flaky, name="flaky", ask=policy)
    assert await ref.ask("job") == "job on attempt 3"
    ids = {c[0] for c in Flaky.calls}
    assert len(ids) == 1, "every attempt carries the same Sdk-Message-Id"
    assert [c[1] for c in Flaky.calls] == [None, "2", "3"]
    assert all(c[2] <= 300 for c in Flaky.calls)  # Sdk-Timeout-Ms: this attempt's time
    assert [e.detail.split()[:2] for e in system.events("retry")] == [
        ["attempt", "2"],
        ["attempt", "3"],
    ]
    assert (
        len(system.events("overran", "/flaky")) == 2
    )  # each hung attempt cancelled, reported once


async def test_a_hung_responder_times_out_within_the_deadline_not_attempts_times_timeout(
    system: ActorSystem,
) -> None:
    ref = await system.spawn(Hung, name="hung")
    start = anyio.current_time()
    with pytest.raises(AskTimeout, match="in 3 attempts"):
        await ref.ask("x", timeout=1.0, attempt_timeout=0.3, attempts=5)
    # "in 3 attempts" of the 5 allowed shows the deadline held; this only guards a hang.
    assert anyio.current_time() - start < 10
    assert len(system.events("timeout", "hung")) >= 2
    assert len(system.events("retry", "hung")) >= 1
    with anyio.fail_after(5):  # the stream stores it asynchronously
        while not (letters := await system.dead_letters()):
            await anyio.sleep(0.02)
    assert [letter.reason for letter in letters] == ["ask failed after 3 attempt(s): AskTimeout"]


async def test_no_responder_at_all_fails_at_once(system: ActorSystem) -> None:
    start = anyio.current_time()
    with pytest.raises(NoResponders, match="no actor named 'nobody'"):
        await system.ref("nobody").ask("x", timeout=60.0, attempts=3)
    assert anyio.current_time() - start < 10  # far from the ask's 60 s: it did not wait


async def test_handler_errors_are_not_retried_by_default(system: ActorSystem) -> None:
    Counting.handled = 0
    ref = await system.spawn(Counting, name="counting")
    with pytest.raises(RemoteError, match="not retried"):
        await ref.ask("fail", timeout=5, attempts=3)
    assert Counting.handled == 1


async def test_a_repeated_message_id_gets_the_cached_reply_not_a_second_execution(
    system: ActorSystem, tenant: str
) -> None:
    Counting.handled = 0
    await system.spawn(Counting, name="counting")
    headers = {MESSAGE_ID: "fixed-id-1", "Content-Type": "application/json"}
    subject = f"sdk.agent.client.counting.{tenant}"
    first = await system.transport.request(subject, b'"x"', headers=headers, timeout=5)
    again = await system.transport.request(
        subject, b'"x"', headers={**headers, ATTEMPT: "2"}, timeout=5
    )
    assert first.data == again.data == b"1"
    assert Counting.handled == 1
    assert [e.detail for e in system.events("duplicate")] == ["fixed-id-1"]


async def test_the_handler_sees_the_deadline_and_asks_inside_it_never_outlive_it(
    system: ActorSystem,
) -> None:
    seen: dict[str, Any] = {}

    class Outer(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            seen["left"] = ctx.time_left()
            try:
                await ctx.ref("hung").ask("x", timeout=30)
            except AskTimeout:
                seen["inner_timed_out_at"] = ctx.time_left()
            return "done"

    await system.spawn(Hung, name="hung")
    outer = await system.spawn(Outer, name="outer")
    with pytest.raises(AskTimeout):
        await outer.ask("go", timeout=0.5)
    assert 0 < seen["left"] <= 0.5


@pytest.mark.parametrize("kind", ["inprocess", "nats"])
async def test_a_cancelled_ask_leaves_no_reply_subscription_behind(
    kind: str, nats_server: NatsServer, tenant: str
) -> None:
    transport: Transport = (
        InProcessTransport() if kind == "inprocess" else await connect(nats_server)
    )
    async with ActorSystem(
        tenant, transport=transport, settings=Settings(shutdown_grace=0.2)
    ) as system:
        ref = await system.spawn(Hung, name="hung")
        with anyio.move_on_after(0.2) as scope:
            await ref.ask("x", timeout=10)
        assert scope.cancelled_caught
        if kind == "inprocess":
            assert transport._replies == {}  # type: ignore[attr-defined]
        else:
            assert transport.client._resp_map == {}  # type: ignore[attr-defined]


async def test_ask_overrides_are_validated_every_time_even_when_reused(tenant: str) -> None:
    async with ActorSystem(tenant, settings=Settings(enable_nats=False)) as system:
        ref = await system.spawn(Counting, name="echo")
        for _ in range(3):  # the second and third reuse the validated policy
            await ref.ask("x", timeout=2.0)
        for bad in (0, -1.0, float("inf")):
            with pytest.raises(ConfigError, match="timeout must be a positive number"):
                await ref.ask("x", timeout=bad)
        with pytest.raises(ConfigError, match="attempts must be a whole number"):
            await ref.ask("x", timeout=2.0, attempts=0)
        with pytest.raises(ConfigError, match="attempts must be a whole number"):
            await ref.ask("x", timeout=2.0, attempts=0)  # not cached after the first refusal
