"""Events and workflows: what an actor subscribes to, and a workflow's ordered log.

* Events travel on ``sdk.events.<event_type>.<tenant>``. A :class:`Subscribe` names an
  event type (or ``"*"``, all of the tenant's), who shares it (the actor's name by
  default, so every actor gets each event once and its replicas split them; or a named
  queue group; or every replica with ``broadcast``), and whether it is *durable*: read
  from the tenant's events stream ``SDK_EVENTS_<tenant>`` with a consumer of its own, so
  it is acknowledged after handling, redelivered after a failure, and replayable from a
  point in time or sequence by an actor that joins late.
* A workflow instance's coordination messages travel on
  ``sdk.workflow.<workflow_id>.<tenant>`` and are always kept, in order, in the tenant's
  stream ``SDK_WORKFLOWS_<tenant>``. :class:`Workflow` publishes steps (optionally only
  if nobody else published since a given step) and reads the history; an actor that
  follows a workflow gets its steps in its mailbox, one at a time, in stream order.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any, Final, final

import attrs

from motadata_actors._errors import ConfigError, SubjectError
from motadata_actors.mailbox import StartAt, check_id, check_token, workflow_subject
from motadata_actors.mailbox._envelope import Letter, Sealed
from motadata_actors.mailbox._subjects import (
    RESERVED_EVENT_PREFIX,
    STATUS_KINDS,
    status_event_subject,
)

from ._runtime import WORKFLOW_TEMPLATE, Runtime

__all__ = ("Subscribe", "Workflow", "WorkflowStep", "check_start", "feed_consumer")

_PLAIN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_start(start: object) -> StartAt:
    """``start`` if it is a valid :data:`StartAt`, else a ConfigError saying what is."""
    if start in ("all", "new"):
        return start
    if type(start) is int and start >= 1:
        return start
    if isinstance(start, datetime.datetime):
        if start.tzinfo is None:
            raise ConfigError(f"start={start!r} needs a time zone (datetime.now(UTC), say)")
        return start
    raise ConfigError(
        f"start must be 'all', 'new', a stream sequence (int >= 1) or an aware datetime, "
        f"not {start!r}"
    )


def feed_consumer(prefix: str, group: str, name: str) -> str:
    """A JetStream consumer name for a feed: ``<prefix>_<group>_<name>_<digest>``.

    The digest of all three keeps names apart that the readable part would confuse
    (``a_b`` following ``c`` and ``a`` following ``b_c``; the types ``*`` and ``all``).
    """
    digest = hashlib.sha256(f"{prefix}\0{group}\0{name}".encode()).hexdigest()[:12]
    readable = "all" if name == "*" else name[:32] if _PLAIN.fullmatch(name) else "x"
    return f"{prefix}_{group}_{readable}_{digest}"


@final
@attrs.frozen(slots=True)
class Subscribe:
    """An actor's subscription to events, for ``Actor.events`` or :meth:`Actor.subscribe`.

    Attributes:
        event_type: one event type (one subject token), or ``"*"`` for all of the
            tenant's events. ``"sdk~lifecycle"`` and ``"sdk~progress"`` are the tenant's
            status events (agents' life-cycle changes, handlers' progress reports: see
            :class:`~motadata_actors.actors.AgentLifecycle`); they travel on
            ``sdk.status.<kind>.<tenant>``, so ``"*"`` does not include them, and they
            are never kept (not ``durable``).
        queue: the queue group sharing these events: each event goes to one member.
            Default: the actor's name (each actor gets each event once; its replicas
            split them).
        broadcast: every replica gets every event (no queue group). Core only.
        durable: read from the tenant's events stream: acknowledged after handling,
            redelivered after a failure, dead-lettered after the last delivery, kept
            while nobody listens. One consumer per queue group.
        start: where a new durable subscription begins: ``"all"`` (everything kept),
            ``"new"``, a stream sequence, or an aware ``datetime``. An existing one goes
            on from where it stopped.
        ordered: durable only: events are handed out one at a time in stream order, and
            one that fails holds back those after it until it succeeds or is
            dead-lettered (after ``SDK_DURABLE_MAX_DELIVER`` deliveries). Without it a
            failed event is redelivered after a backoff while later ones go on, so they
            can overtake it. Ordered costs a round trip per event.

    Example::

        class Auditor(Actor):
            events = ("task_completed", Subscribe("*", durable=True, start="all"))
    """

    event_type: str = attrs.field()
    queue: str | None = None
    broadcast: bool = False
    durable: bool = False
    start: StartAt = "all"
    ordered: bool = False

    @event_type.validator
    def _check_type(self, _: object, value: object) -> None:
        if value != "*":
            check_token(value, "event type")
            assert isinstance(value, str)
            if value.startswith(RESERVED_EVENT_PREFIX) and self._status_kind(value) is None:
                kinds = ", ".join(RESERVED_EVENT_PREFIX + k for k in STATUS_KINDS)
                raise SubjectError(
                    f"event type {value!r} is reserved: of the {RESERVED_EVENT_PREFIX}... "
                    f"types there are {kinds}"
                )

    @staticmethod
    def _status_kind(event_type: str) -> str | None:
        kind = event_type.removeprefix(RESERVED_EVENT_PREFIX)
        return kind if kind != event_type and kind in STATUS_KINDS else None

    def __attrs_post_init__(self) -> None:
        if self.queue is not None:
            check_id(self.queue, "queue group")
        if self.broadcast and (self.queue is not None or self.durable):
            raise ConfigError(
                "broadcast=True delivers to every replica: it takes neither a queue group "
                "nor durable=True (a durable subscription is shared by its group)"
            )
        check_start(self.start)
        if self.durable and self._status_kind(self.event_type) is not None:
            raise ConfigError(
                f"{self.event_type} events are never kept: subscribe without durable=True"
            )
        if self.ordered and not self.durable:
            raise ConfigError(
                "ordered=True needs durable=True: only a kept event can hold back the ones "
                "after it until it is handled"
            )

    @classmethod
    def of(cls, spec: str | Subscribe) -> Subscribe:
        """``spec`` as a :class:`Subscribe` (a bare string is a core subscription)."""
        if isinstance(spec, Subscribe):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        raise ConfigError(f"events entries are event types or Subscribe(...), not {spec!r}")

    def subject(self, tenant: str) -> str:
        """The subject (a wildcard for ``"*"``) this subscription reads."""
        kind = self._status_kind(self.event_type)
        if kind is not None:
            return status_event_subject(kind, tenant)
        return f"sdk.events.{self.event_type}.{check_id(tenant, 'tenant')}"

    def group(self, actor: str) -> str | None:
        """The queue group for ``actor`` (None: broadcast)."""
        return None if self.broadcast else (self.queue or actor)


@final
@attrs.frozen(slots=True)
class WorkflowStep:
    """One kept step of a workflow.

    Attributes:
        seq: its sequence number in the tenant's workflows stream (increasing in the
            order the steps were stored; not consecutive across workflows).
        time: when it was stored (seconds since the epoch).
        value: the step, decoded (a typed message comes back as its class).
        message_id: its ``Sdk-Message-Id``.
        headers: all its headers.
    """

    seq: int
    time: float
    value: Any
    message_id: str | None
    headers: dict[str, str]

    message_type: str | None = None
    """The typed message's wire name, None for plain values."""


