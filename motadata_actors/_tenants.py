"""``python -m motadata_actors tenants config``: a nats-server configuration for tenants."""

from __future__ import annotations

import os
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
    text = server_config(users)
    # Private before a byte is written: it holds the passwords.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote {out}: start nats-server -c {out} --jetstream --store_dir <dir>", file=report)
    for user in users:
        print(f"\n# tenant {user.tenant}", file=report)
        print(f"export NATS_USER={user.tenant} NATS_PASSWORD={user.password}", file=report)
