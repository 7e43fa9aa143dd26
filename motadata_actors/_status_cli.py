"""``python -m motadata_actors status``: which agents run where, replicas and backlog.

``status --follow`` prints the tenant's status events live instead, one line each.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any, TextIO

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings
from motadata_actors.actors import AgentLifecycle, Progress, summarize
from motadata_actors.actors._config import codec_limits, nats_transport, require_nats
from motadata_actors.actors._status import gather_status
from motadata_actors.actors._status_events import StatusEvent, StatusFeed
from motadata_actors.codecs import Codecs, KeyRing
from motadata_actors.mailbox import Quotas, check_id, read_quotas, tenant_quotas

__all__ = ("follow_status", "format_status", "show_status", "tenant_quotas_from")


def _check(settings: Settings, tenant: str) -> None:
    check_id(tenant, "tenant")
    require_nats(settings, "status")


def tenant_quotas_from(config: str | None, tenant: str) -> Quotas | None:
    """``tenant``'s quotas from a configuration ``tenants config`` wrote (None: no file).

    Raises:
        ConfigError: the file cannot be read, or has no account for ``tenant``.
    """
    if config is None:
        return None
    try:
        text = Path(config).read_text()
    except OSError as exc:
        raise ConfigError(f"--quotas-from {config!r}: cannot read it ({exc.strerror})") from None
    found = read_quotas(text).get(tenant)
    if found is None:
        raise ConfigError(f"--quotas-from {config!r} has no account for tenant {tenant!r}")
    return found


async def show_status(
    settings: Settings,
    tenant: str,
    wait: float,
    out: TextIO = sys.stdout,
    *,
    quotas: Quotas | None = None,
) -> int:
    """Print every agent of ``tenant`` with its replicas and totals; return how many.

    Then the tenant's use against its quotas; ``quotas`` gives the limits the server does
    not tell a tenant (connections, subscriptions).
    """
    _check(settings, tenant)
    transport = nats_transport(settings, tenant, name="motadata-actors/status")
    await transport.start()
    try:
        reports = await gather_status(transport, tenant, wait)
        backlog = await transport.durable.describe(tenant)
        usage = await tenant_quotas(transport, tenant, known=quotas)
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
    account = f" (account {usage.account})" if usage.account else ""
    print(f"quotas{account}: use / limit", file=out)
    for line in usage.lines():
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


async def follow_status(
    settings: Settings,
    tenant: str,
    *,
    lifecycle: bool = True,
    progress: bool = True,
    out: TextIO = sys.stdout,
) -> None:
    """Print ``tenant``'s status events as they come, one line each, until cancelled.

    Bodies are read by their ``Content-Type`` whatever ``CODEC_TYPE`` says; sealed ones
    with ``SDK_SEAL_KEYS``.
    """
    _check(settings, tenant)
    codecs = Codecs(settings.codec, limits=codec_limits(settings))
    if settings.seal_keys:
        codecs.keys = KeyRing.parse(settings.seal_keys)
    transport = nats_transport(settings, tenant, name="motadata-actors/status-follow")
    await transport.start()
    try:
        feed = StatusFeed(transport, tenant, codecs, lifecycle=lifecycle, progress=progress)
        async with feed:
            print(f"following {feed.subject} (Ctrl-C stops)", file=out, flush=True)
            async for event in feed:
                print(format_status(event), file=out, flush=True)
    finally:
        await transport.aclose()


def format_status(event: StatusEvent) -> str:
    """One line for a status event: time, what, which agent, and the details."""
    when = datetime.datetime.fromtimestamp(event.time, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]
    if isinstance(event, AgentLifecycle):
        where = f"{event.path} on {event.host}:{event.pid}"
        why = f": {event.reason}" if event.reason else ""
        return f"{when} {event.change:<11} {event.agent:<24} {where}{why}"
    assert isinstance(event, Progress)
    amount = ""
    if event.done is not None:
        amount = f"{event.done:g}" + (f"/{event.total:g}" if event.total is not None else "")
        if event.fraction is not None:
            amount += f" ({event.fraction:.0%})"
    value = "" if event.value is None else repr(event.value)
    details = " ".join(part for part in (amount, value) if part)
    return f"{when} {'progress':<11} {event.agent:<24} {details} [{event.correlation_id}]"
