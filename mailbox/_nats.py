"""The NATS transport: nats-py on a real nats-server.

nats-py itself is reached only through :mod:`._natspy` (the one module importing it); this
transport holds its client for the hot path (``publish``, ``request``). Message handling
never happens in nats-py callbacks: a subscription's messages go straight into the actor's
mailbox, which the actor's own task drains. When the mailbox is full nats-py drops the
message (its pending queue *is* the mailbox's); each drop is counted on the mailbox and
logged.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, final

import attrs
import nkeys

from motadata_actors._errors import (
    AskTimeout,
    ConfigError,
    ConnectionLost,
    QuotaExceeded,
    TenantError,
    TransportClosed,
)
from motadata_actors._settings import redact_url, secret_repr, valid_url
from motadata_actors.telemetry import get_logger

from . import _natspy as natspy
from ._deadlines import Deadlines
from ._envelope import check_size
from ._jetstream import JetStreamMailboxes
from ._js_dead_letters import JetStreamDeadLetters
from ._js_reminders import JetStreamReminders
from ._natspy import RawClient, RawSubscription
from ._queue import Mailbox
from ._quotas import quota_exceeded, tenant_of_account
from ._subjects import check_publish_subject, check_subscribe_subject
from ._tls_guard import GuardedTcp, NotEncrypted
from ._transport import Incoming, Subscription

__all__ = ("NatsAuth", "NatsTransport")

log = get_logger("nats")

_DRAIN_TIMEOUT = 5.0
_JS_TIMEOUT = 5.0
_CONNECT_TRIES = 2  # per server, on the first connect (max_reconnect_attempts=1, below)
_RETRY_WAIT = 0.25  # between them
_RECONNECT_WAIT = 1.0  # between reconnect attempts, once connected
# nats-server's words (lowercased) when a quota is used up.
_ACCOUNT_CONNECTIONS = "maximum account active connections exceeded"
_SERVER_CONNECTIONS = "maximum connections exceeded"
_SUBSCRIPTIONS = "maximum subscriptions exceeded"


@final
@attrs.frozen(slots=True)
class NatsAuth:
    """How to authenticate to NATS and secure the connection (secrets never shown).

    Attributes:
        token: a token.
        user: a user name, with ``password``.
        password: the user's password.
        nkey_seed: an nkey seed (``SU...``), or the path of a file holding one.
        creds: a ``.creds`` file (a user JWT and its nkey seed).
        tls_ca: a CA bundle to verify the server with.
        tls_cert: a client certificate, with ``tls_key`` (mutual TLS).
        tls_key: the client certificate's key.
    """

    token: str | None = attrs.field(default=None, repr=secret_repr)
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=secret_repr)
    nkey_seed: str | None = attrs.field(default=None, repr=secret_repr)
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def connect_options(self) -> dict[str, Any]:
        """nats-py ``connect`` keyword arguments.

        Raises:
            ConfigError: a certificate, key or seed that cannot be used (secrets not shown).
        """
        options: dict[str, Any] = {}
        if self.token is not None:
            options["token"] = self.token
        if self.user is not None:
            options["user"] = self.user
            options["password"] = self.password or ""
        if self.nkey_seed is not None:
            seed = self.nkey_seed
            if seed.startswith("S"):
                try:
                    nkeys.from_seed(seed.encode())
                except Exception:  # nkeys raises its own errors and binascii's
                    raise ConfigError(
                        "NATS_NKEY_SEED is not a valid nkey seed (the value is not shown)"
                    ) from None
                options["nkeys_seed_str"] = seed
            else:
                options["nkeys_seed"] = seed
        if self.creds is not None:
            options["user_credentials"] = self.creds
        if self.tls_key and not self.tls_cert:
            raise ConfigError(
                "NATS_TLS_KEY is set without NATS_TLS_CERT: the key belongs to a client "
                "certificate; set both, or neither"
            )
        if self.tls_ca or self.tls_cert:
            try:
                context = ssl.create_default_context(cafile=self.tls_ca)
                if self.tls_cert:
                    context.load_cert_chain(self.tls_cert, self.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot use the TLS files (NATS_TLS_CA={self.tls_ca!r}, NATS_TLS_CERT="
                    f"{self.tls_cert!r}, NATS_TLS_KEY={self.tls_key!r}): {exc}"
                ) from None
            options["tls"] = context
        return options


def _scheme(url: str) -> str:
    """A server URL's scheme, as nats-py reads it (none means ``nats``)."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else "nats"


