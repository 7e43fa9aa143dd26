"""Quotas per tenant: the limits of a tenant's NATS account, and its use against them.

What nats-server enforces per account in a configuration file (no JWTs), read from its
source (``server/opts.go``: ``parseAccountLimits``, ``parseJetStreamForAccount``) and
tried against the server:

* ``limits {max_connections, max_subscriptions, max_payload}``: connections of the
  account (a connection past it gets ``-ERR 'maximum account active connections
  exceeded'`` and is closed); subscriptions *per connection* (a SUB past it gets ``-ERR
  'maximum subscriptions exceeded'``, the connection stays); the largest message (the
  server sends it in the INFO after the login; past it, ``-ERR 'Maximum Payload
  Violation'`` and the connection is closed, so our size check uses it first).
* ``jetstream {max_mem, max_file, max_streams, max_consumers}``: JetStream's API
  refuses with ``err_code`` 10028 / 10047 (a stream's reservation does not fit), 10002
  (a message would pass memory or storage), 10027, 10026.

What a tenant's own user can read back: JetStream use and limits (``$JS.API.INFO``), and
its account's connections with their subscriptions (``$SYS.REQ.ACCOUNT.PING.CONNZ``,
imported into every account by the server, answered for that account only). The server
tells no tenant its connection and subscription limits: those come from the
configuration (:func:`read_quotas`) when the caller has it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, final

import attrs

from motadata_actors._errors import (
    ActorsError,
    ConfigError,
    QuotaExceeded,
)

from ._transport import Transport

__all__ = (
    "QuotaUsage",
    "QuotaUse",
    "Quotas",
    "parse_quotas",
    "parse_size",
    "quota_exceeded",
    "read_quotas",
    "tenant_of_account",
    "tenant_quotas",
)

_SIZE_UNITS: Final = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
_UNLIMITED: Final = ("unlimited", "none", "-1")

# Our field -> (the server's name in the configuration, the block it goes in).
_SERVER_NAMES: Final = {
    "connections": ("max_connections", "limits"),
    "subscriptions": ("max_subscriptions", "limits"),
    "payload": ("max_payload", "limits"),
    "memory": ("max_mem", "jetstream"),
    "storage": ("max_file", "jetstream"),
    "streams": ("max_streams", "jetstream"),
    "consumers": ("max_consumers", "jetstream"),
}
_SIZES: Final = frozenset({"payload", "memory", "storage"})
# The name an error and a status line give each quota.
QUOTA_NAMES: Final = {
    "connections": "connections",
    "subscriptions": "subscriptions",
    "payload": "payload",
    "memory": "jetstream memory",
    "storage": "jetstream storage",
    "streams": "jetstream streams",
    "consumers": "jetstream consumers",
}
_KEYS: Final = {v: k for k, v in QUOTA_NAMES.items()}


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from ``text``: a whole number, or one with a unit (``KB``, ``MiB``, ``GiB``...).

    ``KB``/``MB``/``GB``/``TB`` are powers of 1000, ``KiB``/``MiB``/``GiB``/``TiB`` of 1024.

    Raises:
        ConfigError: not a size (the message names ``what`` and the accepted forms).
    """
    found = _SIZE.fullmatch(text)
    unit = found[2].lower() if found else ""
    if found is None or unit not in ("", *_SIZE_UNITS):
        raise ConfigError(
            f"{what}: {text!r} is not a size; give bytes or a number with a unit "
            "(B, KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024)"
        )
    value = float(found[1]) * _SIZE_UNITS.get(unit, 1)
    if value != int(value):
        raise ConfigError(f"{what}: {text!r} is not a whole number of bytes")
    return int(value)


def _count(value: int | None, name: str, least: int) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"quota {name}: {value!r} is not a whole number")
    if value is not None and value < least:
        raise ConfigError(f"quota {name}: {value} is below {least} (leave it out for no limit)")
    return value


