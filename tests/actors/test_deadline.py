"""One timer per actor for the deadlines of its handlings (actors/_deadline.py ``Watchdog``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from motadata_actors import Actor, ActorSystem, AskTimeout, Context, Settings
from motadata_actors.actors._deadline import Watch, Watchdog

pytestmark = pytest.mark.anyio


class _Timer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class _Clock:
    """Records the timers asked for; time moves only when told."""

    def __init__(self) -> None:
        self.time = 0.0
        self.timers: list[_Timer] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - not used here
        raise AssertionError

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        self.timers.append(_Timer(when, callback))
        return self.timers[-1]

    def armed(self) -> list[float]:
        return [t.when for t in self.timers if not t.cancelled]

    def fire(self) -> None:
        """Run the timer due first (it is spent after)."""
        due = min((t for t in self.timers if not t.cancelled), key=lambda t: t.when)
        due.cancelled = True
        due.callback()


@contextlib.contextmanager
def watching(watchdog: Watchdog, when: float) -> Iterator[Watch]:
    """One handling of the current task, watched until ``when``, as the dispatcher does."""
    watch = watchdog.start(when)
    try:
        yield watch
    finally:
        watchdog.stop(watch)


async def test_one_timer_watches_handlings_that_follow_one_another() -> None:
    clock = _Clock()
    watchdog = Watchdog(clock)
    for i in range(100):  # deadlines 5 s out, each handling quick
        clock.time = i * 0.01
        with watching(watchdog, clock.time + 5) as limit:
            pass
        assert not limit.expired
    assert clock.armed() == [5.0]  # armed once, for the first
    with watching(watchdog, clock.time + 1):  # an earlier deadline than the armed one: re-armed
        pass
    assert clock.armed() == [pytest.approx(1.99)]
    # It fires with nothing running: nothing to do, nothing armed until the next handling.
    clock.timers[-1].callback()
    assert clock.armed() == [pytest.approx(1.99)] and clock.timers[-1].cancelled is False
    with watching(watchdog, 10.0):
        pass
    assert clock.armed()[-1] == 10.0


async def test_it_cancels_a_handling_past_its_deadline_and_re_arms_for_a_later_one() -> None:
    clock = _Clock()
    watchdog = Watchdog(clock)
    with watching(watchdog, 5.0):
        pass
    first = clock.timers[-1]
    task = asyncio.current_task()
    assert task is not None
    with watching(watchdog, 8.0) as limit:  # running when the timer armed for 5 fires
        clock.time = 5.0
        first.callback()
        assert not limit.expired and clock.armed()[-1] == 8.0  # re-armed for this one
        clock.time = 8.0
        clock.timers[-1].callback()
        assert limit.expired
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(1)  # the cancel lands here
        task.uncancel()


async def test_start_and_stop_watch_as_the_context_manager_does() -> None:
    """The per-message path's form: ``start`` then ``stop`` in a ``finally``."""
    clock = _Clock()
    watchdog = Watchdog(clock)
    watch = watchdog.start(5.0)
    watchdog.stop(watch)
    clock.time = 5.0
    clock.fire()  # stopped before its deadline: nothing cancelled, nothing armed again
    assert not watch.expired and clock.armed() == []
    task = asyncio.current_task()
    assert task is not None
    watch = watchdog.start(8.0)
    try:
        assert clock.armed() == [8.0]
        clock.time = 8.0
        clock.fire()
        assert watch.expired
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(1)  # the cancel lands here
        task.uncancel()
    finally:
        watchdog.stop(watch)
    assert not watchdog._running