@final
class NatsTransport:
    """A :class:`~motadata_actors.mailbox.Transport` over nats-py.

    Args:
        servers: one or more ``nats://host:port`` URLs (a cluster's seeds).
        name: the connection name shown in the server's monitoring.
        inbox_prefix: prefix of reply subjects (``_INBOX_<tenant>`` per tenant).
        connect_timeout: seconds to wait for each server on connect.
        reconnect: keep reconnecting after the connection breaks.
        reconnect_buffer: bytes of outgoing messages nats-py holds while reconnecting;
            past it, a send fails with :class:`ConnectionLost`.
        auth: credentials and TLS files.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        name: str | None = None,
        inbox_prefix: str = "_INBOX",
        connect_timeout: float = 2.0,
        reconnect: bool = True,
        reconnect_buffer: int = 2 * 1024 * 1024,
        auth: NatsAuth | None = None,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        self._servers = list(servers)
        self._name = name
        self._inbox_prefix = inbox_prefix
        self._connect_timeout = connect_timeout
        self._reconnect = reconnect
        self._reconnect_buffer = reconnect_buffer
        self._auth = auth or NatsAuth()
        self._connect_errors: list[Exception] = []  # nats-py's reports while connecting
        # (sub | pub, lowercased subject) -> the server's permissions violation
        self._refused: dict[tuple[str, str], str] = {}
        self._dead_letters: JetStreamDeadLetters | None = None
        self._nc: RawClient | None = None
        self._deadlines = Deadlines()
        self._mailboxes: dict[RawSubscription, Mailbox[Incoming]] = {}  # ours, live
        self._durable: JetStreamMailboxes | None = None
        self._js: natspy.JetStream | None = None
        self._buckets: dict[str, natspy.KeyValueBucket] = {}
        self._objects: dict[str, natspy.ObjectBucket] = {}
        self._reminders: JetStreamReminders | None = None
        self._closed = False
        # When an unsubscribe's round trip went unanswered on this connection (the server
        # gone or frozen): for a while, later unsubscribes and the close's drain do not
        # wait for it again, so a system's exit waits one timeout, not one per
        # subscription. Forgotten at the next answered round trip or reconnect.
        self._unanswered: float | None = None
        self.listener: Callable[[str, str, str], None] | None = None
        """Told ``(kind, detail, reply)`` of ``dropped`` (a slow consumer: nats-py dropped
        a message on ``detail``, an ask when ``reply`` is set), ``refused`` (the server
        refused a publish or subscription on ``detail``: permissions), ``disconnected``
        and ``reconnected``."""

    @property
    def client(self) -> RawClient:
        """The nats-py client, for tools that need the raw connection (after :meth:`start`).

        An escape hatch: the transport's own behaviour does not depend on what is done
        with it, and its type is nats-py's, which this package does not promise to keep.
        """
        return self._started()

    def _started(self) -> RawClient:
        if self._nc is None:
            raise TransportClosed("NATS transport is not started")
        return self._nc

    @property
    def durable(self) -> JetStreamMailboxes:
        """Durable mailboxes on JetStream, on this connection (after :meth:`start`)."""
        if self._durable is None:
            self._durable = JetStreamMailboxes(self._jetstream(), self.dead_letters)
        return self._durable

    @property
    def dead_letters(self) -> JetStreamDeadLetters:
        """The tenant's dead letters, kept in a JetStream stream (after :meth:`start`)."""
        if self._dead_letters is None:
            self._dead_letters = JetStreamDeadLetters(self._jetstream(), lambda: self.description)
        return self._dead_letters

    @property
    def reminders(self) -> JetStreamReminders:
        """Reminders as JetStream message schedules (after :meth:`start`)."""
        if self._reminders is None:
            self._reminders = JetStreamReminders(self._jetstream(), self.durable.open_pull)
        return self._reminders

    async def key_value(
        self, bucket: str, *, ttl: float | None = None, max_value_size: int = -1
    ) -> natspy.KeyValueBucket:
        """The JetStream key-value bucket ``bucket``, made when missing (after :meth:`start`).

        Raises:
            ConfigError: it exists with another ``ttl``, or JetStream is off.
        """
        found = self._buckets.get(bucket)
        if found is None:
            found = await self._jetstream().key_value(
                bucket, ttl=ttl, max_value_size=max_value_size
            )
            self._buckets[bucket] = found
        return found

    async def object_store(self, bucket: str, *, ttl: float) -> natspy.ObjectBucket:
        """The JetStream object store ``bucket``, made when missing (after :meth:`start`).

        Raises:
            ConfigError: it exists with another ``ttl``, or JetStream is off.
        """
        found = self._objects.get(bucket)
        if found is None:
            found = self._objects[bucket] = await self._jetstream().object_store(bucket, ttl=ttl)
        return found

    def _jetstream(self) -> natspy.JetStream:
        if self._js is None:
            self._js = natspy.JetStream(self._started(), _JS_TIMEOUT)
        return self._js

    @property
    def max_payload(self) -> int:
        """The server's ``max_payload`` (headers and body together)."""
        return self._started().max_payload

    @property
    def account(self) -> str | None:
        """The NATS account the server put this connection in; None until it said.

        ``TENANT_<tenant>`` with :func:`~motadata_actors.mailbox.server_config`'s.
        """
        return natspy.account(self._nc) if self._nc is not None else None

    def _tenant(self) -> str | None:
        """The tenant of this connection: its account's, else its inbox prefix's."""
        tenant = tenant_of_account(self.account)
        if tenant is None and self._inbox_prefix.startswith("_INBOX_"):
            tenant = self._inbox_prefix.removeprefix("_INBOX_") or None
        return tenant

    @property
    def server_name(self) -> str | None:
        """The ``server_name`` the connected server announced."""
        name = natspy.server_info(self._started()).get("server_name")
        return str(name) if name is not None else None

    @property
    def connected_url(self) -> str | None:
        """The URL of the server currently connected to."""
        url = natspy.connected_url(self._nc) if self._nc is not None else None
        return redact_url(url) if url is not None else None

    @property
    def description(self) -> str:
        """The connected URL, or the configured servers (passwords and tokens left out)."""
        return self.connected_url or ", ".join(redact_url(u) for u in self._servers)

    async def start(self) -> None:
        """Connect to the first reachable server; a no-op when already connected.

        Each server is tried twice, each step of a try (TCP, INFO, TLS, login) bounded by
        ``connect_timeout``, and the whole start by a deadline on top: it always ends.

        Raises:
            ConfigError: a server URL or TLS file that cannot be used (secrets not shown).
            ConnectionLost: no server could be reached; the message says why and, for a
                refused login, an untrusted certificate or a server without TLS when TLS
                is asked for, which setting to check.
            QuotaExceeded: the account (quota ``connections``) or the server has all its
                connections in use.
            TransportClosed: the transport was closed.
        """
        if self._closed:
            raise TransportClosed("NATS transport is closed")
        if self._nc is not None:
            return
        for url in self._servers:
            if not valid_url(url):
                raise ConfigError(
                    f"invalid NATS server URL {redact_url(url)!r}: use nats://host:port (or tls://)"
                )
        options = self._auth.connect_options()
        schemes = {_scheme(u) for u in self._servers}
        guard: GuardedTcp | None = None
        if not schemes & {"ws", "wss"}:
            guard = GuardedTcp(require_tls="tls" in options)
        elif "tls" in options and "ws" in schemes:
            raise ConfigError(
                "NATS_TLS_CA/NATS_TLS_CERT are set but NATS_URL has a ws:// URL, which is "
                "not encrypted: use wss:// URLs"
            )
        nc = natspy.new_client(guard)
        self._connect_errors = []
        deadline = asyncio.timeout(self._connect_deadline())
        try:
            async with deadline:
                await natspy.connect(
                    nc,
                    self._servers,
                    name=self._name,
                    inbox_prefix=self._inbox_prefix,
                    connect_timeout=self._connect_timeout,
                    allow_reconnect=self._reconnect,
                    # Two tries per server on the first connect, so a dead URL fails
                    # fast; once connected, reconnect for ever (set below).
                    max_reconnect_attempts=_CONNECT_TRIES - 1,
                    reconnect_time_wait=_RETRY_WAIT,
                    pending_size=self._reconnect_buffer,
                    on_error=self._on_error,
                    on_slow_consumer=self._on_slow_consumer,
                    on_disconnected=self._on_disconnected,
                    on_reconnected=self._on_reconnected,
                    **options,
                )
        except BaseException as exc:  # cancelled too: the socket must not outlive the start
            await natspy.abandon(nc, guard)
            if not natspy.is_connect_error(exc):
                raise
            quota = self._connections_quota([*self._connect_errors, exc])
            if quota is not None:
                raise quota from None
            raise ConnectionLost(self._connect_failure(exc, nc, deadline.expired())) from None
        self._nc = nc
        if self._reconnect:
            natspy.keep_reconnecting(nc, _RECONNECT_WAIT)
        await self._probe_inbox(nc)

    async def _probe_inbox(self, nc: RawClient) -> None:
        """Fail at once when the user may not receive replies on our inbox prefix.

        Otherwise the first request would wait out its timeout (the server refuses the
        inbox subscription only in an asynchronous error). One subscription and one
        round trip at connect.

        Raises:
            TenantError: the reply inbox is refused (the connection is closed).
        """
        subject = f"{self._inbox_prefix}.probe"
        try:
            sub = await natspy.subscribe_into(nc, subject, None, Mailbox(1))
            await natspy.round_trip(nc)
            await natspy.unsubscribe(sub)
            self._check_inbox_allowed()
        except TenantError:
            self._closed = True
            await natspy.abandon(nc, None)
            raise
        except Exception as exc:
            self._raise(exc, subject)

    def _connections_quota(self, seen: Sequence[BaseException]) -> QuotaExceeded | None:
        """The error for a login refused because the account's connections are all in use."""
        texts = " ".join(str(e).lower() for e in seen)
        if _ACCOUNT_CONNECTIONS in texts:
            return quota_exceeded(
                "connections", "the NATS server refused a new connection", tenant=self._tenant(),
                why="maximum account active connections exceeded",
            )  # fmt: skip
        if _SERVER_CONNECTIONS in texts:
            return QuotaExceeded(
                "connections",
                "the NATS server refused a new connection: all its own connections are in "
                "use (its max_connections, for every account): raise it on the server",
                tenant=None,
            )
        return None

    def _connect_deadline(self) -> float:
        """Seconds a start may take: every try of every server, each step timing out."""
        # A try has up to four steps bounded by connect_timeout in nats-py (TCP, INFO,
        # TLS handshake, PING/PONG), and waits before it when its server was just tried.
        per_try = 4 * self._connect_timeout + _RETRY_WAIT
        return len(self._servers) * _CONNECT_TRIES * per_try + 1.0

    def _tls_in_use(self, nc: RawClient) -> bool:
        """Whether this connection upgrades to TLS (asked for here, or by the server)."""
        asked = any(_scheme(u) == "tls" for u in self._servers) or bool(self._auth.tls_ca)
        return asked or bool(natspy.server_info(nc).get("tls_required"))

    def _connect_failure(self, exc: BaseException, nc: RawClient, expired: bool) -> str:
        """Why connecting failed, with what to set; never a secret.

        Every error of every try counts, not only the last (nor nats-py's ``last_error``,
        which ends as ``NoServersError``): after a refused login's -ERR, nats-py's close of
        that attempt often reports a ``ConnectionResetError`` too (the server reset the
        socket our PING reached after it closed), and which came last varied.
        """
        where = ", ".join(redact_url(u) for u in self._servers)
        seen = [*self._connect_errors, exc]
        texts = [f"{type(e).__name__}: {e}".lower() for e in seen]
        tls = next((e for e in seen if isinstance(e, ssl.SSLError)), None)
        if any(isinstance(e, NotEncrypted) for e in seen):
            required = []
            if any(_scheme(u) == "tls" for u in self._servers):
                required.append("a tls:// URL in NATS_URL")
            if self._auth.tls_ca or self._auth.tls_cert:
                required.append("NATS_TLS_CA/NATS_TLS_CERT")
            if natspy.server_info(nc).get("tls_available"):
                offer = (
                    "the server does not require TLS (it takes plaintext clients too: "
                    "allow_non_tls, and nats-py upgrades only when the server requires it)"
                )
            else:
                offer = "the server does not offer TLS"
            hint = (
                f"{offer}, but TLS is required here (by {' and by '.join(required)}): refused "
                "to connect unencrypted, nothing was sent (for plaintext use a nats:// URL and "
                "no NATS_TLS_* setting)"
            )
        elif tls is not None:
            detail = re.sub(r"^\[\w+: \w+\] |\s*\(_ssl\.c:\d+\)$", "", str(tls.args[-1]))
            if isinstance(tls, ssl.SSLCertVerificationError):
                check = "set NATS_TLS_CA to the CA that signed the server's certificate"
            elif "alert" in detail and ("certificate" in detail or "unknown ca" in detail):
                # The server ended the handshake over our certificate (or the lack of one).
                check = (
                    "set NATS_TLS_CERT/NATS_TLS_KEY to a client certificate the server trusts "
                    "(and NATS_TLS_CA to the CA of the server's)"
                )
            else:
                check = (
                    "set NATS_TLS_CA to the CA that signed the server's certificate (and "
                    "NATS_TLS_CERT/NATS_TLS_KEY if it asks for a client certificate)"
                )
            hint = f"the TLS handshake failed ({detail}): {check}"
        elif any("authoriz" in t or "authentic" in t for t in texts):
            hint = (
                "the server refused the credentials: check NATS_TOKEN, NATS_USER/NATS_PASSWORD, "
                "NATS_NKEY_SEED or NATS_CREDS"
            )
        elif (
            self._tls_in_use(nc)
            and not self._auth.tls_cert
            and any(
                isinstance(e, (BrokenPipeError, ConnectionResetError)) or "eof" in t
                for e, t in zip(seen, texts, strict=True)
            )
        ):
            # TLS 1.3: the client's side of the handshake ends before the server checks
            # the client's certificate; a server that requires one then closes, and the
            # CONNECT we write meets a closed socket before its alert can be read.
            hint = (
                "the server closed the connection right after the TLS handshake, as a server "
                "that requires client certificates does without one: set "
                "NATS_TLS_CERT/NATS_TLS_KEY to a client certificate the server trusts"
            )
        elif expired:
            hint = f"no server answered within {self._connect_deadline():.3g}s"
        else:
            last = next((e for e in reversed(seen) if not natspy.is_no_servers(e)), exc)
            hint = f"{type(last).__name__}: {last}".rstrip(": ")
        return f"cannot connect to NATS at {where}: {hint}"

    async def _on_error(self, exc: Exception) -> None:
        if self._nc is None:  # connecting: start() says why it failed, from all of them
            if len(self._connect_errors) < 64:
                self._connect_errors.append(exc)
            log.info("NATS connect attempt failed: %s: %s", type(exc).__name__, exc)
            return
        text = str(exc)
        if "permissions violation" in text.lower():
            # nats-py reports a refused SUB or PUB only here, later, and lowercased whole
            # (subject included): 'nats: permissions violation for publish to "sdk.a.b"'.
            # So refusals are matched to call sites case-insensitively.
            subject = text.rsplit('"', 2)[-2] if text.count('"') >= 2 else ""
            kind = "sub" if "for subscription" in text.lower() else "pub"
            if len(self._refused) > 256:
                self._refused.clear()
            self._refused[(kind, subject)] = text
            log.warning("the NATS server refused %s", text.removeprefix("nats: "))
            self._tell("refused", subject, "")
            return
        if _SUBSCRIPTIONS in text.lower():
            log.warning("the NATS server refused a subscription: %s (the account's quota of "
                        "subscriptions per connection)", text.removeprefix("nats: "))  # fmt: skip
            return
        if _ACCOUNT_CONNECTIONS in text.lower():
            log.warning("the NATS server refused to reconnect: the account of tenant %r has "
                        "all its connections in use (its quota)", self._tenant())  # fmt: skip
            return
        log.warning("NATS error: %r", exc)

    def _on_slow_consumer(self, sub: RawSubscription, subject: str, reply: str) -> None:
        mailbox = self._mailboxes.get(sub)
        if mailbox is not None:
            mailbox.dropped += 1
        log.warning("slow consumer: dropped a message on %s", subject)
        self._tell("dropped", subject, reply)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            where = ", ".join(redact_url(u) for u in self._servers)
            log.warning("disconnected from NATS at %s", where)
            self._tell("disconnected", where, "")

    def _unanswered_lately(self) -> bool:
        """Whether a round trip went unanswered in the last two drain timeouts."""
        at = self._unanswered
        return at is not None and asyncio.get_running_loop().time() - at < 2 * _DRAIN_TIMEOUT

    async def _on_reconnected(self) -> None:
        self._unanswered = None
        log.info("reconnected to NATS at %s", self.connected_url)
        self._tell("reconnected", self.connected_url or "", "")

    def _tell(self, kind: str, detail: str, reply: str) -> None:
        if self.listener is not None:
            try:
                self.listener(kind, detail, reply)
            except Exception:  # a listener's bug must not break the connection's callbacks
                log.exception("NATS event listener failed on %s", kind)

    def _outgoing(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> RawClient:
        """The client, once ``subject`` and the message's size are checked.

        An oversized message must never reach the wire: the server would drop the whole
        connection.
        """
        nc = self._nc
        if nc is None:
            raise TransportClosed("NATS transport is not started")
        check_publish_subject(subject)
        check_size(data, headers, nc.max_payload)
        return nc

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Publish a message (checked against ``max_payload`` with its headers)."""
        nc = self._outgoing(subject, data, headers)
        try:
            # No headers, not an empty block: nats-py would send one, and the receiver
            # would parse it.
            await nc.publish(subject, data, reply, headers or None)  # type: ignore[arg-type]
        except Exception as exc:
            self._raise(exc, subject)

    async def subscribe(
        self, subject: str, *, queue: str | None = None, mailbox: Mailbox[Incoming]
    ) -> Subscription:
        """Deliver messages matching ``subject`` into ``mailbox``.

        Returns once the server knows the subscription: a request from another connection
        right after finds its responder.

        Raises:
            TenantError: the user may not read ``subject``.
            QuotaExceeded: the connection has as many subscriptions as its account's
                ``subscriptions`` quota allows.
        """
        nc = self._started()
        check_subscribe_subject(subject)
        over_quota = natspy.subscriptions_refused(nc)
        sub = None
        try:
            sub = await natspy.subscribe_into(nc, subject, queue, mailbox)
            await natspy.round_trip(nc)
        except Exception as exc:
            if sub is not None:  # else replayed at a reconnect, with nobody reading it
                await natspy.unsubscribe(sub)
            self._raise(exc, subject)
        self._unanswered = None
        if natspy.subscriptions_refused(nc) > over_quota:
            await natspy.unsubscribe(sub)
            raise quota_exceeded(
                "subscriptions", f"the NATS server refused a subscription to {subject!r}",
                tenant=self._tenant(), why="maximum subscriptions exceeded, per connection",
            )  # fmt: skip
        refused = self._refused.pop(("sub", subject.lower()), None)
        if refused is not None:
            await natspy.unsubscribe(sub)
            raise TenantError(
                f"the NATS server refused a subscription to {subject!r} (permissions "
                "violation): this connection's user may not read it; each tenant's user may "
                "use only its own subjects"
            )
        self._mailboxes[sub] = mailbox

        async def unsubscribe() -> None:
            if self._mailboxes.pop(sub, None) is None:
                return  # the transport closed it already
            where = natspy.state(nc)
            if where in ("closed", "draining"):
                return
            if where == "reconnecting" or self._unanswered_lately():  # nothing can be kept
                await natspy.unsubscribe(sub)
                return
            reconnects = natspy.reconnects(nc)
            try:
                async with asyncio.timeout(_DRAIN_TIMEOUT):
                    await natspy.unsubscribe_keeping(nc, [sub])
            except Exception as exc:
                if isinstance(exc, TimeoutError) and natspy.reconnects(nc) == reconnects:
                    self._unanswered = asyncio.get_running_loop().time()
                log.debug("unsubscribe from %s: %r", subject, exc)
            else:
                self._unanswered = None

        return Subscription(subject, queue, mailbox, unsubscribe)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> Incoming:
        """Publish with a reply inbox (shared, muxed by nats-py) and wait for the reply."""
        nc = self._outgoing(subject, data, headers)
        try:
            return await natspy.request(
                nc, subject, data, headers or None, timeout, self._deadlines
            )
        except AskTimeout:
            if self._refused.pop(("pub", subject.lower()), None) is not None:
                raise TenantError(
                    f"the NATS server refused publishing to {subject!r} (permissions "
                    "violation): this connection's user may not write it"
                ) from None
            raise AskTimeout(f"no reply on {subject!r} within {timeout:.3g}s") from None
        except Exception as exc:
            self._raise(exc, subject)

    def _raise(self, exc: Exception, subject: str) -> NoReturn:
        """Raise our error for nats-py's ``exc`` (anything else as it is)."""
        nc = self._nc
        limit = nc.max_payload if nc is not None else 0
        error = natspy.translate(exc, subject, closed=self._closed, max_payload=limit)
        if error is exc:
            raise exc
        raise error from exc

    def _check_inbox_allowed(self) -> None:
        """Raise if the server refused our reply inbox: no request can ever be answered.

        Raises:
            TenantError: the user may not subscribe to ``<inbox_prefix>.>`` (credentials of
                another tenant, most likely).
        """
        prefix = self._inbox_prefix.lower() + "."
        if any(kind == "sub" and subject.startswith(prefix) for kind, subject in self._refused):
            raise TenantError(
                f"the NATS server refused this connection's reply inbox {self._inbox_prefix}.>"
                " (permissions violation): the credentials belong to another tenant, or the "
                "user may not receive replies"
            )

    async def aclose(self) -> None:
        """Stop the durable side, drain (publishes flushed, deliveries kept), close.

        The drain waits 5 s at most, and not at all when the server left a round trip
        unanswered moments ago (it is gone or frozen). Idempotent.
        """
        if self._closed or self._nc is None:
            self._closed = True
            return
        self._closed = True
        if self._durable is not None:
            await self._durable.aclose()
        subs = list(self._mailboxes)
        self._mailboxes.clear()
        try:
            drain = 0.0 if self._unanswered_lately() else _DRAIN_TIMEOUT
            await natspy.close(self._nc, subs, drain)
        finally:  # nats-py leaves a request waiting to its timeout; an ask is told now
            self._deadlines.clear(TransportClosed("NATS transport is closed"))