@final
class Workflow:
    """One workflow instance: its steps, kept in order on ``sdk.workflow.<id>.<tenant>``.

    Made by :meth:`ActorSystem.workflow` and :meth:`Context.workflow`. Any actor (in any
    process of the tenant) may publish steps; every reader sees them in the same order.
    """

    __slots__ = ("_rt", "id", "subject")

    def __init__(self, rt: Runtime, workflow_id: str) -> None:
        self._rt = rt
        self.subject = workflow_subject(workflow_id, rt.tenant)
        self.id = workflow_id
        """The workflow's id, one subject token."""

    def __repr__(self) -> str:
        return f"<Workflow {self.id!r} tenant={self._rt.tenant!r}>"

    async def publish(
        self, step: object, *, expect_seq: int | None = None, message_id: str | None = None
    ) -> int:
        """Append ``step`` to the workflow; return its sequence once JetStream stored it.

        Args:
            step: the step, a typed message or plain values.
            expect_seq: append only if the workflow's last step has this sequence (0:
                only if it has none): a compare-and-set for coordinators that must not
                act on a stale view.
            message_id: the step's ``Sdk-Message-Id`` (a new one if omitted). Resending
                after ``ConnectionLost`` with the same id stores the step once (within
                ``SDK_DURABLE_DUPLICATE_WINDOW``) and returns its sequence.

        Raises:
            SequenceConflict: ``expect_seq`` is not the last step's sequence.
            EncodeError: ``step`` cannot be encoded (nothing was stored).
            MessageTooLarge: ``step`` exceeds the size limit (nothing was stored).
            ConnectionLost: no acknowledgement: the step may or may not be stored.
            ConfigError: no JetStream (in process, say).
        """
        rt = self._rt
        durable = rt.durable("a workflow")

        async def append(sealed: Sealed) -> int:
            return await durable.append(
                "workflows", rt.tenant, rt.durable_config, self.subject, sealed.data,
                headers=sealed.headers, expect_last_seq=expect_seq,
            )  # fmt: skip

        return await rt.send_to_many(self.subject, WORKFLOW_TEMPLATE, step, append, message_id)

    async def history(self, *, after: int = 0, limit: int = 10_000) -> list[WorkflowStep]:
        """The steps kept so far (past sequence ``after``), oldest first.

        Raises:
            DecodeError: a kept step cannot be decoded (it stays kept).
            ConnectionLost: the server cannot be reached.
            ConfigError: no JetStream (in process, say).
        """
        rt = self._rt
        durable = rt.durable("a workflow")
        kept = await durable.read("workflows", rt.tenant, self.subject, after=after, limit=limit)
        steps = []
        for m in kept:
            letter = Letter.open(m)
            steps.append(
                WorkflowStep(
                    m.seq,
                    m.time,
                    letter.body(rt.codecs),
                    letter.message_id,
                    letter.headers,
                    letter.message_type,
                )
            )
        return steps
