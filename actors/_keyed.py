"""Keyed agents: one instance per key of a kind, activated on demand in one process.

Theory of operation:

* A kind registered with ``spawn_keyed`` is one supervised cell per process. It
  subscribes the tenant's agent subjects once (``sdk.agent.*.*.<tenant>``, no queue
  group: every process hosting a keyed kind of the tenant sees every message), so a key
  costs no subscription of its own. Messages for other agents are dropped at once.
* A message to ``<kind>~<key>`` goes to the key's instance when this process has one.
  Otherwise, unless the key is known to be held by a live process elsewhere (that process
  got the message too), this process tries to take the key's lease
  (:mod:`._leases`): the winner makes an instance (state loaded, ``on_start``) and
  handles the message; the others drop it. So of the processes that see a message,
  exactly the key's owner handles it.
* One key's messages are handled one at a time, in arrival order (so in order per
  sender); ``concurrency`` workers serve different keys at once.
* An instance idle for ``idle_after`` seconds is deactivated (``on_stop``, lease
  released); the next message activates the key again, here or elsewhere. A handler that
  raises ends its key's instance (state not saved; the next message starts from the
  last saved state); other keys are not touched and the supervisor is not involved.
* A process that lost its node lease drops every instance unsaved; while its lease may
  have lapsed (a long pause), it handles nothing until a renewal confirms it.

Delivery is the core mailbox's: at most once. A tell sent in the instant its key changes
hands can be lost; an ask is retried by its policy and answered by the new owner.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, final

import anyio
import anyio.abc
import attrs

from motadata_actors._errors import ActorsError, MailboxFull
from motadata_actors.mailbox import (
    Incoming,
    Mailbox,
    Subscription,
    check_key,
    keyed_name,
    split_keyed,
)
from motadata_actors.mailbox._subjects import KEY_SEPARATOR, tenant_agents
from motadata_actors.telemetry._logging import get_logger

from ._actor import Actor
from ._cell import ActorCell, ActorStatistics
from ._ref import ActorRef
from ._reminders import reminder_service
from ._runtime import Runtime, reason_line
from ._state import StateSlot, declares_state, state_store
from ._watch import notify_terminated

if TYPE_CHECKING:
    from ._leases import Leases
    from ._supervisor import Supervisor

__all__ = ("KeyedCell", "Tap")

log = get_logger("actors")


@final
class _Activation:
    """One key's instance here, and the messages waiting for it."""

    __slots__ = ("actor", "busy", "dropped", "handling", "key", "pending", "token", "used")

    def __init__(self, key: str) -> None:
        self.key = key
        self.actor: Actor | None = None
        self.token = 0
        self.busy = True  # a worker is on it: others queue its messages in ``pending``
        self.dropped = False
        # made when a message waits: an empty deque costs 600 bytes per idle instance
        self.pending: collections.deque[Incoming] | None = None
        self.used = 0.0
        self.handling: Incoming | None = None  # the message its handler has now


@final
class Tap:
    """The one subscription to a tenant's agent subjects, shared by the keyed kinds here.

    Each message goes to its kind's mailbox (a full one drops it, counted as a slow
    consumer's); messages to plain agents are dropped at once. One subscription, so a
    process hosting several kinds receives each message once.
    """

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._kinds: dict[str, Mailbox[Incoming]] = {}
        self._box: Mailbox[Incoming] = Mailbox(max(rt.mailbox_capacity, 1024))
        self._sub: Subscription | None = None
        self._scope = anyio.CancelScope()

    async def add(self, kind: str, mailbox: Mailbox[Incoming]) -> Subscription:
        """Deliver ``kind``'s messages into ``mailbox`` until the result is unsubscribed."""
        rt = self._rt
        self._kinds[kind] = mailbox
        if self._sub is None:
            self._scope = anyio.CancelScope()
            self._sub = await rt.transport.subscribe(tenant_agents(rt.tenant), mailbox=self._box)
            rt.run_soon(self._route)

        async def remove() -> None:
            if self._kinds.get(kind) is mailbox:
                del self._kinds[kind]
            if not self._kinds and self._sub is not None:
                sub, self._sub = self._sub, None
                await sub.unsubscribe()
                self._scope.cancel()

        return Subscription(self._sub.subject, None, mailbox, remove)

    async def _route(self) -> None:
        kinds, box = self._kinds, self._box
        with self._scope:
            while True:
                msg = await box.receive()
                token = msg.subject.split(".", 4)[3:4]
                if not token or KEY_SEPARATOR not in token[0]:
                    continue  # a plain agent's
                mailbox = kinds.get(token[0].partition(KEY_SEPARATOR)[0])
                if mailbox is None or mailbox.closed:
                    continue
                try:
                    mailbox.send_nowait(msg)
                except MailboxFull:
                    mailbox.dropped += 1


