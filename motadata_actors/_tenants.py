"""``python -m motadata_actors tenants config``: a nats-server configuration for tenants."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from motadata_actors.mailbox import TenantUser, server_config

__all__ = ("write_tenant_config",)


def write_tenant_config(tenants: Sequence[str], out: Path, report: TextIO = sys.stdout) -> None:
    """Write a server configuration with one account and a fresh password per tenant.

    The configuration goes to ``out`` (mode 0600: it holds the passwords); each tenant's
    connection settings are printed, for its processes' environment.
    """
    users = [TenantUser(t, password=secrets.token_urlsafe(24)) for t in tenants]
    out.write_text(server_config(users))
    out.chmod(0o600)
    print(f"wrote {out}: start nats-server -c {out} --jetstream --store_dir <dir>", file=report)
    for user in users:
        print(f"\n# tenant {user.tenant}", file=report)
        print(f"export NATS_USER={user.tenant} NATS_PASSWORD={user.password}", file=report)
