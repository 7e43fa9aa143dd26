"""nats-server configuration that confines each tenant to its own subjects.

Each tenant gets its own NATS *account* (subjects, JetStream streams and their API are
per account, so tenant A cannot even name tenant B's streams) and, inside it, a user whose
publish and subscribe permissions allow only that tenant's subjects: a bug or a hostile
client holding one tenant's credentials can neither read nor forge another's messages,
and gets a permissions violation for trying.

One shared account with per-user permissions is *not* isolating once durable mailboxes
are used: the JetStream API rights they need would let any tenant read or delete another's
streams. This module therefore only writes the per-account shape.

In production use the same shape with JWTs (``nsc add account``, ``nsc add user`` with
``--allow-pub``/``--allow-sub`` set to :func:`tenant_permissions`, a resolver in the server
configuration) and give each process its tenant's ``.creds`` file in ``NATS_CREDS``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import final

import attrs

from motadata_actors._errors import ConfigError
from motadata_actors._settings import secret_repr

from ._quotas import Quotas
from ._subjects import check_id, inbox_prefix, tenant_agents

__all__ = ("TenantUser", "server_config", "tenant_permissions")


@final
@attrs.frozen(slots=True)
class TenantUser:
    """The NATS user one tenant's processes connect as.

    Give a password or the public key of a user nkey (``U...``); the secret half (the
    password, or the seed) goes to the processes as ``NATS_PASSWORD`` or ``NATS_NKEY_SEED``.

    Attributes:
        tenant: the tenant id.
        user: the user name (the tenant id when omitted).
        password: the user's password.
        nkey: the user's public nkey, instead of a password.
        quotas: the limits of the tenant's account (None: none).
    """

    tenant: str
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=secret_repr)
    nkey: str | None = None
    quotas: Quotas | None = None

    def __attrs_post_init__(self) -> None:
        check_id(self.tenant, "tenant")
        if (self.password is None) == (self.nkey is None):
            raise ConfigError(f"tenant {self.tenant!r}: give a password or an nkey (one of them)")
        if self.nkey is not None and not self.nkey.startswith("U"):
            raise ConfigError(f"tenant {self.tenant!r}: a user nkey is a public key starting U")


def tenant_permissions(tenant: str) -> dict[str, list[str]]:
    """The subjects a tenant's user may publish and subscribe to, inside its own account.

    Every subject kind of the tenant: agents (``sdk.agent.<from>.<to>.<tenant>``), events,
    workflows, dead letters, system/status requests, status events (life cycles and
    progress), reminders, termination notices of watched agents, the tenant's reply inbox
    prefix, the key-value buckets of keyed agents (leases, nodes, state) and of the schema
    registry, the object store of large bodies (claim checks), the JetStream API, acks
    and delivery advisories its durable mailboxes use, and the server's report of the
    account's own connections (``$SYS.REQ.ACCOUNT.PING.CONNZ``, answered for that account
    only: the use shown against its quotas).
    """
    check_id(tenant, "tenant")
    own = [
        tenant_agents(tenant),
        f"sdk.events.*.{tenant}",
        f"sdk.workflow.*.{tenant}",
        f"sdk.dlq.*.{tenant}",
        f"sdk.system.{tenant}",
        f"sdk.system.{tenant}.>",
        f"sdk.status.*.{tenant}",
        f"sdk.reminder.*.*.{tenant}",
        f"sdk.reminded.{tenant}",
        f"sdk.watch.*.{tenant}",
        f"{inbox_prefix(tenant)}.>",
    ]
    buckets = [
        f"$KV.SDK_{purpose}_{tenant}.>" for purpose in ("NODES", "LEASES", "STATE", "SCHEMAS")
    ]
    buckets.append(f"$O.SDK_OBJECTS_{tenant}.>")
    return {
        "publish": [*own, *buckets, "$JS.API.>", "$JS.ACK.>", "$SYS.REQ.ACCOUNT.PING.CONNZ"],
        "subscribe": [*own, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"],
    }


def _account(tenant: str) -> str:
    return f"TENANT_{tenant}"


def server_config(users: Sequence[TenantUser], *, jetstream: bool = True) -> str:
    """A nats-server configuration: one account per tenant, one confined user in each.

    Pass the result to ``nats-server -c`` (with ``--jetstream --store_dir ...`` or a
    ``jetstream`` block of your own for durable mailboxes). Strings are written in JSON
    quoting, which the server's configuration format accepts. A user's
    :class:`~motadata_actors.mailbox.Quotas` become its account's ``limits`` and
    ``jetstream`` blocks.

    Raises:
        ConfigError: no users, two users for one tenant, a user without a secret, or
            JetStream quotas with ``jetstream=False``.
    """
    if not users:
        raise ConfigError("server_config needs at least one tenant user")
    tenants = [u.tenant for u in users]
    if len(set(tenants)) != len(tenants):
        raise ConfigError(f"one user per tenant: {sorted(tenants)}")
    q = json.dumps
    lines = ["accounts {"]
    for u in users:
        perms = tenant_permissions(u.tenant)
        secret = f"password: {q(u.password)}" if u.password is not None else f"nkey: {q(u.nkey)}"
        name = f"user: {q(u.user or u.tenant)}, " if u.password is not None else ""
        quotas = u.quotas or Quotas()
        if quotas.jetstream and not jetstream:
            raise ConfigError(f"tenant {u.tenant!r}: JetStream quotas need jetstream=True")
        blocks = quotas.server_blocks()
        lines += [
            f"  {_account(u.tenant)} {{",
            (
                f"    jetstream: {q(blocks['jetstream'])}"
                if "jetstream" in blocks
                else "    jetstream: enabled"
                if jetstream
                else ""
            ),
            f"    limits: {q(blocks['limits'])}" if "limits" in blocks else "",
            "    users: [",
            f"      {{{name}{secret}, permissions: {{",
            f"        publish: {{allow: {q(perms['publish'])}}}",
            f"        subscribe: {{allow: {q(perms['subscribe'])}}}",
            "      }}",
            "    ]",
            "  }",
        ]
    lines.append("}")
    return "\n".join(line for line in lines if line) + "\n"
