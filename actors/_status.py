"""Discovery and health over the bus: who runs which agents, how many replicas, how deep.

Every :class:`~motadata_actors.ActorSystem` answers requests on ``sdk.system.<tenant>``
(no queue group: every process answers) with a JSON report of its actors. A client sends
one request and gathers the answers that come within a short wait: that is
``python -m motadata_actors status`` and :meth:`ActorSystem.status`.
"""

from __future__ import annotations

import functools
import inspect
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from motadata_actors._errors import CodecError
from motadata_actors.codecs import Codecs
from motadata_actors.mailbox import Incoming, Mailbox, Transport, check_id
from motadata_actors.mailbox._envelope import Letter, seal
from motadata_actors.mailbox._subjects import new_inbox
from motadata_actors.telemetry._logging import get_logger

from ._actor import Actor
from ._cell import ActorCell, ActorStatistics
from ._dispatch import HANDLING_BOUNDS

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = (
    "actor_class",
    "agent_cells",
    "describe_agents",
    "gather_status",
    "serve_status",
    "status_subject",
    "summarize",
)

log = get_logger("status")


def status_subject(tenant: str) -> str:
    """``sdk.system.<tenant>``: where every process of a tenant answers status requests."""
    return f"sdk.system.{check_id(tenant, 'tenant')}"


_JSON = Codecs("json")  # reports are JSON, whatever the system's codec


def agent_cells(root: Supervisor) -> list[ActorCell]:
    """Every actor cell (plain agents and keyed kinds) under ``root``, in start order."""
    cells: list[ActorCell] = []
    for child in root._children:
        if isinstance(child.node, ActorCell):
            cells.append(child.node)
        else:
            cells.extend(agent_cells(child.node))
    return cells


def actor_class(cell: ActorCell) -> type[Actor] | None:
    """The :class:`Actor` subclass ``cell`` runs, or None when it cannot be told.

    Told without calling the factory: a class, a ``functools.partial`` of one, or the
    instance in place.
    """
    factory: object = cell._factory
    if isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type) and issubclass(factory, Actor):
        return factory
    instance = cell._instance
    return type(instance) if instance is not None else None


def _wire_or_any(entry: object) -> str:
    wire = getattr(entry, "__sdk_wire_name__", None)
    return wire if isinstance(wire, str) else "*"


def describe_agents(root: Supervisor) -> dict[str, dict[str, Any]]:
    """Per agent path: what the status report says of its kind beyond the counters.

    ``class`` (``module.QualName``) and ``doc`` (the docstring's first paragraph) when
    the class is known; ``accepts`` when the class declares one: the wire names of its
    ``@message`` classes, ``"*"`` for plain values; ``events``: the event types it is
    subscribed to now (``"*"``: all; ``sdk~lifecycle``, ``sdk~progress``: status events).
    The AsyncAPI document of the tenant is made from these.
    """
    out: dict[str, dict[str, Any]] = {}
    for cell in agent_cells(root):
        cls = actor_class(cell)
        info: dict[str, Any] = {}
        if cls is not None:
            info["class"] = f"{cls.__module__}.{cls.__qualname__}"
            # Its own docstring only: inspect.getdoc would fall back to Actor's.
            doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0]
            if doc:
                info["doc"] = " ".join(doc.split())
            accepts = getattr(cls, "accepts", None)
            if isinstance(accepts, (tuple, list, set, frozenset)) and accepts:
                info["accepts"] = sorted({_wire_or_any(entry) for entry in accepts})
        # The feeds' keys: (kind, event type or workflow id, group, durable).
        events = sorted({key[1] for key in cell.feeds._feeds if key[0] == "events"})
        if events:
            info["events"] = events
        out[cell.path] = info
    return out


def _report(
    client_id: str,
    stats: list[ActorStatistics],
    described: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    described = described or {}
    return {
        "process": client_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "time": time.time(),
        "handling_bounds": HANDLING_BOUNDS,
        "agents": [
            {
                "name": s.name,
                "mailbox": s.mailbox,
                "queued": s.queued,
                "capacity": s.capacity,
                "handled": s.handled,
                "failed": s.failed,
                "rejected": s.rejected,
                "restarts": s.restarts,
                "dropped": s.dropped,
                "path": s.path,
                "handling": {"seconds": s.handling_seconds, "times": s.handling_times},
                **(
                    {"keys": s.keys, "instances": [list(i) for i in s.instances]}
                    if s.mailbox == "keyed"
                    else {}
                ),
                **described.get(s.path, {}),
            }
            for s in stats
        ],
    }


async def serve_status(
    transport: Transport,
    tenant: str,
    client_id: str,
    snapshot: Callable[[], list[ActorStatistics]],
    *,
    describe: Callable[[], dict[str, dict[str, Any]]] | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Answer status requests until cancelled (started once subscribed).

    ``snapshot`` gives the counters of each agent, ``describe`` what each is (see
    :func:`describe_agents`), by path.
    """
    box: Mailbox[Incoming] = Mailbox(64)
    sub = await transport.subscribe(status_subject(tenant), mailbox=box)
    task_status.started()
    try:
        async for request in box:
            if not request.reply:
                continue
            try:
                described = describe() if describe is not None else None
                report = seal(_report(client_id, snapshot(), described), _JSON.default)
                await transport.publish(request.reply, report.data, headers=report.headers)
            except Exception as exc:  # a lost answer is the asker's timeout, not our crash
                log.debug("status answer lost: %r", exc)
    finally:
        with anyio.CancelScope(shield=True):
            await sub.unsubscribe()


async def gather_status(transport: Transport, tenant: str, wait: float = 0.5) -> list[Any]:
    """Ask every process of ``tenant`` for its report; return those that came in ``wait``."""
    inbox = new_inbox(tenant)
    box: Mailbox[Incoming] = Mailbox(10_000)
    sub = await transport.subscribe(inbox, mailbox=box)
    reports: list[Any] = []
    try:
        await transport.publish(status_subject(tenant), b"{}", reply=inbox)
        with anyio.move_on_after(wait):
            async for msg in box:
                try:
                    letter = Letter.open(msg)
                    if letter.no_responders:
                        break  # no process of the tenant runs
                    report = letter.body(_JSON)
                except CodecError:
                    report = None
                if isinstance(report, dict) and isinstance(report.get("process"), str):
                    reports.append(report)
                else:  # an error reply (a dropped request), or not ours
                    log.warning("an unreadable status report on %s", inbox)
    finally:
        await sub.unsubscribe()
    return sorted(reports, key=lambda r: (r.get("host", ""), r.get("pid", 0)))


def summarize(reports: list[Any]) -> dict[str, dict[str, Any]]:
    """Per agent name: its replicas (processes running it), mailbox kind and totals.

    A keyed kind's ``keys`` is the number of its active instances over all processes.
    """
    agents: dict[str, dict[str, Any]] = {}
    for report in reports:
        for a in report.get("agents", []):
            row = agents.setdefault(
                a["name"],
                {"replicas": 0, "mailbox": a.get("mailbox", "core"), "queued": 0,
                 "handled": 0, "failed": 0, "restarts": 0, "dropped": 0, "keys": 0},
            )  # fmt: skip
            row["replicas"] += 1
            for key in ("queued", "handled", "failed", "restarts", "dropped", "keys"):
                row[key] += int(a.get(key, 0))
    return dict(sorted(agents.items()))