@final
class KeyedCell(ActorCell):
    """One keyed agent kind in this process: its instances, by key."""

    def __init__(
        self,
        runtime: Runtime,
        kind: str,
        factory: Callable[[], Actor],
        supervisor: Supervisor,
        *,
        leases: Leases,
        idle_after: float,
        concurrency: int,
        ref: ActorRef,
    ) -> None:
        super().__init__(runtime, kind, factory, supervisor, concurrency=concurrency, ref=ref)
        self.kind = kind
        self.one_at_a_time = True  # one key's messages are handled one at a time
        self.leases = leases
        self.idle_after = idle_after
        self._active: collections.OrderedDict[str, _Activation] = collections.OrderedDict()
        self._tg: anyio.abc.TaskGroup | None = None
        self._nap = anyio.CancelScope()  # the idle sweep's wait between passes
        self._sweep_stop = False
        self._swept: anyio.Event | None = None  # set when the sweep task has ended
        self._state_kept = False

    @property
    def alive(self) -> bool:
        """Whether the kind is taking messages (each key's instance lives on its own)."""
        return not self._stopping

    def keys(self) -> int:
        """Keys with an instance here now."""
        return len(self._active)

    def statistics(self) -> ActorStatistics:
        """The kind's counters, with its instances here (``mailbox`` is ``keyed``)."""
        return attrs.evolve(
            super().statistics(), mailbox="keyed", instances=tuple(self.instances(20))
        )

    def instances(self, limit: int | None = None) -> list[tuple[str, float, int]]:
        """``(key, idle seconds, state bytes)`` of the instances here, latest used first."""
        now = self.rt.clock.now()
        out = []
        for act in reversed(list(self._active.values())[-limit if limit else 0 :]):
            slot = act.actor._sdk_state if act.actor is not None else None
            out.append((act.key, 0.0 if act.busy else now - act.used, slot.size if slot else 0))
        return out

    # -- life cycle ---------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Join the tenant's leases, subscribe its agent subjects, start the workers."""
        rt = self.rt
        self._tg = task_group
        probe = self._new_instance()  # checks the factory and the handler's kind once
        self._state_kept = declares_state(type(probe))
        await self.leases.host(self.kind)
        self.leases.on_lost(self._drop_all)
        await reminder_service(rt)  # reminders wake this kind's deactivated keys
        if rt.tap is None:
            rt.tap = Tap(rt)
        self._inbox = await rt.tap.add(self.kind, self._mailbox)
        self._running.set()
        self._workers_left = self.concurrency
        for i in range(self.concurrency):
            task_group.start_soon(self._work, name=f"keyed:{self.path}#{i}")
        self._swept = anyio.Event()
        task_group.start_soon(self._sweep, name=f"keyed:{self.path}:idle")
        rt.events.record("started", self.path, address=self.kind)
        log.debug("keyed agent %s started on %s", self.path, self._inbox.subject)

    async def revive(self, exc: BaseException | None, cause: str = "") -> None:
        """Resume after a sibling's restart (instances were ended by :meth:`halt`)."""
        if self._stopping:
            return
        await self.halt()
        self.generation += 1
        self.restarts += 1
        self.rt.events.record(
            "restarted", self.path, reason_line(exc) if exc else cause, address=self.kind
        )
        self._running.set()

    async def shutdown(self, deadline: float) -> None:
        """Stop for good: no new messages, running handlers finish, every instance ends.

        The idle sweep stops first (a pass under way ends the instance it is ending and
        goes no further), so what it started is held to the grace as the workers are.
        """
        self._sweep_stop = True
        self._nap.cancel()
        if self._swept is not None:
            with anyio.CancelScope() as grace:  # an on_stop under way, within the grace
                timer = self.rt.clock.call_at(deadline, grace.cancel)
                try:
                    await self._swept.wait()
                finally:
                    timer.cancel()
        await super().shutdown(deadline)

    async def _stop_instance(self) -> None:
        # Every instance ends; their leases are released 256 at a time (100,000 keys
        # one by one would take the whole shutdown grace).
        limit = anyio.Semaphore(256)

        async def end(act: _Activation) -> None:
            async with limit:
                await self._deactivate(act)
            self._let_go(act)

        async with anyio.create_task_group() as tg:
            for act in list(self._active.values()):
                if not act.busy:
                    act.busy = True
                    tg.start_soon(end, act)

    async def _release(self, msg: Incoming, reason: str = "") -> None:
        # Left in the mailbox at shutdown: the asker's policy retries it elsewhere.
        log.debug("keyed agent %s: %s not handled (stopping)", self.path, msg.subject)

    # -- workers ------------------------------------------------------------------

    def _key_of(self, msg: Incoming) -> str | None:
        tokens = msg.subject.split(".")
        if len(tokens) != 5:
            return None
        kind, key = split_keyed(tokens[3])
        if kind != self.kind or key is None:
            return None
        try:
            return check_key(key)
        except ActorsError:
            self.rejected += 1
            return None

    async def _work(self) -> None:
        try:
            while (msg := await self._next()) is not None:
                if self._expired:  # the grace ran out: what is left goes to retries
                    await self._release(msg)
                    continue
                key = self._key_of(msg)
                if key is None:
                    continue
                act = self._active.get(key)
                if act is not None and act.busy:
                    if act.pending is None:
                        act.pending = collections.deque()
                    act.pending.append(msg)
                    continue
                if act is None:
                    if not self.leases.placed_here(self.kind, key):
                        continue  # its place is another node, which got it too
                    act = _Activation(key)
                    self._active[key] = act
                    await self._drain(act, msg, start=True)
                    continue
                act.busy = True
                await self._drain(act, msg)
        finally:
            self._workers_left -= 1
            if self._workers_left <= 0:
                self._workers_done.set()

    async def _activate(self, act: _Activation, msg: Incoming) -> bool:
        """Take the key's lease and make its instance; False (the key let go) otherwise.

        A key held elsewhere is left to its owner, which got these messages too. When the
        lease cannot be read or the instance fails to start, ``msg``'s asker and those of
        the messages waiting behind it are told why.
        """
        rt, key = self.rt, act.key
        record = f"{self.kind}.{key}"
        try:
            held = await self.leases.held_elsewhere(record)
            token = None if held else await self.leases.acquire(record)
        except ActorsError as exc:
            log.warning("keyed agent %s: cannot take %s: %r", self.path, record, exc)
            self._let_go(act)
            await self._tell(act, msg, "ActorsError", f"not handled: its lease could not be "
                             f"taken ({reason_line(exc)}); try again", "sdk")  # fmt: skip
            return False
        if token is None:
            self._let_go(act)
            return False
        act.token = token
        tel = rt.telemetry
        span = tel.start_keyed("activate", self.kind, key) if tel is not None else None
        try:
            actor = self._new_instance()
            actor.name = keyed_name(self.kind, key)
            actor.key = key
            actor.ref = ActorRef(rt, self.kind, self.ref.policy, key=key)
            if self._state_kept:
                store = await state_store(rt, f"keyed agent {self.kind!r}")
                slot = StateSlot(store, record, rt)
                await slot.load(actor)
                actor._sdk_state = slot
            await actor.on_start()
        except Exception as exc:
            log.error("keyed agent %s: instance for %r failed to start: %s",
                      self.path, key, reason_line(exc))  # fmt: skip
            act.handling = None  # told here, never again by a cancel at the grace
            self._let_go(act)
            await self.leases.release(record, token)
            await self._tell(act, msg, type(exc).__name__, str(exc), "handler")
            if tel is not None and span is not None:
                tel.fail(span, exc)
                span.end()
            return False
        if act.dropped:  # the lease was lost while it started: dropped as the others were
            if actor._sdk_timers is not None:
                actor._sdk_timers.cancel_all()
            act.token = 0
            if span is not None:
                span.end()
            return True  # its drain queues the message for the key's next instance
        act.actor = actor
        rt.events.record(
            "activated", self.path, f"fencing token {token}", address=keyed_name(self.kind, key)
        )
        if span is not None:
            span.set_attribute("sdk.lease.token", token)
            kept = actor._sdk_state
            span.set_attribute("sdk.state.size", kept.size if kept is not None else 0)
            span.end()
        return True

    async def _drain(self, act: _Activation, msg: Incoming, *, start: bool = False) -> None:
        """Handle ``msg`` and then every message that queued for the key meanwhile.

        ``start``: the key has no instance yet; it is made first.

        Held to the shutdown grace as a plain actor's handling is (the instance's making
        too): past it, shutdown cancels it, and the message being handled goes as a plain
        actor's does (its asker told, dead-lettered); the instance ends as the others do
        (``on_stop``, its lease released), and the key's messages still waiting are left
        to their askers' retries.
        """
        task = asyncio.current_task()
        assert task is not None
        self._handling.add(task)
        try:
            if start and not await self._start(act, msg):
                return
            while True:
                if self._expired:  # the grace ran out: take nothing more
                    act.busy = False
                    await self._release(msg)
                    return
                if not await self.leases.confirm():
                    await self._refuse(msg, "its process's lease lapsed (it may be paused)")
                elif act.actor is not None and not act.dropped:
                    act.handling = msg
                    result = await self._dispatch.handle(msg, act.actor)
                    act.handling = None
                    act.used = self.rt.clock.now()
                    if act.key in self._active:
                        self._active.move_to_end(act.key)
                    if result.crash is not None or result.stop:
                        await self._deactivate(act, crashed=result.crash, stopped=result.stop)
                else:  # dropped before it was handled (the lease lost meanwhile)
                    if act.pending is None:
                        act.pending = collections.deque()
                    act.pending.appendleft(msg)  # first for the key's next instance
                waiting = act.pending
                if act.dropped or act.actor is None:
                    found = self._successor(act)
                    if found is None:
                        return
                    act, msg = found
                    if not await self._start(act, msg):
                        return
                    continue
                if not waiting:
                    act.busy = False
                    return
                msg = waiting.popleft()
        except asyncio.CancelledError:
            if not self.grace_expired():
                raise  # not ours: the system is being torn down
            task.uncancel()
            cut, act.handling = act.handling, None
            live = self._active.get(act.key)  # a new activation, cancelled while it started
            for one in (act, live):
                if one is not None:
                    one.busy = False  # so the shutdown ends the instance
            if cut is not None:
                await super()._release(cut, "shutdown: handler cancelled at the grace deadline")
        finally:
            self._handling.discard(task)

    def _successor(self, ended: _Activation) -> tuple[_Activation, Incoming] | None:
        """Let the ended activation go; the key's next one, for the messages that waited.

        The ended one stays the key's until here (busy, so its messages wait in
        ``pending``): a message coming while ``on_stop`` runs or the lease is given back
        never makes a second instance beside it.

        Returns the new activation (the key's now, not started: :meth:`_start`) and the
        first message to handle; None when nothing waited (or the grace ran out: they
        are left to their askers' retries).
        """
        self._let_go(ended)
        waiting = ended.pending
        if not waiting or self._expired:
            return None
        again = _Activation(ended.key)
        again.pending = waiting
        self._active[ended.key] = again
        return again, waiting.popleft()

    async def _start(self, act: _Activation, msg: Incoming) -> bool:
        """Make the key's instance for ``msg`` (:meth:`_activate`); False: the key let go."""
        act.handling = msg  # cut at the grace while it starts: its asker is told
        started = await self._activate(act, msg)
        act.handling = None
        return started

    def _let_go(self, act: _Activation) -> None:
        """Forget ``act`` as the key's activation (if it still is: never a newer one)."""
        if self._active.get(act.key) is act:
            del self._active[act.key]

    async def _refuse(self, msg: Incoming, reason: str) -> None:
        if msg.reply:
            await self.rt.send_error(msg.reply, "ActorsError", f"not handled: {reason}", "sdk")

    async def _tell(
        self, act: _Activation, msg: Incoming, kind: str, text: str, origin: str
    ) -> None:
        """Answer ``msg`` and the messages waiting behind it with an error."""
        waiting, act.pending = act.pending or (), None
        for one in (msg, *waiting):
            if one.reply:
                await self.rt.send_error(one.reply, kind, text, origin)

    async def _deactivate(
        self, act: _Activation, crashed: BaseException | None = None, stopped: bool = False
    ) -> None:
        """End the key's instance here: ``on_stop`` (not after a crash), lease released.

        The activation stays in ``_active``, busy, until its caller lets the key go
        (:meth:`_successor`, or the shutdown's end of every instance). Never cut at the grace
        deadline: the shutdown cancels the tasks handling then, and a cancel scope's
        shield does not keep out a task's own cancel, so a drain ending an instance is
        not one of them meanwhile.
        """
        task = asyncio.current_task()
        assert task is not None
        cuttable = task in self._handling
        self._handling.discard(task)
        try:
            await self._end(act, crashed, stopped)
        finally:
            if cuttable:
                self._handling.add(task)

    async def _end(self, act: _Activation, crashed: BaseException | None, stopped: bool) -> None:
        actor, act.actor = act.actor, None
        act.dropped = True
        tel = self.rt.telemetry
        span = tel.start_keyed("deactivate", self.kind, act.key) if tel is not None else None
        if actor is not None and actor._sdk_timers is not None:
            actor._sdk_timers.cancel_all()
        if actor is not None and crashed is None:
            with anyio.CancelScope(shield=True):
                try:
                    await actor.on_stop()
                except Exception:
                    log.exception("keyed agent %s/%s: on_stop raised", self.path, act.key)
        if act.token:
            await self.leases.release(f"{self.kind}.{act.key}", act.token, at_exit=self._stopping)
        detail = f"crashed: {reason_line(crashed)}" if crashed is not None else "idle or stopped"
        self.rt.events.record(
            "deactivated", self.path, detail, address=keyed_name(self.kind, act.key)
        )
        if span is not None:
            span.set_attribute("sdk.deactivation.reason", detail)
            span.end()
        if crashed is not None or stopped:
            reason = f"crashed: {reason_line(crashed)}" if crashed is not None else "stopped"
            await notify_terminated(self.rt, keyed_name(self.kind, act.key), reason)

    async def _drop_all(self) -> None:
        """The lease was lost: forget every instance, unsaved and unreleased.

        One being handled stays the key's until its handler returns (its messages wait
        for it), so the key never has two instances here; its drain then starts it again.
        """
        dropped = list(self._active.values())
        for act in dropped:
            if not act.busy:
                del self._active[act.key]
            act.dropped = True
            act.token = 0
            if act.actor is not None and act.actor._sdk_timers is not None:
                act.actor._sdk_timers.cancel_all()
            if act.actor is not None:
                self.rt.events.record(
                    "deactivated", self.path, "lease lost: dropped unsaved",
                    address=keyed_name(self.kind, act.key),
                )  # fmt: skip
            act.actor = None
        self.rt.events.record("lease_lost", self.path, f"{len(dropped)} instance(s) dropped")

    async def _sweep(self) -> None:
        """Deactivate instances idle for ``idle_after`` seconds (least recently used first)."""
        clock = self.rt.clock
        try:
            while not self._sweep_stop:
                self._nap = anyio.CancelScope()
                with self._nap:  # only the wait is cancelled at shutdown, never a pass
                    await clock.sleep(max(self.idle_after / 4, 0.01))
                if not self._sweep_stop:
                    await self._sweep_once(clock.now() - self.idle_after)
        finally:
            assert self._swept is not None
            self._swept.set()

    async def _sweep_once(self, cutoff: float) -> None:
        for act in list(self._active.values()):
            if act.used > cutoff or self._sweep_stop:
                break  # the rest were used later, or the shutdown ends them
            if act.busy:
                continue
            act.busy = True
            await self._deactivate(act)
            found = self._successor(act)  # messages came while it ended
            if found is not None:  # started by a worker of their own, under the grace
                assert self._tg is not None
                self._workers_left += 1  # so the shutdown waits for it as for a worker
                self._tg.start_soon(self._drain_as_worker, *found)

    async def _drain_as_worker(self, act: _Activation, msg: Incoming) -> None:
        """A drain the sweep started, counted among the workers until it ends."""
        try:
            await self._drain(act, msg, start=True)
        finally:
            self._workers_left -= 1
            if self._workers_left <= 0:
                self._workers_done.set()
