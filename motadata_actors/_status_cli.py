"""``python -m motadata_actors status``: which agents run where, replicas and backlog."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings
from motadata_actors.actors import summarize
from motadata_actors.actors._config import nats_transport
from motadata_actors.actors._status import gather_status
from motadata_actors.mailbox import check_id

__all__ = ("show_status",)


async def show_status(
    settings: Settings, tenant: str, wait: float, out: TextIO = sys.stdout
) -> int:
    """Print every agent of ``tenant`` with its replicas and totals; return how many."""
    check_id(tenant, "tenant")
    if not settings.enable_nats or not settings.nats_urls:
        raise ConfigError("status asks the processes over NATS: set NATS_URL to their server")
    transport = nats_transport(settings, tenant, name="motadata-actors/status")
    await transport.start()
    try:
        reports = await gather_status(transport, tenant, wait)
        backlog = await transport.durable.describe(tenant)
    finally:
        await transport.aclose()
    agents = summarize(reports)
    print(f"tenant {tenant!r}: {len(reports)} process(es) answered within {wait:g}s", file=out)
    for r in reports:
        print(f"  process {r['process']} (pid {r['pid']} on {r['host']})", file=out)
    if agents:
        print(f"{'agent':<20} {'mailbox':<8} {'replicas':>8} {'queued':>7} {'handled':>9} "
              f"{'failed':>7} {'restarts':>8} {'dropped':>8}", file=out)  # fmt: skip
    for name, a in agents.items():
        print(
            f"{name:<20} {a['mailbox']:<8} {a['replicas']:>8} {a['queued']:>7} "
            f"{a['handled']:>9} {a['failed']:>7} {a['restarts']:>8} {a['dropped']:>8}",
            file=out,
        )
    _keyed(reports, out)
    for line in backlog:
        print(line, file=out)
    return len(agents)


def _keyed(reports: list[Any], out: TextIO) -> None:
    """Keyed kinds per process: how many keys are active there, and the latest used."""
    for r in reports:
        for a in r.get("agents", []):
            if a.get("mailbox") != "keyed":
                continue
            print(f"keyed {a['name']} in {r['process']} (pid {r['pid']}): "
                  f"{a.get('keys', 0)} active key(s)", file=out)  # fmt: skip
            for key, idle, size in a.get("instances", []):
                print(f"  {key:<32} idle {idle:>7.1f}s  state {size:>7} B", file=out)
