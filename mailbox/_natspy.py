"""The one module that imports nats-py: a narrow adapter over its client and JetStream API.

Rules:

* Nothing else in motadata_actors imports ``nats``. The NATS transport holds the nats-py
  client (so ``publish``, ``request`` and ``max_payload`` cost no extra call per message)
  and does everything else through the functions here; the JetStream modules see only
  :class:`JetStream`.
* nats-py's exceptions are translated here into motadata_actors' own (:func:`translate`,
  and the JetStream vocabulary :class:`NotFound`, :class:`Refused`, :class:`NoJetStream`,
  :class:`NoStream`, :class:`NoAnswer`); none of nats-py's types leaves this module but
  :data:`RawClient`, the transport's escape hatch for tools.
* Every private nats-py hook still needed is listed in :data:`HOOKS` with why no public
  API does it, used only here, and held to :data:`NATS_PY_RANGE`: importing this module
  warns when the installed nats-py is outside it, and ``tests/mailbox/test_natspy_hooks.py``
  fails loudly, against a real nats-server, when a hook changes.
* Nothing here works inside nats-py's callbacks beyond handing over: messages go straight
  into a :class:`~motadata_actors.mailbox.Mailbox`, errors to the transport's handler.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import itertools
import json
import re
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar, cast, final

import anyio
import attrs
import nats.errors
import nats.js.api as api
import nats.js.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.protocol.command import hpub_cmd

from motadata_actors._errors import (
    ConfigError,
    ConnectionLost,
    DecodeError,
    MessageTooLarge,
    NoResponders,
    SequenceConflict,
    SubjectError,
    TransportClosed,
)
from motadata_actors.telemetry import get_logger

from ._deadlines import Deadlines
from ._js_values import (
    ConsumerInfo,
    ConsumerSpec,
    NoAnswer,
    NoJetStream,
    NoStream,
    NotFound,
    Refused,
    StreamInfo,
    StreamSpec,
)
from ._kv import Entry
from ._objects import gone
from ._quotas import quota_exceeded, tenant_of_account
from ._tls_guard import GuardedTcp
from ._transport import StoredMessage

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from ._queue import Mailbox
    from ._transport import Incoming

__all__ = (
    "HOOKS",
    "NATS_PY_RANGE",
    "Hook",
    "JetStream",
    "KeyValueBucket",
    "ObjectBucket",
    "PullSubscription",
    "RawClient",
    "RawSubscription",
    "abandon",
    "account",
    "check_version",
    "close",
    "connect",
    "connected_url",
    "delivery",
    "in_progress",
    "is_connect_error",
    "is_no_servers",
    "keep_reconnecting",
    "new_client",
    "new_inbox",
    "reconnects",
    "round_trip",
    "server_info",
    "settle",
    "state",
    "subscribe_callback",
    "subscriptions_refused",
    "subscribe_into",
    "translate",
    "unsubscribe",
    "unsubscribe_keeping",
    "warn_if_untested",
)

T = TypeVar("T")
log = get_logger("nats")

RawClient: TypeAlias = Client
"""nats-py's client (the transport holds one; tools may reach it through ``client``)."""
RawSubscription: TypeAlias = Subscription
"""nats-py's subscription, opaque outside this module."""

# -- the nats-py versions this adapter was tested with ------------------------------------

NATS_PY_RANGE: Final = ">=2.16,<2.17"
"""The nats-py releases the hooks below were checked against (pyproject says the same)."""
_LOWEST: Final = (2, 16)
_PAST: Final = (2, 17)


def check_version(version: str) -> str | None:
    """Why ``version`` of nats-py is not one this adapter was tested with; None when it is."""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is not None and _LOWEST <= (int(found[1]), int(found[2])) < _PAST:
        return None
    return (
        f"nats-py {version} is outside the range motadata-actors was tested with "
        f"(nats-py{NATS_PY_RANGE}): it drives private parts of nats-py (see "
        "motadata_actors.mailbox._natspy.HOOKS), so delivery may break; install "
        f"'nats-py{NATS_PY_RANGE}'"
    )


def warn_if_untested(version: str) -> None:
    """Warn (``RuntimeWarning``) when nats-py ``version`` is outside :data:`NATS_PY_RANGE`."""
    untested = check_version(version)
    if untested is not None:
        warnings.warn(untested, RuntimeWarning, stacklevel=3)


def _installed_version() -> str:
    try:
        return importlib.metadata.version("nats-py")
    except importlib.metadata.PackageNotFoundError:  # vendored or installed oddly
        return "unknown"


warn_if_untested(_installed_version())


# -- the private hooks, in one place --------------------------------------------------------


@final
@attrs.frozen(slots=True)
class Hook:
    """One private part of nats-py this adapter relies on.

    Attributes:
        owner: the nats-py class it belongs to.
        name: the attribute or method.
        why: why no public API does it.
    """

    owner: str
    name: str
    why: str


