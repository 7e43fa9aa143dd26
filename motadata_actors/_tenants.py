"""``python -m motadata_actors tenants config``: a nats-server configuration for tenants."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import attrs

from motadata_actors._errors import ConfigError
from motadata_actors.mailbox import Quotas, TenantUser, check_id, parse_quotas, server_config

__all__ = ("parse_tenant_quotas", "write_tenant_config")


def parse_tenant_quotas(specs: Sequence[str], tenants: Sequence[str]) -> dict[str, Quotas]:
    """Each tenant's quotas from ``--quota`` values: ``[TENANT:]KEY=VALUE[,KEY=VALUE...]``.

    Without a tenant a value applies to every tenant; a tenant's own values win over those,
    whatever their order.

    Raises:
        ConfigError: a tenant not among ``tenants``, or a quota that cannot be used.
    """
    shared, own = Quotas(), dict.fromkeys(tenants, Quotas())
    for spec in specs:
        tenant, sep, text = spec.rpartition(":")
        if not sep:
            shared = shared.updated(parse_quotas(text))
            continue
        check_id(tenant, "tenant")
        if tenant not in own:
            raise ConfigError(
                f"--quota {spec!r} names tenant {tenant!r}, which is not given with --tenant"
            )
        own[tenant] = own[tenant].updated(parse_quotas(text))
    return {tenant: shared.updated(q) for tenant, q in own.items()}


def write_tenant_config(
    tenants: Sequence[str],
    out: Path,
    report: TextIO | None = None,
    quotas: Mapping[str, Quotas] | None = None,
) -> None:
    """Write a server configuration with one account and a fresh password per tenant.

    The configuration goes to ``out`` (mode 0600: it holds the passwords); each tenant's
    connection settings are printed, for its processes' environment. ``quotas`` limits
    the tenants' accounts (:func:`parse_tenant_quotas` reads them from the command line).
    """
    report = report or sys.stdout  # read now: a test or caller may have replaced it
    quotas = quotas or {}
    users = [
        TenantUser(t, password=secrets.token_urlsafe(24), quotas=quotas.get(t)) for t in tenants
    ]
    text = server_config(users)
    # Private before a byte is written: it holds the passwords.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote {out}: start nats-server -c {out} --jetstream --store_dir <dir>", file=report)
    for user in users:
        print(f"\n# tenant {user.tenant}", file=report)
        limits = attrs.asdict(user.quotas) if user.quotas is not None else {}
        if any(v is not None for v in limits.values()):
            shown = ", ".join(f"{k}={v}" for k, v in limits.items() if v is not None)
            print(f"# quotas: {shown}", file=report)
        print(f"export NATS_USER={user.tenant} NATS_PASSWORD={user.password}", file=report)