async def test_handlings_at_once_each_cancelled_at_their_own_deadline() -> None:
    clock = _Clock()
    watchdog = Watchdog(clock)
    started = asyncio.Event()
    outcome: dict[str, bool] = {}

    async def handling(name: str, when: float, hold: asyncio.Event) -> None:
        with watching(watchdog, when) as limit:
            try:
                started.set()
                await hold.wait()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                assert task is not None and limit.expired
                task.uncancel()
            outcome[name] = limit.expired

    holds = {name: asyncio.Event() for name in ("a", "b", "c")}
    tasks = [
        asyncio.create_task(handling("a", 8.0, holds["a"])),
        asyncio.create_task(handling("b", 5.0, holds["b"])),  # earlier: the timer re-armed
        asyncio.create_task(handling("c", 9.0, holds["c"])),
    ]
    while len(watchdog._running) < 3:
        await asyncio.sleep(0)
    assert clock.armed() == [5.0]
    clock.time = 5.0
    clock.fire()  # b's deadline: b is cancelled, a and c run on
    assert clock.armed() == [8.0]
    holds["c"].set()  # c ends in time
    while "b" not in outcome or "c" not in outcome:
        await asyncio.sleep(0)
    clock.time = 8.0
    clock.fire()
    await asyncio.gather(*tasks)
    assert outcome == {"a": True, "b": True, "c": False}
    assert clock.armed() == []  # nothing left to watch: nothing armed


class Slow(Actor):
    async def on_message(self, msg: object, ctx: Context) -> object:
        if msg == "slow":
            await asyncio.sleep(10)
        return msg


async def test_an_actor_on_the_event_loop_still_cancels_an_overrunning_handler(
    tenant: str,
) -> None:
    async with ActorSystem(tenant, settings=Settings(enable_nats=False)) as system:
        ref = await system.spawn(Slow, name="slow")
        for i in range(50):  # handlings that follow one another, one timer for them
            assert await ref.ask(i, timeout=5) == i
        with pytest.raises(AskTimeout):
            await ref.ask("slow", timeout=0.2)
        assert await ref.ask("after", timeout=5) == "after"  # it goes on
        await asyncio.wait_for(_overran(system), 5)


async def _overran(system: ActorSystem) -> None:
    while not system.events("overran"):
        await asyncio.sleep(0.01)


async def test_an_actor_with_workers_cancels_only_the_overrunning_handler(tenant: str) -> None:
    async with ActorSystem(tenant, settings=Settings(enable_nats=False)) as system:
        ref = await system.spawn(Slow, name="slow", concurrency=4)
        slow = asyncio.ensure_future(ref.ask("slow", timeout=0.3))
        assert await asyncio.gather(*(ref.ask(i, timeout=5) for i in range(20))) == list(range(20))
        with pytest.raises(AskTimeout):
            await slow
        await asyncio.wait_for(_overran(system), 5)


class Swallows(Actor):
    """Catches its deadline's cancel (returns, or raises something else), or reports."""

    async def on_message(self, msg: object, ctx: Context) -> object:
        task = asyncio.current_task()
        assert task is not None
        if msg == "swallow":
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "late"
        if msg == "convert":
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise RuntimeError("turned into another error") from None
        return task.cancelling()


async def test_a_cancel_the_handler_caught_does_not_stay_pending_for_later_handlings(
    tenant: str,
) -> None:
    async with ActorSystem(tenant, settings=Settings(enable_nats=False)) as system:
        ref = await system.spawn(Swallows, name="swallows")
        for how in ("swallow", "convert"):
            with pytest.raises(AskTimeout):
                await ref.ask(how, timeout=0.2)
            # The next handling on the same worker: no cancel left pending on its task.
            assert await ref.ask("cancelling", timeout=5) == 0


class SwallowingStreamer(Actor):
    """Streams until its consumer closes the stream, catching the cancel that follows."""

    async def on_message(self, msg: object, ctx: Context) -> AsyncIterator[object]:
        if msg == "cancelling":
            task = asyncio.current_task()
            assert task is not None
            yield task.cancelling()
            return
        try:
            for i in range(1000):
                yield i
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass  # caught: the stream's end is its consumer's doing


async def test_a_streaming_handler_that_caught_its_consumers_cancel_leaves_none_pending(
    tenant: str,
) -> None:
    async with ActorSystem(tenant, settings=Settings(enable_nats=False)) as system:
        ref = await system.spawn(SwallowingStreamer, name="streamer")
        async with ref.ask_stream("parts", timeout=5) as parts:
            async for part in parts:
                if part == 2:
                    break  # closes the stream: the handler is cancelled
        async with ref.ask_stream("cancelling", timeout=5) as parts:
            assert [p async for p in parts] == [0]
