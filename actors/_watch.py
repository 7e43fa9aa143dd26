"""Watching: an agent is told when an agent it watches stops or its process dies.

Theory of operation:

* ``await self.watch(ref)`` registers the watcher in its system's :class:`WatchService`,
  which subscribes the target's notice subject ``sdk.watch.<to>.<tenant>`` (once per
  target and process). An agent whose instance ends for good publishes a
  :class:`Terminated` there: a plain agent when it stops (its last message, shutdown, or
  its supervisor giving it up), a keyed agent's instance when it crashed or called
  ``ctx.stop()`` (an idle deactivation is not an end: the agent comes back on demand).
* A dead process publishes nothing, so the service also looks, every half lease: a
  keyed target whose lease is held by a node whose lease expired has died with its
  process; a plain target is probed with a :class:`Probe` request, which any instance
  answers without running its handler, and the server's no-responders answer means no
  process runs it any more.
* Each watcher gets one notice per watch, like an Erlang monitor's ``DOWN``: the watch
  ends with it (watch again to go on watching).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import anyio

from motadata_actors._errors import ActorsError, NoResponders
from motadata_actors.codecs import field, message
from motadata_actors.mailbox import Incoming, Mailbox, Subscription, split_keyed
from motadata_actors.mailbox._envelope import Letter, seal
from motadata_actors.mailbox._subjects import watch_subject
from motadata_actors.telemetry._logging import get_logger

if TYPE_CHECKING:
    from ._ref import ActorRef
    from ._runtime import Runtime

__all__ = ("Probe", "Terminated", "WatchService", "notify_terminated", "watch_service")

log = get_logger("actors")

_PROBE_TIMEOUT: Final = 1.0


@message("sdk.terminated.v1")
class Terminated:
    """What a watcher receives when an agent it watches ended.

    Attributes:
        name: the watched agent (``writer``, or ``chat~ada`` for a keyed one).
        reason: why: ``stopped``, ``crashed: ...``, ``its process died``, ...
    """

    name: str = field(proto=1)
    reason: str = field(proto=2)


@message("sdk.probe.v1")
class Probe:
    """Internal: asks whether any instance of an agent runs (answered by the system)."""


def ensure_registered(rt: Runtime) -> None:
    """Register the framework's own messages in a system's own registry."""
    registry = rt.codecs.registry
    for cls, wire in ((Terminated, "sdk.terminated.v1"), (Probe, "sdk.probe.v1")):
        if wire not in registry:
            registry.register(cls, wire)


async def notify_terminated(rt: Runtime, to: str, reason: str) -> None:
    """Announce that ``to`` ended (its watchers anywhere hear it); never raises."""
    try:
        sealed = seal(Terminated(name=to, reason=reason), rt.codecs.default)
        await rt.transport.publish(
            watch_subject(to, rt.tenant), sealed.data, headers=sealed.headers
        )
    except ActorsError as exc:
        log.debug("the end of %s not announced: %r", to, exc)


async def watch_service(rt: Runtime) -> WatchService:
    """The system's watch service, started on first use."""
    if rt.watches is None:
        rt.watches = WatchService(rt)
        rt.run_soon(rt.watches.run)
    return rt.watches


@final
class WatchService:
    """The watches of one system: who watches what, the notices, the look-outs."""

    def __init__(self, rt: Runtime) -> None:
        ensure_registered(rt)
        self._rt = rt
        self._watchers: dict[str, set[ActorRef]] = {}
        self._subs: dict[str, Subscription] = {}
        self._notices: Mailbox[Incoming] = Mailbox(256)
        self._scope = anyio.CancelScope()

    async def watch(self, watcher: ActorRef, target: str) -> None:
        """Tell ``watcher`` a :class:`Terminated` when ``target`` ends (once)."""
        rt = self._rt
        self._watchers.setdefault(target, set()).add(watcher)
        if target not in self._subs:
            self._subs[target] = await rt.transport.subscribe(
                watch_subject(target, rt.tenant), mailbox=self._notices
            )

    async def unwatch(self, watcher: ActorRef, target: str) -> bool:
        """Stop ``watcher`` watching ``target``; whether it did."""
        watchers = self._watchers.get(target)
        if not watchers or watcher not in watchers:
            return False
        watchers.discard(watcher)
        if not watchers:
            await self._forget(target)
        return True

    async def _forget(self, target: str) -> None:
        self._watchers.pop(target, None)
        sub = self._subs.pop(target, None)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except ActorsError as exc:
                log.debug("watch of %s: unsubscribe: %r", target, exc)

    async def run(self) -> None:
        """Deliver notices, and look for dead processes every half lease, until closed."""
        with self._scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._look_out)
                while True:
                    try:
                        msg = await self._notices.receive()
                    except StopAsyncIteration:
                        return
                    try:
                        notice = Letter.open(msg).body(self._rt.codecs)
                    except ActorsError as exc:
                        log.warning("a malformed termination notice on %s: %s", msg.subject, exc)
                        continue
                    if type(notice) is Terminated:
                        await self._ended(notice.name, notice.reason)

    async def _ended(self, target: str, reason: str) -> None:
        watchers = self._watchers.get(target, set())
        await self._forget(target)
        for watcher in watchers:
            try:
                await watcher.tell(Terminated(name=target, reason=reason))
            except ActorsError as exc:
                log.warning("%r not told that %s ended: %r", watcher, target, exc)

    async def _look_out(self) -> None:
        rt = self._rt
        while True:
            await rt.clock.sleep(max(0.2, rt.lease_time / 2))
            for target in list(self._watchers):
                reason = await self._dead(target)
                if reason is not None and target in self._watchers:
                    await self._ended(target, reason)

    async def _dead(self, target: str) -> str | None:
        """Why ``target`` is gone with its process, or None while something runs it."""
        from ._ref import ActorRef

        rt = self._rt
        kind, key = split_keyed(target)
        try:
            if key is not None:
                from ._leases import Leases

                if rt.leases is None:
                    rt.leases = Leases(rt, rt.lease_time)  # to read them: no node joins
                leases = rt.leases
                owner = await leases.owner(f"{kind}.{key}")
                if owner is not None and not await leases.alive(owner):
                    return "its process died"
                return None
            await ActorRef(rt, kind).ask(Probe(), timeout=_PROBE_TIMEOUT)
        except NoResponders:
            return "no process runs it (its process died or it stopped)"
        except ActorsError:
            return None  # busy or slow: alive as far as anyone can tell
        return None

    async def close(self) -> None:
        """Stop watching everything."""
        self._scope.cancel()
        for target in list(self._subs):
            await self._forget(target)
        self._notices.close()
