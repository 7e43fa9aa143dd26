"""The NATS transport: nats-py on a real nats-server.

With :mod:`._jetstream` (its durable mailboxes), the only modules that import nats.

nats-py's exceptions are translated here and never leak. Message handling never
happens in nats-py callbacks: the subscription callback only hands the message to
the actor's mailbox, which the actor's own task drains. When the mailbox is full
the callback waits, nats-py's pending queue (bounded to the same size) fills, and
past that nats-py drops messages; each drop is counted on the mailbox and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, final
from urllib.parse import ParseResult

import attrs
import nats
import nats.errors
import nats.js.errors
import nkeys
from nats.aio.client import Client
from nats.aio.transport import TcpTransport

from motadata_actors._errors import (
    AskTimeout,
    ConfigError,
    ConnectionLost,
    MessageTooLarge,
    NoResponders,
    SubjectError,
    TenantError,
    TransportClosed,
)
from motadata_actors._settings import redact_url, secret_repr, valid_url
from motadata_actors.telemetry import get_logger

from ._envelope import check_size
from ._jetstream import JetStreamDeadLetters, JetStreamMailboxes
from ._queue import Mailbox
from ._subjects import check_publish_subject, check_subscribe_subject
from ._transport import Incoming, Subscription

__all__ = ("NatsAuth", "NatsTransport")

log = get_logger("nats")

_DRAIN_TIMEOUT = 5.0
_JS_TIMEOUT = 5.0
_CONNECT_TRIES = 2  # per server, on the first connect (max_reconnect_attempts=1, below)
_RETRY_WAIT = 0.25  # between them


class _NotEncrypted(nats.errors.Error):
    """TLS was asked for, and this connection is not encrypted: nothing is sent over it."""

    def __str__(self) -> str:
        return "nats: TLS is required and the server did not upgrade: closed, nothing sent"


@final
class _TcpTransport(TcpTransport):
    """nats-py's TCP transport, with two faults of nats-py 2.16 fixed.

    nats-py takes a transport object of its ``Transport`` interface; it makes a
    ``TcpTransport`` itself unless one is set (``Client._transport``) before ``connect``,
    and keeps it for every attempt and reconnect. :meth:`NatsTransport.start` sets this one.

    1. A failed TLS upgrade must not hang the close that follows. nats-py connects in
       plaintext, reads INFO, then upgrades with ``loop.start_tls``, which moves the socket
       to an SSL protocol. When the handshake fails (an untrusted certificate), asyncio
       closes the socket and tells only the SSL protocol; the plaintext stream writer
       nats-py still holds never learns, so its ``wait_closed()`` waits for ever. nats-py
       awaits exactly that in ``Client._close`` after every failed attempt (and in
       ``close()``): entering a system never returned. Here, after a failed upgrade the
       socket is known closed, and ``wait_closed`` does not wait.
    2. TLS, once asked for, is never given up. nats-py upgrades only when the server's
       INFO says ``tls_required``; a ``tls://`` URL or a TLS context does not make it
       insist, so a server without TLS (or a man in the middle posing as one) got the
       CONNECT, credentials included, in plaintext. nats-py has no public option to refuse
       (``tls_handshake_first`` needs the server to expect it). The narrowest reliable
       place is here: nats-py writes nothing before its CONNECT, and writes only through
       this object, so the first write over a connection that should be encrypted and is
       not closes the socket and raises instead: the CONNECT, the first byte ever sent,
       never leaves. nats-py counts the error as a failed attempt, like a refused login.
    """

    def __init__(self, *, require_tls: bool) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # nats-py's transports are untyped
        self._require_tls = require_tls  # TLS settings: every server, discovered ones too
        self._wants_tls = require_tls  # this connection's: also a tls:// URL
        self._encrypted = False
        self._upgrade_failed = False
        self._refused = False

    async def connect(self, uri: ParseResult, buffer_size: int, connect_timeout: int) -> None:
        # nats-py reuses this object for the next attempt without closing the last one's
        # streams when the attempt failed while reconnecting: close them first.
        if self._io_writer is not None:
            self._io_writer.close()
        self._wants_tls = self._require_tls or uri.scheme == "tls"
        self._encrypted = self._upgrade_failed = self._refused = False
        await super().connect(uri, buffer_size, connect_timeout)

    async def connect_tls(
        self,
        uri: str | ParseResult,
        ssl_context: ssl.SSLContext,
        buffer_size: int,
        connect_timeout: int,
    ) -> None:
        try:
            await super().connect_tls(uri, ssl_context, buffer_size, connect_timeout)
        except BaseException:
            # start_tls closed the socket (on failure, timeout or cancellation alike).
            self._upgrade_failed = True
            raise
        self._encrypted = True

    def _check_encrypted(self) -> bool:
        """Whether to write; raises on the first write that would go out unencrypted."""
        if self._refused:
            return False  # the socket is closed: nothing can go out, and nothing must
        if self._wants_tls and not self._encrypted:
            self._refused = True
            if self._io_writer is not None:
                self._io_writer.transport.abort()
            raise _NotEncrypted
        return True

    def write(self, payload: bytes) -> None:
        if self._check_encrypted() and self._io_writer is not None:
            self._io_writer.write(payload)

    def writelines(self, payload: list[bytes]) -> None:
        if self._check_encrypted() and self._io_writer is not None:
            self._io_writer.writelines(payload)

    def __bool__(self) -> bool:
        # nats-py makes a transport of its own when the one it has is falsy, and
        # TcpTransport is falsy until connected: this one must stay.
        return True

    async def wait_closed(self) -> None:
        if self._upgrade_failed:
            return  # the socket is closed; the plaintext writer would never hear of it
        if self._io_writer is not None:
            await self._io_writer.wait_closed()


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
        self._nc: Client | None = None
        self._mailboxes: dict[int, Mailbox[Incoming]] = {}
        self._subs: dict[int, Any] = {}  # nats-py subscriptions feeding our mailboxes
        self._durable: JetStreamMailboxes | None = None
        self._closed = False
        self.listener: Callable[[str, str, str], None] | None = None
        """Told ``(kind, detail, reply)`` of ``dropped`` (a slow consumer: nats-py dropped
        a message on ``detail``, an ask when ``reply`` is set), ``refused`` (the server
        refused a publish or subscription on ``detail``: permissions), ``disconnected``
        and ``reconnected``."""

    @property
    def client(self) -> Client:
        """The nats-py client, for tools that need the raw connection (after :meth:`start`)."""
        if self._nc is None:
            raise TransportClosed("NATS transport is not started")
        return self._nc

    @property
    def durable(self) -> JetStreamMailboxes:
        """Durable mailboxes on JetStream, on this connection (after :meth:`start`)."""
        if self._durable is None:
            self._durable = JetStreamMailboxes(self.client)
        return self._durable

    @property
    def dead_letters(self) -> JetStreamDeadLetters:
        """The tenant's dead letters, kept in a JetStream stream (after :meth:`start`)."""
        if self._dead_letters is None:
            self._dead_letters = JetStreamDeadLetters(self.client, lambda: self.description)
        return self._dead_letters

    @property
    def max_payload(self) -> int:
        """The server's ``max_payload`` (headers and body together)."""
        return self.client.max_payload

    @property
    def server_name(self) -> str | None:
        """The ``server_name`` the connected server announced."""
        info: dict[str, Any] = self.client._server_info  # no public accessor in nats-py
        name = info.get("server_name")
        return str(name) if name is not None else None

    @property
    def connected_url(self) -> str | None:
        """The URL of the server currently connected to."""
        url = self._nc.connected_url if self._nc is not None else None
        return redact_url(url.geturl()) if url is not None else None

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
        nc = Client()
        if not schemes & {"ws", "wss"}:
            nc._transport = _TcpTransport(require_tls="tls" in options)
        elif "tls" in options and "ws" in schemes:
            raise ConfigError(
                "NATS_TLS_CA/NATS_TLS_CERT are set but NATS_URL has a ws:// URL, which is "
                "not encrypted: use wss:// URLs"
            )
        self._connect_errors = []
        deadline = asyncio.timeout(self._connect_deadline())
        try:
            async with deadline:
                await nc.connect(
                    self._servers,
                    name=self._name,
                    inbox_prefix=self._inbox_prefix,
                    # nats-py annotates these as int; it uses them as seconds, fractions too.
                    connect_timeout=self._connect_timeout,  # type: ignore[arg-type]
                    allow_reconnect=self._reconnect,
                    # Two tries per server on the first connect, so a dead URL fails
                    # fast; once connected, reconnect for ever (set below).
                    max_reconnect_attempts=_CONNECT_TRIES - 1,
                    reconnect_time_wait=_RETRY_WAIT,  # type: ignore[arg-type]
                    pending_size=self._reconnect_buffer,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **options,
                )
            if not nc.is_connected:
                # nats-py returns when the server closed the socket instead of answering
                # the login's PING (its reply was neither PONG nor -ERR).
                raise nats.errors.UnexpectedEOF
        except BaseException as exc:  # cancelled too: the socket must not outlive the start
            await self._abandon(nc)
            if not isinstance(exc, (TimeoutError, OSError, nats.errors.Error)):
                raise
            raise ConnectionLost(self._connect_failure(exc, nc, deadline.expired())) from None
        self._nc = nc
        if self._reconnect:
            # nats-py reads this option on every reconnect; there is no setter.
            self._nc.options["max_reconnect_attempts"] = -1
            self._nc.options["reconnect_time_wait"] = 1.0
        await self._probe_inbox(nc)

    async def _probe_inbox(self, nc: Client) -> None:
        """Fail at once when the user may not receive replies on our inbox prefix.

        Otherwise the first request would wait out its timeout (the server refuses the
        inbox subscription only in an asynchronous error). One subscription and one
        round trip at connect.

        Raises:
            TenantError: the reply inbox is refused (the connection is closed).
        """
        try:
            sub = await nc.subscribe(f"{self._inbox_prefix}.probe")
            await self._round_trip(nc)
            await sub.unsubscribe()
            self._check_inbox_allowed()
        except TenantError:
            self._closed = True
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        except nats.errors.Error as exc:
            raise self._translate(exc, self._inbox_prefix) from exc

    def _connect_deadline(self) -> float:
        """Seconds a start may take: every try of every server, each step timing out."""
        # A try has up to four steps bounded by connect_timeout in nats-py (TCP, INFO,
        # TLS handshake, PING/PONG), and waits before it when its server was just tried.
        per_try = 4 * self._connect_timeout + _RETRY_WAIT
        return len(self._servers) * _CONNECT_TRIES * per_try + 1.0

    @staticmethod
    async def _abandon(nc: Client) -> None:
        """Close a client whose connect failed, leaving no socket or task behind."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):  # a guard: it returns at once (_TcpTransport)
                await nc.close()
        transport = nc._transport
        if transport is not None:
            transport.close()  # type: ignore[no-untyped-call]  # nats-py's are untyped

    def _connect_failure(self, exc: BaseException, nc: Client, expired: bool) -> str:
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
        if any(isinstance(e, _NotEncrypted) for e in seen):
            required = []
            if any(_scheme(u) == "tls" for u in self._servers):
                required.append("a tls:// URL in NATS_URL")
            if self._auth.tls_ca or self._auth.tls_cert:
                required.append("NATS_TLS_CA/NATS_TLS_CERT")
            info: dict[str, Any] = nc._server_info  # no public accessor in nats-py
            if info.get("tls_available"):
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
        elif expired:
            hint = f"no server answered within {self._connect_deadline():.3g}s"
        else:
            last = next(
                (e for e in reversed(seen) if not isinstance(e, nats.errors.NoServersError)), exc
            )
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
        if isinstance(exc, nats.errors.SlowConsumerError):
            mailbox = self._mailboxes.get(exc.sid)
            if mailbox is not None:
                mailbox.dropped += 1
            log.warning("slow consumer: dropped a message on %s", exc.subject)
            self._tell("dropped", exc.subject, exc.reply or "")
        else:
            log.warning("NATS error: %r", exc)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            where = ", ".join(redact_url(u) for u in self._servers)
            log.warning("disconnected from NATS at %s", where)
            self._tell("disconnected", where, "")

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self.connected_url)
        self._tell("reconnected", self.connected_url or "", "")

    def _tell(self, kind: str, detail: str, reply: str) -> None:
        if self.listener is not None:
            try:
                self.listener(kind, detail, reply)
            except Exception:  # a listener's bug must not break the connection's callbacks
                log.exception("NATS event listener failed on %s", kind)

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Publish a message (checked against ``max_payload`` with its headers)."""
        nc = self.client
        check_publish_subject(subject)
        check_size(data, headers, nc.max_payload)
        try:
            await nc.publish(subject, data, reply, headers)  # type: ignore[arg-type]
        except Exception as exc:
            raise self._translate(exc, subject) from exc

    async def subscribe(
        self, subject: str, *, queue: str | None = None, mailbox: Mailbox[Incoming]
    ) -> Subscription:
        """Deliver messages matching ``subject`` into ``mailbox``."""
        nc = self.client
        check_subscribe_subject(subject)
        try:
            # No callback: nats-py's read loop puts each message straight into the
            # subscription's pending queue, and that queue *is* the mailbox's (one hop,
            # no task per subscription). Past the mailbox's bound nats-py drops the
            # message and reports a slow consumer, which we count on the mailbox. The
            # byte limit is off: nats-py only lowers its byte count for its own readers.
            sub = await nc.subscribe(
                subject,
                queue=queue or "",
                pending_msgs_limit=mailbox.statistics().capacity,
                pending_bytes_limit=0,
            )
            sub._pending_queue = mailbox._queue  # type: ignore[assignment]
            await self._round_trip(nc)
        except Exception as exc:
            raise self._translate(exc, subject) from exc
        refused = self._refused.pop(("sub", subject.lower()), None)
        if refused is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            raise TenantError(
                f"the NATS server refused a subscription to {subject!r} (permissions "
                "violation): this connection's user may not read it; each tenant's user may "
                "use only its own subjects"
            )
        sid = sub._id  # nats-py reports slow consumers by sid
        self._mailboxes[sid] = mailbox
        self._subs[sid] = sub

        async def unsubscribe() -> None:
            self._mailboxes.pop(sid, None)
            self._subs.pop(sid, None)
            if nc.is_closed or nc.is_draining:
                return
            if not nc.is_connected:  # reconnecting: nothing in flight can be drained
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
                return
            try:
                async with asyncio.timeout(_DRAIN_TIMEOUT):
                    await self._drain(nc, sub)
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("unsubscribe from %s: %r", subject, exc)

        return Subscription(subject, queue, mailbox, unsubscribe)

    @classmethod
    async def _drain(cls, nc: Client, sub: Any) -> None:
        """Unsubscribe, keeping every message the server sent before the UNSUB.

        nats-py's ``Subscription.drain`` has the same PING-overtakes-UNSUB race as
        ``flush`` (see :meth:`_round_trip`), so its own round trip can end before the
        server saw the UNSUB, and later deliveries are dropped. Here: UNSUB, then a real
        round trip: every MSG for the subscription precedes the PONG, and the read loop
        puts each into the mailbox as it parses it, so all are there when it returns.
        """
        await nc._send_unsubscribe(sub._id)
        await cls._round_trip(nc)
        sub._stop_processing()
        nc._remove_sub(sub._id)
        sub._closed = True

    @staticmethod
    async def _round_trip(nc: Client) -> None:
        """Return once the server has processed everything sent so far.

        So a subscription is known to the server before ``subscribe`` returns, and a
        request from another connection right after finds its responder. nats-py's
        ``flush()`` alone is not enough: it writes its PING straight to the socket,
        ahead of commands still queued for its flusher task (the SUB among them), so
        we first wait for that queue to reach the socket.
        """
        await nc._flush_pending(force_flush=True)
        await nc.flush()

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> Incoming:
        """Publish with a reply inbox (shared, muxed by nats-py) and wait for the reply."""
        nc = self.client
        check_publish_subject(subject)
        check_size(data, headers, nc.max_payload)
        try:
            return await nc.request(subject, data, timeout=timeout, headers=headers)  # type: ignore[arg-type]
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no responders on {subject!r}") from None
        except (TimeoutError, nats.errors.TimeoutError):
            if self._refused.pop(("pub", subject.lower()), None) is not None:
                raise TenantError(
                    f"the NATS server refused publishing to {subject!r} (permissions "
                    "violation): this connection's user may not write it"
                ) from None
            raise AskTimeout(f"no reply on {subject!r} within {timeout:.3g}s") from None
        except Exception as exc:
            raise self._translate(exc, subject) from exc

    def _translate(self, exc: Exception, subject: str) -> Exception:
        if isinstance(exc, nats.errors.BadSubjectError):
            return SubjectError(f"invalid subject {subject!r}")
        if isinstance(exc, nats.errors.MaxPayloadError):
            return MessageTooLarge(-1, self.client.max_payload)
        if isinstance(
            exc, (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError)
        ):
            if self._closed:
                return TransportClosed("NATS transport is closed")
            return ConnectionLost(f"NATS connection closed while using {subject!r}")
        if isinstance(
            exc, (nats.errors.OutboundBufferLimitError, nats.errors.StaleConnectionError)
        ):
            return ConnectionLost(f"NATS connection lost while using {subject!r}: {exc!r}")
        if isinstance(exc, nats.errors.Error):
            return ConnectionLost(f"NATS error on {subject!r}: {exc!r}")
        if isinstance(exc, (OSError, ConnectionError)):
            return ConnectionLost(f"NATS connection failed on {subject!r}: {exc!r}")
        return exc

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
        """Drain (flush publishes, finish deliveries) and close; idempotent."""
        if self._closed or self._nc is None:
            self._closed = True
            return
        self._closed = True
        nc = self._nc
        try:
            if nc.is_connected:
                async with asyncio.timeout(_DRAIN_TIMEOUT):
                    # Our subscriptions first, our way: nats-py's drain would wait for
                    # its readers to mark each message done, and ours never do.
                    for sub in list(self._subs.values()):
                        await self._drain(nc, sub)
                    self._subs.clear()
                    await nc.drain()
        except Exception as exc:  # a broken connection cannot drain; close it anyway
            log.debug("drain failed: %r", exc)
        finally:
            if not nc.is_closed:
                try:
                    await nc.close()
                except (OSError, nats.errors.Error) as exc:
                    log.debug("close after a lost connection: %r", exc)