HOOKS: Final = (
    Hook("Client", "_transport",
         "connect() takes no transport; ours (GuardedTcp) refuses to send the CONNECT "
         "unencrypted when TLS is asked for, and does not hang after a failed TLS upgrade"),
    Hook("Client", "_server_info",
         "the server's INFO (server_name, tls_available) has no accessor"),
    Hook("Client", "options",
         "reconnect settings are read from it on every reconnect and have no setter: we "
         "connect with two tries per server, then reconnect for ever"),
    Hook("Subscription", "_pending_queue",
         "replaced by our mailbox (put_nowait, qsize, empty), so the read loop puts each "
         "message straight into it: a callback would add a task per subscription and a hop "
         "per message"),
    Hook("Subscription", "_id",
         "the sid for _send_unsubscribe (public unsubscribe() does not keep in-flight messages)"),
    Hook("Client", "_send_unsubscribe",
         "UNSUB alone: unsubscribe() forgets the subscription before the server stops "
         "sending (dropping what is in flight), drain() waits for nats-py's own readers"),
    Hook("Client", "_flush_pending",
         "with _send_command: the tail of _send_publish, which ours repeats after writing "
         "the block (a flush asked for when none is queued)"),
    Hook("Client", "_process_info",
         "nats-py reads max_payload only from the first INFO; the INFO the server sends "
         "after the login carries the account's own (a tenant's payload quota) and name"),
    Hook("Client", "_max_payload",
         "max_payload has no setter: it is lowered to the account's so an oversized "
         "message is refused here instead of the server closing the connection"),
    Hook("Client", "_process_headers",
         "nats-py parses every header block with a per-character check of each name (about "
         "2 us a message); ours reads a plain block in one pass and hands it anything else "
         "(status lines, names that are not tokens)"),
    Hook("Client", "_send_publish",
         "nats-py writes every header block with a regular expression, a strip and a "
         "translate per header (about 3 us a message); ours writes a plain one in one pass "
         "and hands it anything else"),
    Hook("Client", "_send_command",
         "with _flush_queue, _flush_pending and stats: the tail of _send_publish, which "
         "ours repeats after writing the block (no public call sends a prepared HPUB)"),
    Hook("Client", "_flush_queue",
         "read as _send_publish reads it: a flush is asked for only when none is queued; "
         "round_trip queues a future of its own on it to learn when the queue was written"),
    Hook("Client", "_send_ping",
         "round_trip's PING with a future of its own, left in line (not cancelled) when it "
         "times out: flush() cancels it, and the late PONG then breaks the read loop"),
    Hook("Client", "_flusher_task",
         "round_trip queues on _flush_queue only while the flusher runs (a connection lost "
         "stops it, and nothing would answer)"),
    Hook("Client", "stats",
         "out_msgs and out_bytes, counted as _send_publish counts them"),
    Hook("Client", "_resp_map",
         "request() waits with asyncio.wait_for (a timer, a waiter, callbacks) and a random "
         "token per request; ours puts its future in the same map of the reply inbox's "
         "waiting requests, under a counter, and one timer keeps every deadline"),
    Hook("Client", "_resp_sub_prefix",
         "the reply inbox's prefix (the connection's inbox, a NUID, a dot) that a request's "
         "reply subject starts with; no accessor"),
    Hook("Client", "_init_request_sub",
         "subscribes the reply inbox (once per connection); request() calls it, nothing "
         "public does"),
    Hook("Client", "_subs",
         "closed while reconnecting, nats-py fails writing what it buffered before it stops "
         "its subscriptions' tasks (left pending past the exit): close() stops each first, "
         "through its public unsubscribe(), and no accessor lists them"),
    Hook("Client", "_process_err",
         "nats-py closes the connection on any -ERR but a permissions violation; the "
         "server keeps it after 'maximum subscriptions exceeded' (one SUB refused)"),
)  # fmt: skip
"""Every private nats-py hook used here (tests/mailbox/test_natspy_hooks.py checks each)."""


# -- errors ---------------------------------------------------------------------------------


def translate(exc: BaseException, subject: str, *, closed: bool, max_payload: int) -> BaseException:
    """Our error for nats-py's ``exc`` raised while using ``subject``; others unchanged.

    ``closed``: the transport was closed by its owner (not lost).
    """
    if isinstance(exc, nats.errors.NoRespondersError):
        return NoResponders(f"no responders on {subject!r}")
    if isinstance(exc, nats.errors.BadSubjectError):
        return SubjectError(f"invalid subject {subject!r}")
    if isinstance(exc, nats.errors.MaxPayloadError):
        return MessageTooLarge(-1, max_payload)
    if isinstance(exc, (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError)):
        if closed:
            return TransportClosed("NATS transport is closed")
        return ConnectionLost(f"NATS connection closed while using {subject!r}")
    if isinstance(exc, (nats.errors.OutboundBufferLimitError, nats.errors.StaleConnectionError)):
        return ConnectionLost(f"NATS connection lost while using {subject!r}: {exc!r}")
    if isinstance(exc, nats.errors.Error):
        return ConnectionLost(f"NATS error on {subject!r}: {exc!r}")
    if isinstance(exc, OSError):
        return ConnectionLost(f"NATS connection failed on {subject!r}: {exc!r}")
    return exc


def is_connect_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed connect (not a bug, not a cancellation)."""
    return isinstance(exc, (TimeoutError, OSError, nats.errors.Error))


def is_no_servers(exc: BaseException) -> bool:
    """Whether ``exc`` is nats-py's summary "no servers available" (says nothing of why)."""
    return isinstance(exc, nats.errors.NoServersError)


# -- the core client ------------------------------------------------------------------------

ErrorHandler = Callable[[Exception], Awaitable[None]]
SlowConsumerHandler = Callable[[RawSubscription, str, str], None]
Callback = Callable[[], Awaitable[None]]


def new_client(tls_guard: GuardedTcp | None) -> RawClient:
    """A nats-py client, using ``tls_guard`` as its transport when given."""
    nc = Client()
    if tls_guard is not None:
        nc._transport = tls_guard  # type: ignore[assignment]  # hook; nats-py's interface
    return nc


