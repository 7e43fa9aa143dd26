"""What supervision did: a bounded log of events and their counts, for tests and metrics."""

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
    """

    kind: EventKind
    actor: str
    detail: str
    at: float


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
        self._events: deque[SupervisionEvent] = deque(maxlen=size)
        self._counts: Counter[str] = Counter()

    def record(self, kind: EventKind, actor: str, detail: str = "") -> None:
        """Record an event now."""
        self._events.append(SupervisionEvent(kind, actor, detail, self._clock()))
        self._counts[kind] += 1
        if self.listener is not None:
            self.listener(kind, actor)

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
