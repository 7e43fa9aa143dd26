"""Supervisor: a node of the supervision tree, restarting children as its strategy says.

Rules (as in Erlang/OTP, adapted to actors whose mailboxes outlive their instances):

* Children start in order and stop in reverse order.
* A child *fails* when its handler (or ``on_restart``) raises. The strategy names the
  children to restart: ``one_for_one`` the failed one, ``one_for_all`` all of them,
  ``rest_for_one`` the failed one and those started after it. They are halted newest
  first, the supervisor waits the restart backoff, then revives them oldest first.
  Messages that arrive meanwhile wait in their mailboxes.
* A child *exits* when its handler calls ``ctx.stop()``: a ``permanent`` child is
  restarted, a ``transient`` or ``temporary`` one is removed. A ``temporary`` child is
  removed after a failure too; ``transient`` and ``permanent`` ones are restarted.
* More than ``max_restarts`` restarts within ``within`` seconds *escalate*: the
  supervisor halts all its children and fails itself, and its parent applies its own
  strategy (restarting the supervisor revives its whole subtree). Escalation past the
  root stops the system with :class:`SupervisionError`.
* Decisions run in the supervisor's own task, one at a time, reading the injected
  clock; workers only report failures and exits, so nothing waits on itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal, final

import anyio
import anyio.abc
import attrs

from motadata_actors._errors import ConfigError, SupervisionError
from motadata_actors.mailbox import check_id
from motadata_actors.telemetry._logging import get_logger

from ._actor import Actor
from ._cell import ActorCell, ActorStatistics
from ._keyed import KeyedCell
from ._leases import Leases
from ._policy import (
    RESTART_TYPES,
    STRATEGIES,
    AskPolicy,
    Backoff,
    RestartIntensity,
    RestartType,
    Strategy,
)
from ._ref import ActorRef
from ._runtime import MailboxKind, Runtime, reason_line

__all__ = ("Supervisor",)

log = get_logger("supervision")


def _record_crash(rt: Runtime, node: ActorCell | Supervisor, failure: BaseException) -> None:
    """Record that ``node`` failed to restart (an actor's failure names its address)."""
    address = node.name if isinstance(node, ActorCell) else None
    rt.events.record("crashed", node.path, reason_line(failure), address=address)


@attrs.define(slots=True, eq=False)
class _Child:
    node: ActorCell | Supervisor
    restart: RestartType


_Event = tuple[Literal["failed", "exited"], "ActorCell | Supervisor", BaseException | None, int]


@final
class Supervisor:
    """Supervises actors and other supervisors.

    Made by :meth:`ActorSystem.spawn_supervisor` or :meth:`Supervisor.spawn_supervisor`,
    never directly.
    """

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        parent: Supervisor | None,
        task_group: anyio.abc.TaskGroup,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        ask: AskPolicy | None = None,
        on_escalate: Callable[[SupervisionError], None] | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        self._rt = runtime
        self.name = name
        self.path: str = f"{parent.path}/{name}" if parent is not None else ""
        self.parent = parent
        self.strategy: Strategy = strategy
        self.backoff = backoff if backoff is not None else Backoff(0.01, 1.0)
        self.ask_policy: AskPolicy = (
            ask if ask is not None else (parent.ask_policy if parent else runtime.ask_policy)
        )
        self._intensity = RestartIntensity(max_restarts, within)
        self._tg = task_group
        self._on_escalate = on_escalate
        self._children: list[_Child] = []
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._control_scope = anyio.CancelScope()
        self._stopped = False
        self._deciding = False
        self.generation = 0

    def __repr__(self) -> str:
        return f"<Supervisor {self.path or '/'} {self.strategy} children={self.children}>"

    @property
    def children(self) -> list[str]:
        """The names of the children, in start order."""
        return [c.node.name for c in self._children]

    async def _start(self) -> None:
        self._tg.start_soon(self._control, name=f"supervisor:{self.path or '/'}")
        self._rt.events.record("started", self.path or "/")

    # -- the public verbs -----------------------------------------------------------

    async def spawn(
        self,
        actor: Callable[[], Actor],
        *,
        name: str,
        restart: RestartType = "permanent",
        ask: AskPolicy | None = None,
        concurrency: int = 1,
        offload: bool = False,
        mailbox: MailboxKind = "core",
    ) -> ActorRef:
        """Start an actor under this supervisor; return its ref once it can receive.

        Args:
            actor: an :class:`Actor` subclass, or a callable returning a fresh instance
                (called again for every restart): ``lambda: Greeter("hello")`` or
                ``functools.partial(Greeter, "hello")`` for constructor arguments. Not an
                instance: a restart needs a new one.
            name: the agent name (lowercase ``[a-z0-9_-]``); the same name spawned again
                (here or in another process) is a replica sharing the load.
            restart: ``permanent`` (always restarted), ``transient`` (restarted after a
                failure only) or ``temporary`` (never restarted).
            ask: the ask policy of the returned ref (this supervisor's when omitted).
            concurrency: how many messages it handles at once (1 keeps per-sender order).
            offload: run a synchronous ``on_message`` in a worker thread, so a blocking
                call (a synchronous SDK, a long model call) does not stall the loop.
            mailbox: ``core`` (at most once, the fastest) or ``durable`` (JetStream: kept
                until handled, at least once; acked after the handler returns, redelivered
                with backoff after a failure, dead-lettered after the last delivery).

        Raises:
            SubjectError: ``name`` is not a valid agent name.
            ConfigError: an instance instead of a class or factory, a bad restart type,
                concurrency, offload or mailbox, or a durable mailbox without JetStream.
            Exception: whatever the actor's constructor or ``on_start`` raised.
        """
        check_id(name, "agent name")
        given: object = actor  # typed as a factory; users pass instances all the same
        if isinstance(given, Actor):
            kind = type(given).__name__
            raise ConfigError(
                f"spawn takes an Actor class or a factory, not an instance: pass {kind}, or "
                f"lambda: {kind}(...) for constructor arguments (each restart makes a new one)"
            )
        self._check_open()
        if restart not in RESTART_TYPES:
            raise ConfigError(f"restart must be one of {', '.join(RESTART_TYPES)}, not {restart!r}")
        ref = ActorRef(self._rt, name, ask if ask is not None else self.ask_policy, mailbox=mailbox)
        cell = ActorCell(
            self._rt, name, actor, self, concurrency=concurrency, offload=offload, ref=ref,
            mailbox=mailbox,
        )  # fmt: skip
        await cell.start(self._tg)
        self._children.append(_Child(cell, restart))
        return ref

    async def spawn_keyed(
        self,
        actor: Callable[[], Actor],
        *,
        kind: str,
        idle_after: float = 60.0,
        concurrency: int = 64,
        ask: AskPolicy | None = None,
    ) -> ActorRef:
        """Register a keyed agent kind here: one instance per key, activated on demand.

        The first message to ``system.ref(kind, key=...)`` activates exactly one instance
        for that key among the processes that registered the kind (leases in the
        tenant's key-value buckets decide); it handles the key's messages one at a time,
        in order, until idle for ``idle_after`` seconds; the next message activates it
        again, here or elsewhere. An ``actor`` class with a ``state`` attribute has its
        state loaded on activation and saved after each message that changed it. See
        docs/stateful-agents.md.

        Args:
            actor: an :class:`Actor` subclass or a factory (called once per activation);
                each instance's ``key`` and ``name`` (``<kind>~<key>``) are set before its
                ``on_start``.
            kind: the kind's name (lowercase ``[a-z0-9_-]``), the part before ``~``.
            idle_after: seconds without a message before an instance is deactivated.
            concurrency: how many keys are handled at once in this process.
            ask: the ask policy of refs the instances make (this supervisor's when omitted).

        Returns:
            A ref to the kind without a key: ``ref`` of :meth:`ActorSystem.ref` with
            ``key=`` addresses one instance.

        Raises:
            SubjectError: ``kind`` is not a valid agent name.
            ConfigError: an instance instead of a class or factory, a bad ``idle_after``
                or concurrency, a transport without key-value buckets, or a lease time
                other than the tenant's.
        """
        check_id(kind, "agent kind")
        given: object = actor
        if isinstance(given, Actor):
            raise ConfigError(
                f"spawn_keyed takes an Actor class or a factory, not an instance: pass "
                f"{type(given).__name__} (each key gets its own instance)"
            )
        if not (isinstance(idle_after, (int, float)) and idle_after > 0):
            raise ConfigError(f"idle_after must be > 0 seconds, not {idle_after!r}")
        self._check_open()
        rt = self._rt
        if rt.leases is None:
            rt.leases = Leases(rt, rt.lease_time)
        ref = ActorRef(rt, kind, ask if ask is not None else self.ask_policy)
        cell = KeyedCell(
            rt, kind, actor, self, leases=rt.leases, idle_after=float(idle_after),
            concurrency=concurrency, ref=ref,
        )  # fmt: skip
        await cell.start(self._tg)
        self._children.append(_Child(cell, "permanent"))
        return ref

    async def spawn_supervisor(
        self,
        *,
        name: str,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        ask: AskPolicy | None = None,
        restart: RestartType = "permanent",
    ) -> Supervisor:
        """Start a child supervisor.

        Args:
            name: its name (a path segment for events; not a subject).
            strategy: ``one_for_one``, ``one_for_all`` or ``rest_for_one``.
            max_restarts: restarts allowed within ``within`` seconds before escalating.
            within: the intensity window, in seconds.
            backoff: the pause before each restart (exponential with jitter, capped).
            ask: the ask policy for refs it makes (inherited when omitted).
            restart: how this supervisor itself is restarted by its parent.
        """
        check_id(name, "supervisor name")
        self._check_open()
        if restart not in RESTART_TYPES:
            raise ConfigError(f"restart must be one of {', '.join(RESTART_TYPES)}, not {restart!r}")
        child = Supervisor(
            self._rt, name, self, self._tg, strategy=strategy, max_restarts=max_restarts,
            within=within, backoff=backoff, ask=ask,
        )  # fmt: skip
        await child._start()
        self._children.append(_Child(child, restart))
        return child

    def recent_restarts(self) -> int:
        """Restarts this supervisor made inside its current intensity window."""
        return self._intensity.recent(self._rt.clock.now())

    @property
    def max_restarts(self) -> int:
        """Restarts allowed within :attr:`within` seconds before escalating."""
        return self._intensity.max_restarts

    @property
    def within(self) -> float:
        """The intensity window, in seconds."""
        return self._intensity.within

    @property
    def idle(self) -> bool:
        """Whether no failure or exit waits for a decision."""
        return self._events.empty() and not self._deciding

    def ref(self, name: str, *, mailbox: MailboxKind = "core", key: str | None = None) -> ActorRef:
        """A ref to ``name`` with this supervisor's ask policy.

        ``mailbox="durable"`` for an agent spawned with a durable mailbox; ``key`` for the
        instance of keyed kind ``name`` for that key.
        """
        return ActorRef(self._rt, name, self.ask_policy, mailbox=mailbox, key=key)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop this supervisor and its subtree (children newest first) and detach it."""
        deadline = self._rt.clock.now() + grace
        await self.stop_accepting()
        await self.shutdown(deadline)
        if self.parent is not None:
            self.parent._remove(self)

    async def stop_child(self, name: str, grace: float = 10.0) -> int:
        """Stop this supervisor's children called ``name``; return how many stopped."""
        deadline = self._rt.clock.now() + grace
        found = [c for c in self._children if c.node.name == name]
        for child in reversed(found):
            await child.node.stop_accepting()
            await child.node.shutdown(deadline)
            self._remove(child.node)
        return len(found)

    def statistics(self) -> list[ActorStatistics]:
        """Statistics of every actor in this subtree, in start order."""
        out: list[ActorStatistics] = []
        for child in self._children:
            if isinstance(child.node, ActorCell):
                out.append(child.node.statistics())
            else:
                out.extend(child.node.statistics())
        return out

    def _check_open(self) -> None:
        if self._stopped:
            raise SupervisionError(f"supervisor {self.path or '/'} is stopped")

    def _remove(self, node: ActorCell | Supervisor) -> None:
        self._children = [c for c in self._children if c.node is not node]

    # -- what children report (from their workers: never blocks) ----------------------

    def child_failed(
        self, child: ActorCell | Supervisor, exc: BaseException, generation: int
    ) -> None:
        """A child's instance crashed (or a child supervisor escalated)."""
        self._events.put_nowait(("failed", child, exc, generation))

    def child_exited(self, child: ActorCell | Supervisor, generation: int) -> None:
        """A child asked to stop (``ctx.stop()``)."""
        self._events.put_nowait(("exited", child, None, generation))

    # -- the node protocol (driven by the parent) -----------------------------------

    async def halt(self) -> None:
        """Halt every child, newest first (their mailboxes keep filling)."""
        for child in reversed(self._children):
            await child.node.halt()

    async def revive(self, exc: BaseException | None, cause: str = "") -> None:
        """Restart the whole subtree, oldest first, with a fresh restart history.

        ``cause`` says why when ``exc`` is not this subtree's own failure.
        """
        self._intensity.reset()
        self.generation += 1
        where = self.path or "/"
        for child in list(self._children):
            try:
                await child.node.revive(None, f"its supervisor {where} restarted")
            except Exception as failure:
                _record_crash(self._rt, child.node, failure)
                self.child_failed(child.node, failure, child.node.generation)
        self._rt.events.record("restarted", where, reason_line(exc) if exc else cause)

    async def stop_accepting(self) -> None:
        """Stop every actor in the subtree from taking new messages.

        All at once: each unsubscribes with a round trip, which a server that stopped
        answering makes wait out its timeout (one wait, not one per actor).
        """
        async with anyio.create_task_group() as tg:
            for child in self._children:
                tg.start_soon(child.node.stop_accepting)

    async def shutdown(self, deadline: float) -> None:
        """Stop the subtree for good, newest first, then this supervisor's own task."""
        self._stopped = True
        for child in reversed(self._children):
            await child.node.shutdown(deadline)
        self._control_scope.cancel()
        self._rt.events.record("stopped", self.path or "/")

    # -- decisions ------------------------------------------------------------------

    async def _control(self) -> None:
        with self._control_scope:
            while True:
                kind, node, exc, generation = await self._events.get()
                child = next((c for c in self._children if c.node is node), None)
                if child is None or node.generation != generation or self._stopped:
                    continue  # already restarted or removed since it reported
                self._deciding = True
                try:
                    if kind == "exited":
                        await self._exited(child)
                    else:
                        assert exc is not None
                        await self._failed(child, exc)
                finally:
                    self._deciding = False

    async def _exited(self, child: _Child) -> None:
        if child.restart == "permanent":
            await self._restart([child], child, None)
            return
        await child.node.halt()
        await child.node.shutdown(self._rt.clock.now())
        self._remove(child.node)

    async def _failed(self, child: _Child, exc: BaseException) -> None:
        node = child.node
        log.warning("%s failed: %s", node.path, reason_line(exc))
        if child.restart == "temporary":
            await node.halt()
            await node.shutdown(self._rt.clock.now())
            self._remove(node)
            return
        index = self._children.index(child)
        if self.strategy == "one_for_one":
            targets = [child]
        elif self.strategy == "one_for_all":
            targets = list(self._children)
        else:
            targets = self._children[index:]
        await self._restart(targets, child, exc)

    async def _restart(
        self, targets: list[_Child], failed: _Child, exc: BaseException | None
    ) -> None:
        clock = self._rt.clock
        if not self._intensity.record(clock.now()):
            await self._escalate(failed, exc)
            return
        for child in reversed(targets):
            await child.node.halt()
        delay = self.backoff.delay(max(0, self._intensity.recent(clock.now()) - 1))
        if delay > 0:
            await clock.sleep(delay)
        for child in targets:
            if child.restart == "temporary" and child is not failed:
                await child.node.shutdown(self._rt.clock.now())
                self._remove(child.node)
                continue
            try:
                if child is failed:
                    await child.node.revive(exc)
                else:
                    why = f"{self.strategy}: its sibling {failed.node.path} failed"
                    await child.node.revive(None, why)
            except Exception as failure:
                _record_crash(self._rt, child.node, failure)
                log.warning("%s failed to restart: %s", child.node.path, reason_line(failure))
                self.child_failed(child.node, failure, child.node.generation)

    async def _escalate(self, failed: _Child, exc: BaseException | None) -> None:
        where = self.path or "/"
        reason = (
            f"supervisor {where} exceeded {self._intensity.max_restarts} restarts in "
            f"{self._intensity.within:g}s; last failure in {failed.node.path}: "
            f"{reason_line(exc) if exc else 'exit'}"
        )
        self._rt.events.record("escalated", where, reason)
        log.error("%s", reason)
        await self.halt()
        error = SupervisionError(reason)
        if self.parent is not None:
            self.parent.child_failed(self, error, self.generation)
        elif self._on_escalate is not None:
            self._on_escalate(error)
