"""What supervision did: a bounded log of events and their counts, for tests and metrics.

The changes of an agent (started, crashed, restarted, stopped; a keyed instance activated
or deactivated) name the agent's address; the log forwards those to its ``forward`` hook,
which the system points at its status-event publisher (``sdk.status.lifecycle.<tenant>``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Literal, final

import attrs

__all__ = ("EventKind", "EventLog", "SupervisionEvent")

EventKind = Literal[
    "started",  # an actor or supervisor started
    "crashed",  # a handler or hook raised: the actor's instance is gone
    "restarted",  # a fresh instance took over
    "escalated",  # a supervisor exceeded its restart intensity
    "stopped",  # an actor or supervisor stopped for good
    "retry",  # an ask sent another attempt
    "timeout",  # an ask (or one attempt of it) got no reply in time
    "overran",  # a handler outlived its asker's deadline and was cancelled
    "cancelled",  # a streaming reply's consumer closed it early: the handler was cancelled
    "dead_letter",  # a message went to sdk.dlq.<to>.<tenant>
    "duplicate",  # a retried ask was answered from the reply cache
    "loop_lag",  # the event loop was blocked (a blocking handler?)
    "dropped",  # a slow actor's NATS subscription dropped a message (an ask is told)
    "disconnected",  # the NATS connection broke (nats-py is reconnecting)
    "reconnected",  # the NATS connection is back
    "refused",  # the NATS server refused a publish or subscription (permissions)
    "activated",  # a keyed agent's instance for one key started here
    "deactivated",  # a keyed agent's instance ended here (idle, stopped, crashed)
    "lease_lost",  # this process lost its node lease: its keyed instances were dropped
    "reminded",  # a durable reminder fired and its agent handled it
]


@final
@attrs.frozen(slots=True)
class SupervisionEvent:
    """One thing supervision did.

    Attributes:
        kind: what happened.
        actor: the actor or supervisor concerned (the target, for asks).
        detail: a human-readable reason or figure.
        at: the system clock's time.
        address: for a change of an agent, its address: the name (``writer``), or
            ``<kind>~<key>`` for a keyed instance; None for a supervisor's events and
            for events that are not changes of an agent (asks, dead letters, ...).
        trace_id: for a handler's crash with telemetry on, the trace of that handling
            (hex), else "".
    """

    kind: EventKind
    actor: str
    detail: str
    at: float
    address: str | None = None
    trace_id: str = ""


@final
class EventLog:
    """The last ``size`` events and a count of every kind ever recorded."""

    def __init__(
        self,
        clock: Callable[[], float],
        size: int = 10_000,
        listener: Callable[[str, str], None] | None = None,
    ) -> None:
        self._clock = clock
        self.listener = listener
        self.forward: Callable[[SupervisionEvent], None] | None = None
        """Told every event that names an agent's address (it must not block or raise)."""
        self._events: deque[SupervisionEvent] = deque(maxlen=size)
        self._counts: Counter[str] = Counter()

    def record(
        self,
        kind: EventKind,
        actor: str,
        detail: str = "",
        *,
        address: str | None = None,
        trace_id: str = "",
    ) -> None:
        """Record an event now; ``address``: the agent's, for a change of an agent."""
        event = SupervisionEvent(kind, actor, detail, self._clock(), address, trace_id)
        self._events.append(event)
        self._counts[kind] += 1
        if self.listener is not None:
            self.listener(kind, actor)
        if address is not None and self.forward is not None:
            self.forward(event)

    def events(
        self, kind: EventKind | None = None, actor: str | None = None
    ) -> list[SupervisionEvent]:
        """The recorded events, oldest first, optionally of one kind and one actor."""
        return [
            e
            for e in self._events
            if (kind is None or e.kind == kind) and (actor is None or e.actor == actor)
        ]

    def counts(self) -> dict[str, int]:
        """How many events of each kind were ever recorded."""
        return dict(self._counts)
