"""A supervisor under random crashes, messages, clock moves and a stop (hypothesis stateful).

hypothesis has no async state machines: the system runs in an anyio blocking portal
opened in ``__init__`` and closed in ``teardown``, on the in-process transport, with a
manual clock.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import anyio
from anyio.from_thread import start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from motadata_actors import Actor, ActorSystem, Backoff, Context, ManualClock, Settings
from motadata_actors.mailbox import InProcessTransport

NAMES = ("a", "b", "c")
MAX_RESTARTS, WITHIN = 3, 10.0


class Recorder(Actor):
    handled: ClassVar[list[tuple[str, int]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "crash":
            raise RuntimeError("crash on command")
        Recorder.handled.append((self.name, msg))


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        Recorder.handled = []
        self._portal_cm = start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        self.clock = ManualClock()
        settings_ = Settings(enable_nats=False, root_max_restarts=1000, root_within=1.0)
        self.system = ActorSystem(
            "state", transport=InProcessTransport(), settings=settings_, clock=self.clock
        )
        # One task owns the system's whole life (its task group must enter and exit there).
        self._system_cm = self.portal.wrap_async_context_manager(self.system)
        self._system_cm.__enter__()
        self.sup = self.portal.call(
            lambda: self.system.spawn_supervisor(
                name="workers", strategy="one_for_all", max_restarts=MAX_RESTARTS, within=WITHIN,
                backoff=Backoff(0.0, 0.0, jitter=0.0),
            )
        )  # fmt: skip
        self.refs = {
            name: self.portal.call(lambda n=name: self.sup.spawn(Recorder, name=n))
            for name in NAMES
        }
        self.ids = itertools.count()
        self.sent: list[tuple[str, int]] = []
        self.stopped = False

    def settle(self) -> None:
        async def quiet() -> None:
            with anyio.fail_after(10):
                while not (
                    self.sup.idle
                    and all(s.queued == 0 for s in self.system.statistics())
                    and self.system.root.idle
                ):
                    if self.clock.sleepers:  # a restart waits out its backoff: let time pass
                        self.clock.advance(1.0)
                    await anyio.sleep(0.002)
                await anyio.sleep(0.002)

        self.portal.call(quiet)

    @precondition(lambda self: not self.stopped)
    @rule(name=st.sampled_from(NAMES), count=st.integers(1, 5))
    def send(self, name: str, count: int) -> None:
        for _ in range(count):
            n = next(self.ids)
            self.sent.append((name, n))
            self.portal.call(self.refs[name].tell, n)
        self.settle()

    @precondition(lambda self: not self.stopped)
    @rule(name=st.sampled_from(NAMES))
    def crash(self, name: str) -> None:
        self.portal.call(self.refs[name].tell, "crash")
        self.settle()

    @rule(seconds=st.floats(0.0, 2 * WITHIN))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: not self.stopped)
    @rule()
    def stop(self) -> None:
        self.portal.call(self.sup.stop)
        self.stopped = True

    @invariant()
    def no_message_handled_twice(self) -> None:
        assert len(Recorder.handled) == len(set(Recorder.handled))

    @invariant()
    def every_handled_message_was_sent_to_that_actor(self) -> None:
        assert set(Recorder.handled) <= set(self.sent)

    @invariant()
    def restarts_stay_within_intensity_unless_escalated(self) -> None:
        if self.stopped:
            return
        now = self.clock.now()
        escalated = [e for e in self.system.events("escalated") if e.at > now - WITHIN]
        assert self.sup.recent_restarts() <= MAX_RESTARTS or escalated

    @invariant()
    def nothing_alive_after_its_supervisor_stopped(self) -> None:
        if self.stopped:
            assert self.system.root.children == []
            assert all(not cell.alive for cell in self._cells())

    @invariant()
    def every_message_sent_before_a_stop_was_handled_or_dead_lettered(self) -> None:
        if not self.stopped:
            return
        letters = self.portal.call(lambda: self.system.dead_letters(limit=10_000))
        dead = {(letter.to, int(letter.data)) for letter in letters if letter.data.isdigit()}
        assert set(self.sent) == set(Recorder.handled) | dead

    def _cells(self) -> list[Any]:
        return [child.node for child in self.sup._children]

    def teardown(self) -> None:
        try:
            self._system_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)


SupervisorMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=20, deadline=None
)
TestSupervisorMachine = SupervisorMachine.TestCase
