"""Discovery and health over the bus: who runs which agents, how many replicas, how deep.

Every :class:`~motadata_actors.ActorSystem` answers requests on ``sdk.system.<tenant>``
(no queue group: every process answers) with a JSON report of its actors. A client sends
one request and gathers the answers that come within a short wait: that is
``python -m motadata_actors status`` and :meth:`ActorSystem.status`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from motadata_actors._errors import CodecError
from motadata_actors.codecs import Codecs
from motadata_actors.mailbox import Incoming, Mailbox, Transport, check_id
from motadata_actors.mailbox._envelope import Letter, seal
from motadata_actors.mailbox._subjects import new_inbox
from motadata_actors.telemetry._logging import get_logger

from ._cell import ActorStatistics

__all__ = ("gather_status", "serve_status", "status_subject", "summarize")

log = get_logger("status")


def status_subject(tenant: str) -> str:
    """``sdk.system.<tenant>``: where every process of a tenant answers status requests."""
    return f"sdk.system.{check_id(tenant, 'tenant')}"


_JSON = Codecs("json")  # reports are JSON, whatever the system's codec


def _report(client_id: str, stats: list[ActorStatistics]) -> dict[str, Any]:
    return {
        "process": client_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "time": time.time(),
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
                **(
                    {"keys": s.keys, "instances": [list(i) for i in s.instances]}
                    if s.mailbox == "keyed"
                    else {}
                ),
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
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Answer status requests until cancelled (started once subscribed)."""
    box: Mailbox[Incoming] = Mailbox(64)
    sub = await transport.subscribe(status_subject(tenant), mailbox=box)
    task_status.started()
    try:
        async for request in box:
            if not request.reply:
                continue
            try:
                report = seal(_report(client_id, snapshot()), _JSON.default)
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