async def connect(
    nc: RawClient,
    servers: Sequence[str],
    *,
    on_error: ErrorHandler,
    on_slow_consumer: SlowConsumerHandler,
    on_disconnected: Callback,
    on_reconnected: Callback,
    connect_timeout: float,
    reconnect_time_wait: float,
    **options: Any,
) -> None:
    """Connect ``nc``; the handlers are nats-py's callbacks, each only handing over.

    Raises:
        nats-py's connect errors (see :func:`is_connect_error`), untranslated: the
        transport reads every one of them to say why connecting failed.
    """

    async def error_cb(exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            on_slow_consumer(exc.sub, exc.subject, exc.reply or "")
        else:
            await on_error(exc)

    _follow_account_limits(nc, error_cb)
    _headers_in_one_pass(nc)
    await nc.connect(
        list(servers),
        error_cb=error_cb,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        # nats-py annotates these as int; it uses them as seconds, fractions too.
        connect_timeout=connect_timeout,  # type: ignore[arg-type]
        reconnect_time_wait=reconnect_time_wait,  # type: ignore[arg-type]
        **options,
    )
    if not nc.is_connected:
        # nats-py returns when the server closed the socket instead of answering the
        # login's PING (its reply was neither PONG nor -ERR).
        raise nats.errors.UnexpectedEOF


_SUBS_EXCEEDED: Final = "maximum subscriptions exceeded"
_refused_subs: weakref.WeakKeyDictionary[RawClient, int] = weakref.WeakKeyDictionary()


def _follow_account_limits(nc: RawClient, on_error: ErrorHandler) -> None:
    """Take the account's limits from the server (hooks ``_process_info``, ``_process_err``).

    The INFO after the login carries the account's ``max_payload`` (a tenant's payload
    quota, when below the server's) and its name; nats-py keeps neither. A first INFO of a
    reconnect carries the server's again: the account's, once known, still holds until the
    next login's INFO says.
    """
    process_info, process_err = nc._process_info, nc._process_err
    account_payload: list[int] = []

    async def info_hook(info: dict[str, Any], initial_connection: bool = False) -> None:
        await process_info(info, initial_connection)
        if info.get("connect_info"):
            account_payload[:] = [int(info.get("max_payload", nc._max_payload))]
            nc._server_info["remote_account"] = info.get("remote_account")
        if account_payload:
            server_max = int(nc._server_info.get("max_payload") or account_payload[0])
            nc._max_payload = min(server_max, account_payload[0])

    async def err_hook(err_msg: str) -> None:
        if _SUBS_EXCEEDED in err_msg.lower() and not nc.is_connecting:
            _refused_subs[nc] = _refused_subs.get(nc, 0) + 1
            await on_error(nats.errors.Error(f"nats: {err_msg.strip(chr(39))}"))
            return
        await process_err(err_msg)

    nc._process_info = info_hook  # type: ignore[method-assign]  # hook
    nc._process_err = err_hook  # type: ignore[method-assign]  # hook


_HEADER_LINE: Final = b"NATS/1.0\r\n"
_TOKEN: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TEXT_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NAMES: dict[bytes, str] = {}  # header names seen, checked once (at most _NAMES_KEPT)
_TEXT_NAMES: set[str] = set()
_NAMES_KEPT: Final = 256


def parse_headers(block: bytes) -> dict[str, str] | None:
    """A plain header block (``NATS/1.0`` then ``Name: value`` lines) as a dict, in one pass.

    None when the block is not plain (a status line, a name that is not a token, a line
    without a colon): nats-py's own parser reads those. An empty block is ``{}``.
    """
    if not block.startswith(_HEADER_LINE):
        return None
    out: dict[str, str] = {}
    names = _NAMES
    for line in block[len(_HEADER_LINE) :].split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        key = names.get(name)
        if key is None:
            if _TOKEN.fullmatch(name) is None:
                return None
            key = name.decode()
            if len(names) < _NAMES_KEPT:
                names[name] = key
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def header_block(headers: Mapping[str, str]) -> bytes | None:
    """``headers`` as a plain header block, in one pass; None when one is not plain.

    Not plain: a name that is not a token, a value that is not a string, holds a line
    break or is no Unicode text (a lone surrogate). nats-py's own writer checks and writes
    those (it strips values and blanks line breaks).
    """
    names = _TEXT_NAMES
    lines = []
    for name, value in headers.items():
        if name not in names:
            if type(name) is not str or _TEXT_TOKEN.fullmatch(name) is None:
                return None
            if len(names) < _NAMES_KEPT:
                names.add(name)
        if type(value) is not str or "\n" in value or "\r" in value:
            return None
        lines.append(f"{name}: {value}\r\n")
    try:
        return b"NATS/1.0\r\n" + "".join(lines).encode() + b"\r\n"
    except UnicodeEncodeError:  # a lone surrogate: nats-py's writer says so
        return None


def _headers_in_one_pass(nc: RawClient) -> None:
    """Read and write plain header blocks ourselves.

    Hooks ``_process_headers`` and ``_send_publish``, and for the latter's tail
    ``_send_command``, ``_flush_queue``, ``_flush_pending`` and ``stats``.
    """
    process_headers, send_publish = nc._process_headers, nc._send_publish

    async def quick_read(headers: bytes) -> dict[str, str] | None:
        if not headers:
            return None
        parsed = parse_headers(headers)
        if parsed is None:
            return await process_headers(headers)
        return parsed or None

    async def quick_write(
        subject: str, reply: str, payload: bytes, payload_size: int, headers: Any
    ) -> None:
        block = header_block(headers) if headers is not None else None
        if block is None or not subject:
            return await send_publish(subject, reply, payload, payload_size, headers)
        # What nats-py's _send_publish does after building its block.
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += payload_size
        await nc._send_command(hpub_cmd(subject, reply, block, payload))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()

    nc._process_headers = quick_read  # type: ignore[method-assign]  # hook
    nc._send_publish = quick_write  # type: ignore[method-assign]  # hook


def subscriptions_refused(nc: RawClient) -> int:
    """How many subscriptions the server has refused ``nc`` for its subscription quota."""
    return _refused_subs.get(nc, 0)


def account(nc: RawClient) -> str | None:
    """The NATS account the server put ``nc`` in (from its INFO after the login)."""
    name = server_info(nc).get("remote_account")
    return str(name) if name else None


def keep_reconnecting(nc: RawClient, wait: float) -> None:
    """From now on, reconnect for ever, ``wait`` seconds apart (hook: ``Client.options``)."""
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = wait


def server_info(nc: RawClient) -> Mapping[str, Any]:
    """The connected server's INFO (hook: ``Client._server_info``)."""
    info: dict[str, Any] = nc._server_info
    return info


def connected_url(nc: RawClient) -> str | None:
    """The URL of the server ``nc`` is connected to, if any."""
    url = nc.connected_url
    return url.geturl() if url is not None else None


def state(nc: RawClient) -> Literal["connected", "reconnecting", "draining", "closed"]:
    """Where ``nc`` is in its life."""
    if nc.is_closed:
        return "closed"
    if nc.is_draining:
        return "draining"
    return "connected" if nc.is_connected else "reconnecting"


async def abandon(nc: RawClient, transport: GuardedTcp | None) -> None:
    """Close a client whose connect failed, leaving no socket or task behind."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):  # a guard: it returns at once (GuardedTcp)
            await nc.close()
    if transport is not None:
        transport.close()


async def close(nc: RawClient, subs: Sequence[RawSubscription], timeout: float) -> None:
    """Drain within ``timeout`` seconds, then close whatever happened.

    Drained: ``subs`` our way (nothing in flight lost), and a round trip so that all
    that was published reached the server.

    Not nats-py's ``drain()``: it would wait for its readers to mark each message of
    ``subs`` done (our mailboxes never do), and cancelled at a timeout it goes on to a
    flush of its own (10 s more when the server does not answer) and leaves an error
    unretrieved. A broken connection cannot drain: it is closed at once, its
    subscriptions stopped first.
    """
    try:
        if nc.is_connected:
            async with asyncio.timeout(timeout):
                if subs:  # its round trip also covers what was published
                    await unsubscribe_keeping(nc, subs)
                else:
                    await round_trip(nc, timeout)  # what was published reached the server
    except Exception as exc:
        log.debug("drain failed: %r", exc)
    finally:
        if nc.is_reconnecting:  # nats-py's close would fail before stopping them
            for sub in list(nc._subs.values()):  # hook
                await unsubscribe(sub)
        if not nc.is_closed:
            try:
                await nc.close()
            except (OSError, nats.errors.Error) as exc:
                log.debug("close after a lost connection: %r", exc)


async def subscribe_into(
    nc: RawClient, subject: str, queue: str | None, mailbox: Mailbox[Any]
) -> RawSubscription:
    """Subscribe; nats-py's read loop puts each message straight into ``mailbox``.

    One hop and no task per subscription (hook: ``Subscription._pending_queue``). Past the
    mailbox's bound nats-py drops the message and reports a slow consumer. The byte limit
    is off: nats-py lowers its byte count only for its own readers.
    """
    sub = await nc.subscribe(
        subject,
        queue=queue or "",
        pending_msgs_limit=mailbox.statistics().capacity,
        pending_bytes_limit=0,
    )
    sub._pending_queue = mailbox  # type: ignore[assignment]  # hook
    return sub


async def subscribe_callback(
    nc: RawClient, subject: str, callback: Callable[[Incoming], Awaitable[None]]
) -> RawSubscription:
    """Subscribe with a callback nats-py runs in its own task (it must only hand over)."""
    return await nc.subscribe(subject, cb=callback)


ROUND_TRIP_TIMEOUT: Final = 10.0
"""Seconds a round trip may take (nats-py's own flush timeout)."""


async def round_trip(nc: RawClient, timeout: float = ROUND_TRIP_TIMEOUT) -> None:
    """Return once the server has processed everything sent so far.

    Our own PING, after the commands queued for nats-py's flusher (a SUB or UNSUB just
    sent) reached the socket (hooks: ``Client._flush_queue``, ``Client._send_ping``).
    Not nats-py's ``flush()``: it writes its PING ahead of that queue, and at a timeout
    cancels its PONG's future while leaving it in line, so the late PONG breaks the
    connection's read loop. Not ``_flush_pending(force_flush=True)``: it waits without a
    limit for a flusher that a connection lost at that moment never runs, and swallows its
    caller's cancel. While reconnecting it returns at once, and as soon as the connection
    is lost meanwhile (nats-py drops the PONGs it waited for, and sends its subscriptions
    again when it is back): a server killed just before waited out the whole timeout.

    Raises:
        nats.errors.FlushTimeoutError: no answer within ``timeout`` (the server does not
            answer).
    """
    flusher = nc._flusher_task
    if not (nc.is_connected and flusher is not None and not flusher.done()):
        return
    loop = asyncio.get_running_loop()
    since = reconnects(nc)
    try:
        async with asyncio.timeout(timeout):
            written: asyncio.Future[None] = loop.create_future()
            await nc._flush_queue.put(written)  # type: ignore[union-attr]  # hook
            if await _lost_before(written, nc, since):
                return
            pong: asyncio.Future[bool] = loop.create_future()
            await nc._send_ping(pong)  # hook
            await _lost_before(pong, nc, since)
    except TimeoutError:
        raise nats.errors.FlushTimeoutError from None


async def _lost_before(done: asyncio.Future[Any], nc: RawClient, since: int) -> bool:
    """Wait for ``done``; True if the connection was lost (or came back) first.

    ``done`` is never cancelled here: a PONG's future is left in line at a timeout, for
    the PONG that may still come.
    """
    while not done.done():
        await asyncio.wait((done,), timeout=0.05)
        if not done.done() and (not nc.is_connected or reconnects(nc) != since):
            return True
    return False


async def unsubscribe_keeping(nc: RawClient, subs: Sequence[RawSubscription]) -> None:
    """Unsubscribe, keeping every message the server sent before the UNSUB.

    UNSUB (hooks: ``_send_unsubscribe``, ``Subscription._id``), then a real round trip:
    every MSG for them precedes the PONG, and the read loop puts each into its mailbox as
    it parses it. Only then does the public ``unsubscribe()`` forget them (its second
    UNSUB is one the server ignores).
    """
    if not subs:
        return
    for sub in subs:
        await nc._send_unsubscribe(sub._id)
    await round_trip(nc)
    for sub in subs:
        await unsubscribe(sub)


async def unsubscribe(sub: RawSubscription) -> None:
    """Stop ``sub`` at once (what is in flight may be lost); errors are not worth raising."""
    with contextlib.suppress(nats.errors.Error):
        await sub.unsubscribe()


def reconnects(nc: RawClient) -> int:
    """How many times ``nc`` reconnected (hook: ``Client.stats``)."""
    return int(nc.stats["reconnects"])


def new_inbox(nc: RawClient) -> str:
    """A unique subject under the connection's inbox prefix."""
    return nc.new_inbox()


_tokens = itertools.count(1)


async def request(
    nc: RawClient,
    subject: str,
    payload: bytes,
    headers: Mapping[str, str] | None,
    timeout: float,
    deadlines: Deadlines,
) -> Msg:
    """``nc.request`` on nats-py's reply inbox, with its deadline in ``deadlines``.

    nats-py's own makes a random token (a NUID and two random bytes) and waits with
    ``asyncio.wait_for`` (a timer, a waiter and callbacks per request); a counter is as
    unique within the connection's inbox, and one timer serves every request's deadline.

    Raises:
        AskTimeout: no reply within ``timeout``.
        nats.errors.NoRespondersError: nobody subscribes to ``subject``.
    """
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    if not nc._resp_sub_prefix:
        await nc._init_request_sub()
    prefix = nc._resp_sub_prefix
    assert prefix is not None
    token = f"q{next(_tokens):x}"  # nats-py's tokens are 26 characters: no clash
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Msg] = loop.create_future()
    waiting = nc._resp_map
    waiting[token] = future
    try:
        await nc.publish(subject, payload, prefix.decode() + token, headers)  # type: ignore[arg-type]
        deadlines.watch(loop, future, subject, timeout)
        msg = await future
    finally:
        waiting.pop(token, None)
    if msg.headers and msg.headers.get(api.Header.STATUS) == "503":  # as nats-py's request
        raise nats.errors.NoRespondersError
    return msg


# -- JetStream ------------------------------------------------------------------------------

_NATS_NAMES: Final = {"replicas": "num_replicas", "message_ttl": "allow_msg_ttl"}  # ours -> nats-py


def _stream_config(spec: StreamSpec) -> api.StreamConfig:
    return api.StreamConfig(
        name=spec.name, description=spec.description or None, subjects=list(spec.subjects),
        retention=api.RetentionPolicy(spec.retention), max_age=spec.max_age,
        max_bytes=spec.max_bytes, max_msgs=spec.max_msgs, num_replicas=spec.replicas,
        duplicate_window=spec.duplicate_window, storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        allow_msg_schedules=spec.schedules or None,
        allow_msg_ttl=spec.schedules or spec.message_ttl or None,
    )  # fmt: skip


def _stream_info(info: api.StreamInfo) -> StreamInfo:
    c = info.config
    return StreamInfo(
        c.name or "", tuple(c.subjects or ()), getattr(c.retention, "value", str(c.retention)),
        c.max_age or 0.0, c.max_bytes if c.max_bytes is not None else -1, c.num_replicas or 1,
        c.duplicate_window, info.state.messages, info.state.bytes, c, bool(c.allow_msg_ttl),
    )  # fmt: skip


def _consumer_config(spec: ConsumerSpec) -> api.ConsumerConfig:
    config = api.ConsumerConfig(
        durable_name=spec.name, description=spec.description or None,
        filter_subject=spec.filter_subject, ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait, max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending, inactive_threshold=spec.inactive_threshold,
    )  # fmt: skip
    start = spec.start
    if start == "all":
        config.deliver_policy = api.DeliverPolicy.ALL
    elif start == "new":
        config.deliver_policy = api.DeliverPolicy.NEW
    elif isinstance(start, datetime.datetime):
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = start
    else:
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start
    return config


def _consumer_info(info: api.ConsumerInfo) -> ConsumerInfo:
    c = info.config
    return ConsumerInfo(
        info.name, c.filter_subject or "", c.ack_wait or 0.0, c.max_deliver or -1,
        c.max_ack_pending or 0, info.num_pending or 0, info.num_ack_pending or 0,
        info.num_redelivered or 0, c,
    )  # fmt: skip


# JetStream's err_codes for an account limit: JSAccountResourcesExceededErr (a message
# would pass memory or storage; every stream made here is on disk), JSStorage- and
# JSMemoryResourcesExceededErr (a stream's reservation does not fit: the account's, or the
# server's own), JSMaximumStreamsLimitErr, JSMaximumConsumersLimitErr.
_QUOTA_CODES: Final = {
    10002: "jetstream storage",
    10047: "jetstream storage",
    10028: "jetstream memory",
    10027: "jetstream streams",
    10026: "jetstream consumers",
}


def _js_error(exc: BaseException, what: str, nc: RawClient | None = None) -> BaseException:
    """Our error for a JetStream call's ``exc``; ``what`` the call (``read stream X``).

    ``nc``: the connection, whose account names the tenant of a quota error.
    """
    quota = _QUOTA_CODES.get(getattr(exc, "err_code", None) or 0)
    if isinstance(exc, nats.js.errors.APIError) and quota is not None:
        tenant = tenant_of_account(account(nc)) if nc is not None else None
        return quota_exceeded(
            quota, f"JetStream refused to {what}", tenant=tenant, why=exc.description or ""
        )
    if isinstance(exc, nats.js.errors.NotFoundError):
        return NotFound(f"cannot {what}: not found")
    if isinstance(exc, (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError)):
        return NoJetStream(
            f"cannot {what}: the NATS server has JetStream off or does not answer its API "
            "(start nats-server with --jetstream; the embedded server has it on)"
        )
    if isinstance(exc, nats.js.errors.APIError):
        return Refused(what, exc.code, exc.err_code, exc.description or str(exc))
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return NoStream(f"cannot {what}: no stream answered")
    if isinstance(exc, TimeoutError):  # nats-py's own subclass it
        return NoAnswer(f"cannot {what}: JetStream did not answer in time")
    if isinstance(exc, (nats.errors.Error, OSError)):
        return ConnectionLost(f"cannot {what}: {exc!r}")
    return exc


async def _call(what: str, call: Awaitable[T], nc: RawClient | None = None) -> T:
    """Await a JetStream call, its errors translated (``nc``: see :func:`_js_error`)."""
    try:
        return await call
    except Exception as exc:
        error = _js_error(exc, what, nc)
        if error is exc:
            raise
        raise error from exc


@final
class PullSubscription:
    """A bound pull subscription on a durable consumer."""

    __slots__ = ("_psub", "_what")

    def __init__(self, psub: JetStreamContext.PullSubscription, what: str) -> None:
        self._psub = psub
        self._what = what

    async def fetch(self, batch: int, timeout: float) -> list[Incoming]:
        """Up to ``batch`` messages, waiting at most ``timeout``; [] when none came.

        Raises:
            NotFound: the consumer (or its stream) is gone.
            NoJetStream: JetStream does not answer (a leader being elected).
            ConnectionLost: reconnecting, or the server restarting.
        """
        try:
            return cast("list[Incoming]", await self._psub.fetch(batch=batch, timeout=timeout))
        except TimeoutError:  # nats-py's TimeoutError and FetchTimeoutError too
            return []
        except Exception as exc:
            raise _js_error(exc, f"pull from {self._what}") from exc

    async def unsubscribe(self) -> None:
        """Stop pulling (the consumer stays on the server)."""
        with contextlib.suppress(nats.errors.Error):
            await self._psub.unsubscribe()


def delivery(msg: Incoming) -> tuple[int, int, float]:
    """A pulled message's ``(delivery count, stream sequence, stored at)``."""
    meta = cast("Msg", msg).metadata
    return meta.num_delivered, meta.sequence.stream, meta.timestamp.timestamp()


async def settle(msg: Incoming, verdict: Literal["ack", "nak", "term"], delay: float) -> None:
    """Ack, nak (redeliver after ``delay`` seconds) or term a pulled message.

    Raises:
        ConnectionLost: the verdict could not be sent (the message comes again later).
    """
    raw = cast("Msg", msg)
    try:
        if verdict == "ack":
            await raw.ack()
        elif verdict == "nak":
            await raw.nak(delay=delay or None)
        else:
            await raw.term()
    except (nats.errors.Error, OSError) as exc:
        raise ConnectionLost(f"cannot settle {raw.subject!r}: {exc!r}") from exc


async def in_progress(msg: Incoming) -> None:
    """Restart a pulled message's ack-wait timer.

    Raises:
        ConnectionLost: it could not be sent.
    """
    try:
        await cast("Msg", msg).in_progress()
    except (nats.errors.Error, OSError) as exc:
        raise ConnectionLost(f"cannot extend {msg.subject!r}: {exc!r}") from exc


@final
class KeyValueBucket:
    """A JetStream key-value bucket (nats-py's ``KeyValue``) in our terms (:mod:`._kv`)."""

    __slots__ = ("_js", "_kv", "_name", "_timeout")

    def __init__(self, kv: Any, js: JetStreamContext, name: str, timeout: float) -> None:
        self._kv = kv
        self._js = js
        self._name = name
        self._timeout = timeout

    @property
    def name(self) -> str:
        """The bucket's name."""
        return self._name

    async def _cas(self, key: str, call: Awaitable[int], what: str) -> int:
        try:
            return await call
        except nats.js.errors.KeyWrongLastSequenceError:
            raise SequenceConflict(
                f"key {key!r} of bucket {self._name}: {what} refused, its revision moved on "
                "(another writer went first)"
            ) from None
        except nats.js.errors.APIError as exc:
            if exc.err_code in (10071, 10164):  # wrong last sequence (a delete's, say)
                raise SequenceConflict(
                    f"key {key!r} of bucket {self._name}: {what} refused, its revision moved "
                    "on (another writer went first)"
                ) from None
            raise _js_error(exc, f"{what} {key!r} in bucket {self._name}") from exc
        except Exception as exc:
            error = _js_error(exc, f"{what} {key!r} in bucket {self._name}")
            if error is exc:
                raise
            raise error from exc

    async def get(self, key: str) -> Entry | None:
        """The key's latest value, or None (never written, deleted or expired)."""
        try:
            entry = await _call(f"read {key!r} in bucket {self._name}", self._kv.get(key))
        except (nats.js.errors.KeyNotFoundError, NotFound):
            return None
        return Entry(entry.value or b"", entry.revision or 0)

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` only if it has no value (:class:`SequenceConflict`: it has)."""
        return await self._cas(key, self._kv.create(key, value), "create")

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``key`` only at revision ``last`` (:class:`SequenceConflict`: it moved on)."""
        return await self._cas(key, self._kv.update(key, value, last=last), "update")

    async def delete(self, key: str, last: int | None = None) -> None:
        """Remove ``key`` (only at revision ``last``, when given)."""
        await self._cas(key, self._kv.delete(key, last=last), "delete")

    async def keys(self) -> list[str]:
        """The keys with a value now.

        Read with an ordered consumer of our own, through the last message of every key,
        until one says nothing is pending behind it. nats-py's ``keys()`` takes the consumer
        info's "nothing pending" for the end even when the deliveries are still on their
        way (they and the info answer come in either order): a bucket of hundreds of keys
        listed as ``[]`` under load. Its subscription is ended whatever happens (nats-py's
        is left behind when cancelled, and the connection's close then waits for it).
        """
        what = f"list bucket {self._name}"
        making = asyncio.ensure_future(_call(what, self._js.subscribe(
            f"$KV.{self._name}.>", stream=f"KV_{self._name}", ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT, headers_only=True,
            inactive_threshold=60.0,
        )))  # fmt: skip
        try:
            sub = await asyncio.shield(making)  # subscribed before it returns
        except asyncio.CancelledError:
            _stopping.add(making)  # kept until made, then unsubscribed
            making.add_done_callback(_stop_when_made)
            raise
        try:
            return await _call(what, self._listed(sub))
        finally:
            with anyio.CancelScope(shield=True):
                await _stop_quietly(sub)

    async def _listed(self, sub: JetStreamContext.PushSubscription) -> list[str]:
        info = await sub.consumer_info()
        if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
            return []  # nothing sent, nothing to send: empty
        prefix = len(f"$KV.{self._name}.")
        found: dict[str, None] = {}  # in the bucket's order
        while True:
            msg = await sub.next_msg(timeout=self._timeout)
            headers = msg.headers or {}
            key = msg.subject[prefix:]
            if headers.get("KV-Operation") or headers.get("Nats-Marker-Reason"):
                found.pop(key, None)  # deleted, purged, expired
            else:
                found[key] = None
            if msg.metadata.num_pending == 0:
                return list(found)


_stopping: set[asyncio.Future[Any]] = set()  # subscriptions being made or ended, unawaited


def _stop_when_made(making: asyncio.Future[Any]) -> None:
    """End the subscription ``making`` makes, its caller cancelled meanwhile."""
    _stopping.discard(making)
    if making.cancelled() or making.exception() is not None:
        return
    stopping = asyncio.ensure_future(_stop_quietly(making.result()))
    _stopping.add(stopping)
    stopping.add_done_callback(_stopping.discard)


async def _stop_quietly(sub: Any) -> None:
    with contextlib.suppress(Exception):  # the connection closed first, say: gone anyway
        await sub.unsubscribe()


@final
class ObjectBucket:
    """A JetStream object store (nats-py's ``ObjectStore``) in our terms (:mod:`._objects`).

    Objects are written by nats-py (chunks of 128 KiB, each acknowledged, then the meta
    record with the SHA-256 digest) and read here chunk by chunk with the stream's message
    get (public API): into one buffer of the object's size, or handed on one at a time,
    the digest checked either way. nats-py's own ``get`` concatenates bytes (quadratic, and
    twice the object in memory) and lets a pushed consumer queue what the reader has not
    taken yet. A delete removes the meta record too, leaving nothing.
    """

    __slots__ = ("_js", "_name", "_obs")

    def __init__(self, obs: Any, js: Any, name: str) -> None:
        self._obs = obs
        self._js = js
        self._name = name

    @property
    def name(self) -> str:
        """The bucket's name."""
        return self._name

    async def put(self, name: str, data: bytes) -> None:
        """Keep ``data`` under ``name``."""
        await _call(f"store object {name!r} in {self._name}", self._obs.put(name, data))

    async def _info(self, name: str) -> Any:
        try:
            info = await _call(f"read object {name!r} of {self._name}", self._obs.get_info(name))
        except (nats.js.errors.ObjectNotFoundError, NotFound):
            raise gone(self._name, name) from None
        return info

    async def _chunks(self, info: Any) -> AsyncIterator[bytes]:
        # One chunk at a time, each asked for by subject (the stream's message get API),
        # so never more than one chunk waits in memory however slow the reader is; a
        # pushed consumer would queue the rest of the object meanwhile.
        digest = hashlib.sha256()
        stream, subject = f"OBJ_{self._name}", f"$O.{self._name}.C.{info.nuid}"
        seq = 0
        for _ in range(info.chunks or 0):
            try:
                raw = await _call(
                    f"read object {info.name!r} of {self._name}",
                    self._js.get_msg(stream, seq + 1, subject=subject, next=True),
                )
            except NotFound:
                raise gone(self._name, info.name) from None
            seq = raw.seq
            data = raw.data or b""
            digest.update(data)
            yield data
        expected = info.digest or ""
        got = "SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode()
        if expected.rstrip("=") != got.rstrip("="):
            raise DecodeError("claim", None, f"object {info.name!r} does not match its digest")

    async def get(self, name: str) -> bytearray:
        """The whole object, in one buffer of its size (chunks copied in as they come)."""
        info = await self._info(name)
        out = bytearray(info.size or 0)
        at = 0
        async for chunk in self._chunks(info):
            if at + len(chunk) > len(out):
                raise DecodeError("claim", None, f"object {name!r} is longer than its record")
            out[at : at + len(chunk)] = chunk
            at += len(chunk)
        if at != len(out):
            raise DecodeError("claim", None, f"object {name!r} is shorter than its record")
        return out

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes chunk by chunk (128 KiB each, as written)."""
        info = await self._info(name)
        async for chunk in self._chunks(info):
            yield chunk

    async def delete(self, name: str) -> None:
        """Remove the object's chunks and its record."""
        with contextlib.suppress(nats.js.errors.ObjectNotFoundError, NotFound):
            await _call(f"delete object {name!r} of {self._name}", self._obs.delete(name))
        meta = f"$O.{self._name}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
        await _call(
            f"delete object {name!r} of {self._name}",
            self._js.purge_stream(f"OBJ_{self._name}", subject=meta),
        )

    async def names(self) -> list[str]:
        """The names of the objects kept now.

        Read from the meta subjects: nats-py's ``list`` waits forever on a bucket whose
        records were all purged.
        """
        stream = f"OBJ_{self._name}"
        try:
            info = await _call(
                f"list objects of {self._name}",
                self._js.stream_info(stream, subjects_filter=f"$O.{self._name}.M.>"),
            )
        except NotFound:
            return []
        names = []
        for subject in info.state.subjects or {}:
            try:
                raw = await _call(f"read {subject}", self._js.get_last_msg(stream, subject))
            except NotFound:  # deleted since it was listed
                continue
            record = json.loads(raw.data or b"{}")
            if not record.get("deleted"):
                names.append(str(record.get("name", "")))
        return sorted(names)


@final
class JetStream:
    """JetStream on one connection, in our terms (:mod:`._js_values`).

    Every request raises, besides what its own docstring names, :class:`NoJetStream` (the
    server has JetStream off, or nothing answers its API), :class:`NoAnswer` (no answer
    within ``timeout``) and :class:`ConnectionLost`; :class:`Refused` when JetStream
    refuses a change (its ``err_code`` says why), :class:`NotFound` when a stream,
    consumer or message it names is not there.
    """

    def __init__(self, nc: RawClient, timeout: float) -> None:
        self._nc = nc
        self.timeout = timeout
        """Seconds JetStream's API and acknowledgements are waited for."""
        self._js = nc.jetstream(timeout=timeout)

    @property
    def max_payload(self) -> int:
        """The server's ``max_payload`` (headers and body together)."""
        return self._nc.max_payload

    @property
    def connected(self) -> bool:
        """Whether the connection is up (not reconnecting, not closed)."""
        return self._nc.is_connected

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        """Store a message; its stream sequence once the stream acknowledged it.

        Raises:
            NoStream: no stream answered (none captures ``subject``, or its leader is
                being elected).
        """
        ack = await _call(f"store a message on {subject!r}",
                          self._js.publish(subject, data, headers=headers), self._nc)  # fmt: skip
        return ack.seq

    async def publish_plain(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Publish without waiting for a stream (buffered while reconnecting)."""
        await _call(
            f"publish on {subject!r}", self._nc.publish(subject, data, headers=headers or None)
        )

    async def find_stream(self, subject: str, timeout: float) -> str:
        """The stream capturing ``subject`` (:class:`NotFound`: none does)."""
        js = self._nc.jetstream(timeout=timeout)
        return await _call(f"find the stream of {subject!r}",
                           js.find_stream_name_by_subject(subject))  # fmt: skip

    async def stream_info(self, name: str) -> StreamInfo:
        """The stream ``name``."""
        return _stream_info(await _call(f"read stream {name!r}", self._js.stream_info(name)))

    async def add_stream(self, spec: StreamSpec) -> None:
        """Make a stream (``Refused.bad_request``: it exists with other settings)."""
        await _call(
            f"create stream {spec.name}", self._js.add_stream(_stream_config(spec)), self._nc
        )

    async def update_stream(self, spec: StreamSpec) -> None:
        """Set a stream's settings to ``spec``'s."""
        await _call(
            f"update stream {spec.name}", self._js.update_stream(_stream_config(spec)), self._nc
        )

    async def edit_stream(self, info: StreamInfo, changes: Mapping[str, Any]) -> None:
        """Change the settings ``changes`` names, keeping the rest as the server has them.

        ``changes`` uses :class:`StreamInfo`'s names.
        """
        fields = {_NATS_NAMES.get(k, k): v for k, v in changes.items()}
        if "subjects" in fields:
            fields["subjects"] = list(fields["subjects"])
        if "retention" in fields:
            fields["retention"] = api.RetentionPolicy(fields["retention"])
        config = dataclasses.replace(cast(api.StreamConfig, info.raw), **fields)
        await _call(f"update stream {info.name}", self._js.update_stream(config))

    async def consumer_info(self, stream: str, name: str) -> ConsumerInfo:
        """The consumer ``name`` of ``stream``."""
        info = await _call(f"read consumer {name} of {stream}",
                           self._js.consumer_info(stream, name))  # fmt: skip
        return _consumer_info(info)

    async def consumers(self, stream: str) -> list[ConsumerInfo]:
        """The consumers of ``stream``."""
        infos = await _call(f"list the consumers of {stream}", self._js.consumers_info(stream))
        return [_consumer_info(ci) for ci in infos]

    async def add_consumer(self, stream: str, spec: ConsumerSpec) -> None:
        """Make a consumer, or set an existing one's settings to ``spec``'s."""
        await _call(f"make consumer {spec.name} of {stream}",
                    self._js.add_consumer(stream, _consumer_config(spec)), self._nc)  # fmt: skip

    async def edit_consumer(self, stream: str, info: ConsumerInfo, **changes: Any) -> None:
        """Change the settings ``changes`` names, keeping the rest as the server has them."""
        config = dataclasses.replace(cast(api.ConsumerConfig, info.raw), **changes)
        await _call(f"update consumer {info.name} of {stream}",
                    self._js.add_consumer(stream, config))  # fmt: skip

    async def pull(self, stream: str, consumer: str) -> PullSubscription:
        """Bind to the durable pull consumer ``consumer`` of ``stream``."""
        refused = subscriptions_refused(self._nc)
        what = f"bind to consumer {consumer} of {stream}"
        psub = await _call(what, self._js.pull_subscribe_bind(consumer, stream=stream))
        await _call(what, round_trip(self._nc))
        if subscriptions_refused(self._nc) > refused:  # its inbox's SUB: no fetch would end
            with contextlib.suppress(nats.errors.Error):
                await psub.unsubscribe()
            raise quota_exceeded(
                "subscriptions", f"cannot {what}", tenant=tenant_of_account(account(self._nc))
            )
        return PullSubscription(psub, f"{stream}/{consumer}")

    async def get_msg(
        self, stream: str, seq: int, *, subject: str | None = None, next: bool = False
    ) -> StoredMessage:
        """The message ``seq`` of ``stream`` (``next``: the first on ``subject`` from it)."""
        raw = await _call(f"read message {seq} of {stream}",
                          self._js.get_msg(stream, seq, subject=subject, next=next))  # fmt: skip
        return StoredMessage(
            raw.seq or seq,
            raw.subject or subject or "",
            # get_msg parses headers with the email parser (non-ASCII values as Header).
            {k: str(v) for k, v in (raw.headers or {}).items()},
            raw.data or b"",
            raw.time.timestamp() if raw.time is not None else 0.0,
        )

    async def subjects(self, stream: str, subjects: str) -> list[str]:
        """The subjects matching ``subjects`` that hold messages in ``stream``."""
        info = await _call(f"read stream {stream!r}",
                           self._js.stream_info(stream, subjects_filter=subjects))  # fmt: skip
        return sorted(info.state.subjects or {})

    async def last(self, stream: str, subject: str) -> StoredMessage | None:
        """The last message on ``subject`` in ``stream``, or None."""
        try:
            return await self.get_msg(stream, 0, subject=subject)
        except NotFound:
            return None

    async def purge(self, stream: str, subject: str) -> None:
        """Remove every message on ``subject`` from ``stream``."""
        await _call(
            f"purge {subject!r} of {stream}", self._js.purge_stream(stream, subject=subject)
        )

    async def delete_msg(self, stream: str, seq: int) -> None:
        """Remove the message ``seq`` from ``stream``."""
        await _call(f"delete message {seq} of {stream}", self._js.delete_msg(stream, seq))

    async def subscribe_into(self, subject: str, queue: str, mailbox: Mailbox[Any]) -> object:
        """Deliver core messages on ``subject`` (advisories) into ``mailbox``.

        Returns a handle for :meth:`unsubscribe`.
        """
        return await _call(f"subscribe to {subject!r}",
                           subscribe_into(self._nc, subject, queue, mailbox))  # fmt: skip

    async def subscribe_callback(
        self, subject: str, callback: Callable[[Incoming], Awaitable[None]]
    ) -> object:
        """Call ``callback`` (which must only hand over) for each message on ``subject``."""
        return await _call(f"subscribe to {subject!r}",
                           subscribe_callback(self._nc, subject, callback))  # fmt: skip

    @staticmethod
    async def unsubscribe(handle: object) -> None:
        """Stop a subscription made here."""
        await unsubscribe(cast(RawSubscription, handle))

    def new_inbox(self) -> str:
        """A unique subject under the connection's inbox prefix."""
        return new_inbox(self._nc)

    async def key_value(
        self, bucket: str, *, ttl: float | None, max_value_size: int
    ) -> KeyValueBucket:
        """The key-value bucket ``bucket``, made when missing (one value per key).

        Raises:
            ConfigError: it exists with another ``ttl``.
        """
        what = f"open key-value bucket {bucket}"
        try:
            kv = await _call(what, self._js.key_value(bucket))
        except (nats.js.errors.BucketNotFoundError, NotFound):
            config = api.KeyValueConfig(
                bucket=bucket, history=1, ttl=ttl,
                max_value_size=max_value_size if max_value_size > 0 else None,
            )  # fmt: skip
            kv = await _call(what, self._js.create_key_value(config), self._nc)
        else:
            info = await self.stream_info(f"KV_{bucket}")
            kept = info.max_age or None
            if (kept or None) != (ttl or None) and not (kept and ttl and abs(kept - ttl) < 1e-3):
                raise ConfigError(
                    f"key-value bucket {bucket} keeps keys for {kept} s, this process wants "
                    f"{ttl} s: use one lease time for the whole tenant, or delete the bucket"
                )
        return KeyValueBucket(kv, self._js, bucket, self.timeout)

    async def object_store(self, bucket: str, *, ttl: float) -> ObjectBucket:
        """The object bucket ``bucket``, made when missing (objects kept ``ttl`` s at most).

        Raises:
            ConfigError: it exists with another ``ttl``.
        """
        what = f"open object store {bucket}"
        try:
            obs = await _call(what, self._js.object_store(bucket))
        except (nats.js.errors.BucketNotFoundError, NotFound):
            config = api.ObjectStoreConfig(bucket=bucket, ttl=ttl)
            obs = await _call(what, self._js.create_object_store(bucket, config=config), self._nc)
        else:
            info = await self.stream_info(f"OBJ_{bucket}")
            if info.max_age is None or abs(info.max_age - ttl) > 1e-3:
                raise ConfigError(
                    f"object store {bucket} keeps objects {info.max_age} s, this process "
                    f"wants {ttl} s: use one SDK_CLAIM_TTL for the whole tenant, or delete "
                    "the bucket"
                )
        return ObjectBucket(obs, self._js, bucket)