def _at_least(least: int) -> Any:
    def check(instance: Quotas, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        _count(value, attribute.name, least)

    return check


@final
@attrs.frozen(slots=True)
class Quotas:
    """The limits of one tenant's NATS account; None leaves one unlimited.

    Written into the account by :func:`~motadata_actors.mailbox.server_config` (give it
    to a :class:`~motadata_actors.mailbox.TenantUser`), enforced by nats-server.

    Attributes:
        connections: connections of the account at once (every process holds one).
        subscriptions: subscriptions per connection (the server counts them per
            connection: each agent, each durable mailbox and the reply inbox take one).
        payload: the largest message in bytes, headers and body together (at most the
            server's own ``max_payload``, 1 MiB unless set).
        memory: bytes the account's JetStream keeps in memory.
        storage: bytes the account's JetStream keeps on disk (durable mailboxes, dead
            letters, key-value buckets, stored large bodies).
        streams: JetStream streams of the account.
        consumers: JetStream consumers of the account (one per durable agent, and more).
    """

    connections: int | None = attrs.field(default=None, validator=_at_least(1))
    subscriptions: int | None = attrs.field(default=None, validator=_at_least(1))
    payload: int | None = attrs.field(default=None, validator=_at_least(1))
    memory: int | None = attrs.field(default=None, validator=_at_least(0))
    storage: int | None = attrs.field(default=None, validator=_at_least(0))
    streams: int | None = attrs.field(default=None, validator=_at_least(1))
    consumers: int | None = attrs.field(default=None, validator=_at_least(1))

    @property
    def jetstream(self) -> bool:
        """Whether any JetStream limit is set."""
        names = ("memory", "storage", "streams", "consumers")
        return any(getattr(self, n) is not None for n in names)

    def updated(self, other: Quotas) -> Quotas:
        """These quotas with every limit ``other`` sets taken from it."""
        changes = {n: v for n, v in attrs.asdict(other).items() if v is not None}
        return attrs.evolve(self, **changes)

    def server_blocks(self) -> dict[str, dict[str, int]]:
        """The account's ``limits`` and ``jetstream`` blocks, in nats-server's names."""
        blocks: dict[str, dict[str, int]] = {}
        for name, (key, block) in _SERVER_NAMES.items():
            value = getattr(self, name)
            if value is not None:
                blocks.setdefault(block, {})[key] = value
        return blocks


def parse_quotas(text: str) -> Quotas:
    """Quotas from ``key=value,key=value`` (``connections=50,storage=1GiB``).

    Keys are :class:`Quotas`' fields; sizes (payload, memory, storage) take units as in
    :func:`parse_size`; ``unlimited`` leaves one unlimited.

    Raises:
        ConfigError: an unknown key, a repeated one, or a value that cannot be used.
    """
    values: dict[str, int | None] = {}
    for part in text.split(","):
        key, sep, raw = (s.strip() for s in part.partition("="))
        if not sep or not key or not raw:
            raise ConfigError(f"quota {part.strip()!r}: write key=value, e.g. connections=50")
        if key not in _SERVER_NAMES:
            raise ConfigError(f"unknown quota {key!r}: use one of {', '.join(_SERVER_NAMES)}")
        if key in values:
            raise ConfigError(f"quota {key!r} is given twice")
        if raw.lower() in _UNLIMITED:
            values[key] = None
        elif key in _SIZES:
            values[key] = parse_size(raw, f"quota {key}")
        elif raw.isdigit():
            values[key] = int(raw)
        else:
            raise ConfigError(f"quota {key}: {raw!r} is not a whole number (or 'unlimited')")
    return Quotas(**values)


def read_quotas(config: str) -> dict[str, Quotas]:
    """Each tenant's quotas, from a configuration :func:`server_config` wrote.

    Only the shape it writes is read (one ``TENANT_<tenant> {`` block per tenant, its
    ``limits`` and ``jetstream`` lines in JSON): edit quotas by writing the file again.
    """
    found: dict[str, Quotas] = {}
    tenant: str | None = None
    by_server = {v: k for k, v in _SERVER_NAMES.items()}
    for line in config.splitlines():
        head = re.fullmatch(r"\s*TENANT_(\S+) \{\s*", line)
        if head:
            tenant = head[1]
            found[tenant] = Quotas()
            continue
        block = re.fullmatch(r"\s*(limits|jetstream): (\{.*\})\s*", line)
        if tenant is not None and block:
            values = {
                by_server[(k, block[1])]: v
                for k, v in json.loads(block[2]).items()
                if (k, block[1]) in by_server
            }
            found[tenant] = found[tenant].updated(Quotas(**values))
    return found


def tenant_of_account(account: object) -> str | None:
    """The tenant of a NATS account named as :func:`server_config` names them, or None."""
    if isinstance(account, str) and account.startswith("TENANT_"):
        return account.removeprefix("TENANT_") or None
    return None


def format_amount(value: int | None, unit: Literal["count", "bytes"]) -> str:
    """A quota's amount for people: ``-`` when unknown, sizes in KiB, MiB, GiB."""
    if value is None:
        return "-"
    if unit == "count":
        return str(value)
    size = float(value)
    for name in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or name == "GiB":
            return f"{size:.0f} {name}" if name == "B" else f"{size:.1f} {name}"
        size /= 1024
    raise AssertionError("unreachable")


def quota_exceeded(
    quota: str, what: str, *, tenant: str | None, limit: int | None = None, why: str = ""
) -> QuotaExceeded:
    """The :class:`QuotaExceeded` for ``quota`` (``jetstream storage``...), saying how to raise it.

    ``what`` is what was refused (``cannot store a message on 'x'``); ``why`` the server's
    words, when they add something.
    """
    key = _KEYS.get(quota, quota)
    unit: Literal["count", "bytes"] = "bytes" if key in _SIZES else "count"
    of = f" ({format_amount(limit, unit)})" if limit is not None else ""
    whose = f"tenant {tenant!r}" if tenant else "this user's account"
    said = f" ({why})" if why else ""
    hint = (
        f"raise it (python -m motadata_actors tenants config --quota {tenant or '<tenant>'}:"
        f"{key}=..., then reload nats-server)"
    )
    return QuotaExceeded(
        quota,
        f"{what}: the {quota} quota{of} of {whose} is used up{said}; {hint}, or use less",
        tenant=tenant,
        limit=limit,
    )


@final
@attrs.frozen(slots=True)
class QuotaUse:
    """One quota: how much is used and the limit.

    Attributes:
        quota: ``connections``, ``subscriptions``, ``payload``, ``jetstream memory``,
            ``jetstream storage``, ``jetstream streams`` or ``jetstream consumers``.
        used: the use now; None when it cannot be seen (or, for ``payload``, has none).
        limit: the limit; None when unlimited or not visible (``note`` says which).
        unit: ``count`` or ``bytes``.
        note: how to read the line (per connection, where the limit comes from...).
    """

    quota: str
    used: int | None
    limit: int | None
    unit: Literal["count", "bytes"]
    note: str = ""

    @property
    def fraction(self) -> float | None:
        """``used / limit``, when both are known."""
        if self.used is None or not self.limit:
            return None
        return self.used / self.limit


@final
@attrs.frozen(slots=True)
class QuotaUsage:
    """A tenant's use against its quotas, as :func:`tenant_quotas` reads it.

    Attributes:
        tenant: the tenant.
        account: its NATS account, as the server named it (None: not told).
        quotas: one :class:`QuotaUse` per quota, in a fixed order.
    """

    tenant: str
    account: str | None
    quotas: tuple[QuotaUse, ...]

    def __getitem__(self, quota: str) -> QuotaUse:
        """The :class:`QuotaUse` named ``quota`` (``connections``, ``jetstream storage``...)."""
        for use in self.quotas:
            if use.quota == quota:
                return use
        raise KeyError(quota)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for JSON): ``{"tenant", "account", "quotas": [{...}, ...]}``."""
        return {
            "tenant": self.tenant,
            "account": self.account,
            "quotas": [attrs.asdict(q) for q in self.quotas],
        }

    def shown(self) -> list[dict[str, str]]:
        """One row per quota for people: ``quota``, ``used``, ``limit``, ``share``, ``note``.

        Amounts in their units (``2.6 KiB``); a limit the server does not tell is ``?``.
        """
        out = []
        for q in self.quotas:
            limit = format_amount(q.limit, q.unit) if q.limit is not None else "unlimited"
            if q.limit is None and _NOT_TOLD in q.note:
                limit = "?"
            share = f"{q.fraction:.0%}" if q.fraction is not None else ""
            used = format_amount(q.used, q.unit)
            out.append({"quota": q.quota, "used": used, "limit": limit, "share": share,
                        "note": q.note})  # fmt: skip
        return out

    def lines(self) -> list[str]:
        """One line per quota for people: name, use / limit, note."""
        out = []
        for row in self.shown():
            share = f" ({row['share']})" if row["share"] else ""
            note = f"  {row['note']}" if row["note"] else ""
            line = f"  {row['quota']:<20} {row['used']:>10} / {row['limit']:<10}{share}{note}"
            out.append(line.rstrip())
        return out


async def _ask(transport: Transport, subject: str, timeout: float) -> Mapping[str, Any] | None:
    """The JSON answer on ``subject``, or None when it cannot be had (refused, none)."""
    try:
        reply = await transport.request(subject, b"", timeout=timeout)
        answer = json.loads(bytes(reply.data) or b"{}")
    except (ActorsError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


_NOT_TOLD: Final = "limit not told to a tenant by the server"
_JS_OFF: Final = "JetStream off for this account"


async def tenant_quotas(
    transport: Transport, tenant: str, *, known: Quotas | None = None, timeout: float = 1.0
) -> QuotaUsage:
    """Read the tenant's use against its quotas, with the tenant's own credentials.

    Asks the server for the account's connections and their subscriptions
    (``$SYS.REQ.ACCOUNT.PING.CONNZ``) and JetStream's use and limits (``$JS.API.INFO``);
    the payload limit is the one the server gave this connection. nats-server tells no
    tenant its connection and subscription limits: ``known`` (e.g. from
    :func:`read_quotas`) fills them in. In a cluster the connection counts are those of
    the server that answered first.

    Never raises for what it cannot see: that quota's ``used`` or ``limit`` is None and its
    ``note`` says why.
    """
    known = known or Quotas()
    connz = await _ask(transport, "$SYS.REQ.ACCOUNT.PING.CONNZ", timeout)
    data = connz.get("data") if connz else None
    conns, subs, note = None, None, "the account's connections cannot be read here"
    if isinstance(data, dict):
        rows = data.get("connections") or []
        conns = int(data.get("total", len(rows)))
        subs = max((int(r.get("subscriptions", 0)) for r in rows), default=0)
        note = ""
    items = [
        QuotaUse("connections", conns, known.connections, "count",
                 note or ("" if known.connections else _NOT_TOLD)),
        QuotaUse("subscriptions", subs, known.subscriptions, "count",
                 note or "most on one connection (the limit is per connection)"
                 + ("" if known.subscriptions else f"; {_NOT_TOLD}")),
        QuotaUse("payload", None, transport.max_payload, "bytes", "per message"),
    ]  # fmt: skip
    info = await _ask(transport, "$JS.API.INFO", timeout)
    account = None
    server = getattr(transport, "account", None)
    if isinstance(server, str):
        account = server
    if info is None or "error" in info:
        why = _JS_OFF if info is not None else "JetStream does not answer"
        items += [QuotaUse(QUOTA_NAMES[n], None, None, "bytes" if n in _SIZES else "count", why)
                  for n in ("memory", "storage", "streams", "consumers")]  # fmt: skip
    else:
        limits = info.get("limits") or {}

        def limit(key: str) -> int | None:
            value = limits.get(key, -1)
            return None if value is None or value < 0 else int(value)

        items += [
            QuotaUse("jetstream memory", info.get("memory"), limit("max_memory"), "bytes"),
            QuotaUse("jetstream storage", info.get("storage"), limit("max_storage"), "bytes"),
            QuotaUse("jetstream streams", info.get("streams"), limit("max_streams"), "count"),
            QuotaUse("jetstream consumers", info.get("consumers"), limit("max_consumers"),
                     "count"),
        ]  # fmt: skip
    return QuotaUsage(tenant, account, tuple(items))
