"""The envelope: SDK header names, message ids, sizes, and body encoding (sans-io).

Everything about a message travels in NATS headers; the body is the codec's bytes
and nothing else. Headers are sparse (each costs about a microsecond to parse in
nats-py), so a sender adds only what DESIGN.md's header table asks for, and a
receiver treats a missing header as its default.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from base64 import urlsafe_b64encode
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast, final

from motadata_actors._errors import (
    CodecError,
    ConfigError,
    DecodeError,
    MessageTooLarge,
    SealError,
)
from motadata_actors.codecs import Codec, Codecs, KeyRing, wire_name_of

from ._compress import ZSTD, compress, decompress

if TYPE_CHECKING:
    from ._transport import Incoming

__all__ = (
    "ATTEMPT",
    "CLAIM",
    "CONTENT_ENCODING",
    "CONTENT_TYPE",
    "CORRELATION_ID",
    "DEAD_REASON",
    "ERROR",
    "EXPIRES",
    "KEY_ID",
    "MAX_WINDOW",
    "MESSAGE_ID",
    "MESSAGE_TYPE",
    "PROGRESS_TO",
    "REPLY_TO",
    "STREAM_END",
    "STREAM_SEQ",
    "STREAM_WINDOW",
    "TENANT_ID",
    "TIMEOUT_MS",
    "Claimed",
    "Letter",
    "Sealed",
    "SharedMessage",
    "cancel",
    "claimed_name",
    "credit",
    "dead_letter_headers",
    "decode_body",
    "decode_error",
    "encode_body",
    "encode_error",
    "message_id_time",
    "is_pub_ack_body",
    "message_size",
    "new_message_id",
    "open_state",
    "received_headers",
    "replayed",
    "seal",
    "seal_end",
    "seal_error",
    "seal_part",
    "seal_reminder",
    "seal_state",
    "user_headers",
    "reminder_of",
    "stored",
)

CONTENT_TYPE: Final = "Content-Type"
JSON_CONTENT_TYPE: Final = "application/json"
"""What an absent ``Content-Type`` means, and so never sent."""
CONTENT_ENCODING: Final = "Content-Encoding"
KEY_ID: Final = "Sdk-Key-Id"
CLAIM: Final = "Sdk-Claim"
MESSAGE_TYPE: Final = "Sdk-Message-Type"
MESSAGE_ID: Final = "Sdk-Message-Id"
CORRELATION_ID: Final = "Sdk-Correlation-Id"
TENANT_ID: Final = "Sdk-Tenant-Id"
TIMEOUT_MS: Final = "Sdk-Timeout-Ms"
EXPIRES: Final = "Sdk-Expires"
ATTEMPT: Final = "Sdk-Attempt"
REPLY_TO: Final = "Sdk-Reply-To"
ERROR: Final = "Sdk-Error"
DEAD_REASON: Final = "Sdk-Dead-Reason"
STREAM_SEQ: Final = "Sdk-Stream-Seq"
STREAM_END: Final = "Sdk-Stream-End"
STREAM_WINDOW: Final = "Sdk-Stream-Window"
PROGRESS_TO: Final = "Sdk-Progress-To"

# Every header a receiver reads, in the case our senders write it. Received names are
# matched without regard to case (HTTP's rule, which NATS headers follow), so a foreign
# client's ``sdk-tenant-id`` is checked like ``Sdk-Tenant-Id``.
_KNOWN: Final = (
    CONTENT_TYPE, MESSAGE_TYPE, MESSAGE_ID, CORRELATION_ID, TENANT_ID, TIMEOUT_MS,
    ATTEMPT, REPLY_TO, ERROR, DEAD_REASON, STREAM_SEQ, STREAM_END, STREAM_WINDOW, EXPIRES,
    "traceparent", "tracestate", "baggage", "Nats-Msg-Id", "Status", "Description",
    CONTENT_ENCODING, KEY_ID, CLAIM, PROGRESS_TO,
)  # fmt: skip
_KNOWN_NAMES: Final = frozenset(_KNOWN)
_CANONICAL: Final = {name.lower(): name for name in _KNOWN}

MAX_WINDOW: Final = 10_000
"""The most parts a streaming reply's credit window may hold."""

# Unique across processes (random prefix) and cheap per message (a counter).
_ID_PREFIX: Final = urlsafe_b64encode(os.urandom(9)).decode()
_ID_COUNTER = itertools.count(1)

# "NATS/1.0\r\n" ... "\r\n": the fixed part of a NATS header block.
_HEADER_BLOCK_OVERHEAD: Final = 12


def new_message_id() -> str:
    """Return a new message id, unique across processes: ``<random>.<seconds>.<counter>``.

    The seconds (since the epoch, hex) let a receiver tell a replay made long after the
    message was sent (:func:`message_id_time`).
    """
    return f"{_ID_PREFIX}.{int(time.time()):08x}.{next(_ID_COUNTER):x}"


def message_id_time(message_id: str) -> int | None:
    """When :func:`new_message_id` made ``message_id`` (epoch seconds); None for other ids."""
    # <12 chars>.<8 hex digits>.<hex>: fixed offsets, so no split per message.
    if len(message_id) < 23 or message_id[21] != "." or message_id[12] != ".":
        return None
    seconds = message_id[13:21]
    if not (seconds.isascii() and seconds.isalnum()):  # int() takes signs, "_", spaces
        return None
    try:
        return int(seconds, 16)
    except ValueError:  # letters past f
        return None


def received_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Received headers with every name a receiver reads in its canonical case.

    Returns ``headers`` itself when every name already is (what our senders write: a few
    set lookups); otherwise a new dict, other names kept as they came.

    Raises:
        CodecError: one name appears twice in different cases (``Sdk-Tenant-Id`` and
            ``sdk-tenant-id``): which one counts would be a guess, so the message is refused.
    """
    if not headers:
        return headers
    for name in headers:
        if name not in _KNOWN_NAMES:
            break
    else:
        return headers
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in seen:
            raise CodecError(f"header {name!r} appears more than once, in different cases")
        seen.add(lowered)
        out[_CANONICAL.get(lowered, name)] = value
    return out


def message_size(data: bytes, headers: Mapping[str, str] | None) -> int:
    """Return the size a NATS server counts against ``max_payload``: header block plus body."""
    if not headers:
        return len(data)
    # "<name>: <value>\r\n" per header. One pass: for the few headers a message has, a
    # loop costs half what map/sum passes do (this runs for every message sent and received).
    size = _HEADER_BLOCK_OVERHEAD + len(data) + 4 * len(headers)
    for name, value in headers.items():
        size += len(name) + (len(value) if value.isascii() else len(value.encode()))
    return size


def check_size(data: bytes, headers: Mapping[str, str] | None, limit: int) -> None:
    """Raise :class:`MessageTooLarge` if the message would exceed ``limit`` bytes."""
    if len(data) > limit - _HEADER_BLOCK_OVERHEAD or headers:
        size = message_size(data, headers)
        if size > limit:
            raise MessageTooLarge(size, limit)


def dead_letter_headers(headers: Mapping[str, str] | None, reason: str) -> dict[str, str]:
    """The original headers plus ``Sdk-Dead-Reason``, less JetStream's ``Nats-*`` controls.

    A sender's ``Nats-Msg-Id`` or ``Nats-Expected-*`` header must not steer how the
    dead-letter stream stores the copy.
    """
    out = {k: v for k, v in (headers or {}).items() if not k.lower().startswith("nats-")}
    out[DEAD_REASON] = reason.replace("\r", " ").replace("\n", " ")[:512]
    return out


def encode_body(obj: object, codec: Codec, headers: dict[str, str]) -> bytes:
    """Encode ``obj`` with ``codec``; set ``Content-Type``, and ``Sdk-Message-Type`` if typed.

    JSON, the default, goes without ``Content-Type`` (its absence means JSON): a header that
    says nothing costs both ends a header block to build and parse.

    Raises:
        EncodeError: ``obj`` is outside the value model, or a typed field is wrong.
        MessageTooLarge: the body exceeds the codec's size limit.
    """
    _type_headers(obj, codec, headers)
    return codec.encode(obj)


def _type_headers(obj: object, codec: Codec, headers: dict[str, str]) -> None:
    if codec.content_type != JSON_CONTENT_TYPE:
        headers[CONTENT_TYPE] = codec.content_type
    wire_name = wire_name_of(obj)
    if wire_name is not None:
        headers[MESSAGE_TYPE] = wire_name


def _bound(headers: Mapping[str, str]) -> bytes:
    """What a sealed body is bound to: its content type and message type."""
    return f"{headers.get(CONTENT_TYPE, '')}|{headers.get(MESSAGE_TYPE, '')}".encode()


def decode_body(data: bytes, headers: Mapping[str, str] | None, codecs: Codecs) -> Any:
    """Decode a body by its ``Content-Type`` (JSON when absent), as its registered type.

    Raises:
        CodecError: unsupported content type or unknown message type.
        DecodeError: malformed bytes, a limit exceeded, or fields that do not fit.
    """
    if not headers:
        return codecs.for_content_type(None).decode(data)
    kid = headers.get(KEY_ID)
    if kid is not None:
        if codecs.keys is None:
            raise SealError(f"a body sealed with key {kid!r}, and this process seals nothing")
        data = codecs.keys.open(kid, data, _bound(headers))
    encoding = headers.get(CONTENT_ENCODING)
    if encoding is not None:
        data = decompress(data, encoding, codecs.limits.max_size)
    codec = codecs.for_content_type(headers.get(CONTENT_TYPE))
    wire_name = headers.get(MESSAGE_TYPE)
    if wire_name is None:
        return codec.decode(data)
    return codec.decode(data, codecs.registry.lookup(wire_name))


def encode_error(
    type_name: str, message: str, codec: Codec, *, origin: str
) -> tuple[bytes, dict[str, str]]:
    """Build an error reply: ``Sdk-Error`` names the type, the body carries the details.

    ``origin`` is ``"handler"`` when user code raised, ``"sdk"`` when the framework
    rejected the message (undecodable, wrong tenant, ...).
    """
    headers = {ERROR: type_name}
    if codec.content_type != JSON_CONTENT_TYPE:
        headers[CONTENT_TYPE] = codec.content_type
    body = codec.encode({"type": type_name, "message": message, "origin": origin})
    return body, headers


def decode_error(data: bytes, headers: Mapping[str, str], codecs: Codecs) -> tuple[str, str, str]:
    """Return ``(type_name, message, origin)`` from an error reply, tolerating odd bodies."""
    type_name = headers.get(ERROR, "Error")
    try:
        body = codecs.for_content_type(headers.get(CONTENT_TYPE)).decode(data)
    except CodecError:
        return type_name, data[:200].decode(errors="replace"), "handler"
    if isinstance(body, Mapping):
        return type_name, str(body.get("message", "")), str(body.get("origin", "handler"))
    return type_name, str(body), "handler"


# -- one call per direction ---------------------------------------------------------------
#
# Senders make a message with one of the ``seal*`` functions below; receivers read one with
# :meth:`Letter.open`. No other module knows a header's name or a value's format.

_STATUS: Final = "Status"  # nats-server's inline status (503: no responders)
_NO_RESPONDERS: Final = "503"
_CANCEL: Final = "cancel"
_BARE_END: Final = "empty"  # Sdk-Stream-End of a last message without a result
_ENDS: Final = ("1", _BARE_END)
_MSG_ID_JS: Final = "Nats-Msg-Id"
_EXPECT_SEQ_JS: Final = "Nats-Expected-Last-Subject-Sequence"
_TTL_JS: Final = "Nats-TTL"
_PUB_ACK: Final = b'{"stream":'
# A resend from the dead-letter store drops what belonged to the first attempt.
_NOT_REPLAYED: Final = frozenset(
    # a replay starts afresh: its asker is long gone
    {DEAD_REASON, TIMEOUT_MS, ATTEMPT, REPLY_TO, STREAM_WINDOW, EXPIRES, PROGRESS_TO}
)


class _Ids:
    """The ids a message carries, read from its headers (what sent and read share)."""

    __slots__ = ()
    headers: dict[str, str]

    @property
    def message_id(self) -> str | None:
        """``Sdk-Message-Id``, when it has one."""
        return self.headers.get(MESSAGE_ID)

    @property
    def correlation_id(self) -> str | None:
        """``Sdk-Correlation-Id``, when it has one."""
        return self.headers.get(CORRELATION_ID)


class _NotShared:
    """The ``value`` of a message that travels as bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_SHARED"


NOT_SHARED: Final = _NotShared()


@final
class Sealed(_Ids):
    """A message ready to send: its body, and the headers that say what it is.

    Attributes:
        data: the codec's bytes (empty when the value is shared).
        headers: the headers (the senders' telemetry may add the trace context).
        value: an immutable value handed over in process as itself, without bytes
            (:data:`NOT_SHARED`: the message travels as ``data``).
        bound: for a shared value, an upper bound of its encoded size.
    """

    __slots__ = ("_codec", "bound", "data", "headers", "value")

    def __init__(
        self,
        data: bytes,
        headers: dict[str, str],
        value: object = NOT_SHARED,
        codec: Codec | None = None,
        bound: int = 0,
    ) -> None:
        self.data = data
        self.headers = headers
        self.value = value
        self._codec = codec
        self.bound = bound

    @property
    def shared(self) -> bool:
        """Whether the value is handed over as itself (in process only)."""
        return self.value is not NOT_SHARED

    def encoded(self) -> bytes:
        """The body's bytes, made now for a shared value (to keep it as a dead letter, say)."""
        if self.value is NOT_SHARED or self._codec is None:
            return self.data
        return self._codec.encode(self.value)

    def compress(self) -> None:
        """Compress the body with zstd (``Content-Encoding: zstd``) when that makes it smaller.

        Raises:
            ConfigError: zstandard is not installed.
        """
        packed = compress(self.data)
        if len(packed) < len(self.data):
            self.data = packed
            self.headers[CONTENT_ENCODING] = ZSTD

    def seal_body(self, keys: KeyRing) -> None:
        """Encrypt the body with the ring's current key (``Sdk-Key-Id``), last of all."""
        kid, self.data = keys.seal(self.data, _bound(self.headers))
        self.headers[KEY_ID] = kid

    def check_in(self, name: str) -> bytes:
        """Leave the body out: it is kept as object ``name`` (``Sdk-Claim: <name> <size>``).

        Returns the body, for the object store. Its headers still say what it is
        (content type, message type, encoding, key), so the receiver reads it as if it had
        come in the message.
        """
        data = self.data
        self.headers[CLAIM] = f"{name} {len(data)}"
        self.data = b""
        return data

    def expire_after(self, ttl: float) -> None:
        """Give it a time to live: ``Sdk-Expires``, the wall-clock time (epoch ms) it ends.

        A receiver drops it once past (dead-lettered as expired); a JetStream stream
        removes it by itself then (``Nats-TTL``, set by :func:`stored`).
        """
        self.headers[EXPIRES] = str(int((time.time() + ttl) * 1000))

    def attempt(self, number: int, timeout: float) -> None:
        """Make it attempt ``number`` (from 1) of an ask that may take ``timeout`` seconds."""
        self.headers[TIMEOUT_MS] = str(max(1, round(timeout * 1000)))
        if number > 1:
            self.headers[ATTEMPT] = str(number)

    def streaming(self, window: int, window_bytes: int) -> None:
        """Make it a streaming ask with a credit window of parts and bytes."""
        self.headers[STREAM_WINDOW] = f"{window} {window_bytes}"

    def report_progress(self, inbox: str) -> None:
        """Ask the handler to send its progress reports to ``inbox`` (``Sdk-Progress-To``)."""
        self.headers[PROGRESS_TO] = inbox

    def replying_to(self, inbox: str) -> dict[str, str]:
        """Its headers naming ``inbox`` in ``Sdk-Reply-To`` (JetStream keeps no reply subject)."""
        return {**self.headers, REPLY_TO: inbox}


_USER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_RESERVED_PREFIXES: Final = ("sdk-", "nats-")


def user_headers(headers: object) -> dict[str, str]:
    """Check headers a user attaches to a message; return them as a new dict.

    Names are HTTP-style tokens (1-128 characters); values printable text without line
    breaks. ``Sdk-*`` and ``Nats-*`` (the framework's and the server's), ``Content-Type``,
    ``Content-Encoding`` and the trace context (``traceparent``, ``tracestate``,
    ``baggage``) are reserved, in any case.

    Raises:
        ConfigError: not a mapping of str to str, a malformed name or value, or a
            reserved name.
    """
    if not isinstance(headers, Mapping):
        raise ConfigError(f"headers must be a mapping of str to str, not {type(headers).__name__}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
            raise ConfigError(f"header name {name!r} is not a token of 1 to 128 characters")
        lowered = name.lower()
        if lowered.startswith(_RESERVED_PREFIXES) or lowered in _RESERVED_NAMES:
            raise ConfigError(
                f"header {name!r} is reserved (Sdk-*, Nats-*, Content-Type, Content-Encoding "
                "and the trace context are the framework's): choose another name"
            )
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            raise ConfigError(f"header {name!r} must be printable text without line breaks")
        out[name] = value
    return out


_RESERVED_NAMES: Final = frozenset(
    ("content-type", "content-encoding", "traceparent", "tracestate", "baggage")
)  # and every Sdk-* (Sdk-Key-Id, ...) and Nats-* name
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def seal(
    body: object,
    codec: Codec,
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    extra: dict[str, str] | None = None,
    share: int = 0,
) -> Sealed:
    """A tell, ask, event, workflow step or reply: ``body`` encoded, ids as given.

    ``extra``: headers checked by :func:`user_headers`, sent along. ``share``: the largest
    encoded size (bound) of an immutable ``body`` to hand over in process as itself,
    unencoded (0: always encoded); the codec decides what is immutable
    (``shared_size``), and any body it would not give back as an equal value is encoded.

    Raises:
        EncodeError: ``body`` is outside the value model, or a typed field is wrong.
        MessageTooLarge: the body exceeds the codec's size limit.
    """
    headers: dict[str, str] = dict(extra) if extra else {}
    if message_id is not None:
        headers[MESSAGE_ID] = message_id
    if correlation_id is not None:
        headers[CORRELATION_ID] = correlation_id
    if share and not extra:
        shared_size = getattr(type(codec), "shared_size", None)  # a plugin's codec may lack it
        if shared_size is not None:
            bound: int = shared_size(codec, body)
            if 0 <= bound <= share:
                _type_headers(body, codec, headers)
                return Sealed(b"", headers, body, codec, bound)
    data = encode_body(body, codec, headers)
    return Sealed(data, headers)


def seal_error(
    type_name: str, message: str, origin: str, codec: Codec, *, stream_end: int | None = None
) -> Sealed:
    """An error reply (``Sdk-Error``); ``stream_end``: the number of a stream's last part."""
    data, headers = encode_error(type_name, message, codec, origin=origin)
    if stream_end is not None:
        headers[STREAM_SEQ] = str(stream_end)
        headers[STREAM_END] = "1"
    return Sealed(data, headers)


def seal_part(part: object, codec: Codec, seq: int) -> Sealed:
    """Part ``seq`` (from 1) of a streaming reply.

    Raises:
        EncodeError: ``part`` is outside the value model.
        MessageTooLarge: the body exceeds the codec's size limit.
    """
    headers: dict[str, str] = {}
    data = encode_body(part, codec, headers)
    headers[STREAM_SEQ] = str(seq)
    return Sealed(data, headers)


def seal_end(result: object, codec: Codec, seq: int, *, has_result: bool) -> Sealed:
    """The last message of a streaming reply: the handler's return value, or nothing."""
    headers: dict[str, str] = {}
    data = encode_body(result, codec, headers) if has_result else b""
    headers[STREAM_SEQ] = str(seq)
    headers[STREAM_END] = "1" if has_result else _BARE_END
    return Sealed(data, headers)


def credit(taken: int) -> Sealed:
    """A stream consumer's report: it has taken ``taken`` parts."""
    return Sealed(b"", {STREAM_SEQ: str(taken)})


def cancel() -> Sealed:
    """A stream consumer's cancel: stop producing."""
    return Sealed(b"", {STREAM_END: _CANCEL})


def stored(headers: Mapping[str, str], *, expect_last_seq: int | None = None) -> dict[str, str]:
    """Headers for a JetStream publish: ``Sdk-Message-Id`` also as ``Nats-Msg-Id`` (dedup)."""
    out = dict(headers)
    message_id = headers.get(MESSAGE_ID)
    if message_id is not None:
        out[_MSG_ID_JS] = message_id
    expires = headers.get(EXPIRES)
    if expires is not None and expires.isdigit():  # the stream forgets it then (whole s)
        left = int(expires) / 1000 - time.time()
        out[_TTL_JS] = f"{max(1, math.ceil(left))}s"
    if expect_last_seq is not None:
        out[_EXPECT_SEQ_JS] = str(expect_last_seq)
    return out


def replayed(headers: Mapping[str, str]) -> dict[str, str]:
    """A dead letter's headers for a deliberate resend.

    Without the dead reason and what belonged to the first attempt (an ask's deadline,
    attempt and reply inbox, a stream's window), with a fresh ``Sdk-Message-Id`` (the old
    one would be refused as a replay).
    """
    out = {k: v for k, v in headers.items() if k not in _NOT_REPLAYED}
    out[MESSAGE_ID] = new_message_id()
    return out


_OBJECT_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def claimed_name(headers: Mapping[str, str] | None) -> str | None:
    """The object a received message's body is kept as (``Sdk-Claim``), or None."""
    claim = headers.get(CLAIM) if headers else None
    if claim is None:
        return None
    name = claim.split(" ", 1)[0]
    return name if _OBJECT_NAME.fullmatch(name) else None


@final
class Claimed:
    """A body kept in the tenant's object store (``Sdk-Claim: <name> <size>``).

    Attributes:
        name: the object's name.
        size: its bytes.
        headers: the message's headers, which say how to read the body.
    """

    __slots__ = ("headers", "name", "size")

    def __init__(self, name: str, size: int, headers: dict[str, str]) -> None:
        self.name = name
        self.size = size
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Claimed {self.name} {self.size} bytes>"

    @property
    def content_type(self) -> str:
        """The body's ``Content-Type`` (JSON when absent)."""
        return self.headers.get(CONTENT_TYPE, JSON_CONTENT_TYPE)

    @property
    def plain(self) -> bool:
        """Whether the kept bytes are the codec's own (neither compressed nor sealed)."""
        return CONTENT_ENCODING not in self.headers and KEY_ID not in self.headers

    @classmethod
    def read(cls, headers: dict[str, str], inline: int) -> Claimed:
        """The claim ``headers`` carry.

        Raises:
            DecodeError: a malformed claim, or a body in the message beside it.
        """
        fields = headers[CLAIM].split(" ")
        if len(fields) != 2 or not _OBJECT_NAME.fullmatch(fields[0]) or not fields[1].isdigit():
            raise DecodeError("claim", None, f"malformed {CLAIM} {headers[CLAIM][:100]!r}")
        if inline:
            raise DecodeError("claim", None, f"a body of {inline} bytes beside {CLAIM}")
        return cls(fields[0], int(fields[1]), headers)

    def decode(self, data: bytes | bytearray, codecs: Codecs) -> Any:
        """Decode the fetched body, as if it had come in the message.

        Raises:
            DecodeError: it is not the size the claim says, or does not decode.
            CodecError: an unknown content or message type.
        """
        if len(data) != self.size:
            raise DecodeError(
                "claim", None, f"object {self.name} has {len(data)} bytes, not {self.size}"
            )
        # Every codec, decompression and opening read any bytes-like body: no copy of a
        # large body into bytes.
        return decode_body(cast(bytes, data), self.headers, codecs)


def is_pub_ack_body(data: bytes) -> bool:
    """Whether a body without headers is JetStream's acknowledgement of a stored message."""
    return data.startswith(_PUB_ACK) and b'"seq":' in data


@final
class SharedMessage:
    """A message delivered in process as the sender's own immutable value, not bytes.

    Made by the in-process transport from a shared :class:`Sealed`; a receiver reads it as
    any other (:class:`Letter`). Its bytes are made only if something needs them (a dead
    letter, a span's size).

    Attributes:
        subject: the subject it arrived on.
        reply: where an answer goes ("" for a tell).
        headers: its headers (None when none).
        value: the value itself.
        bound: an upper bound of its encoded size.
    """

    __slots__ = ("_codec", "_data", "bound", "headers", "reply", "subject", "value")

    def __init__(self, subject: str, reply: str, sealed: Sealed) -> None:
        self.subject = subject
        self.reply = reply
        self.headers = dict(sealed.headers) if sealed.headers else None
        self.value = sealed.value
        self.bound = sealed.bound
        self._codec = sealed._codec
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        """The value encoded, made on first use."""
        if self._data is None:
            assert self._codec is not None
            self._data = self._codec.encode(self.value)
        return self._data

    def take(self, codecs: Codecs) -> Any:
        """The value, as decoding its bytes here would give it.

        A typed message is itself only when this process decodes its wire name to its very
        class and upgrades nothing; otherwise it is decoded from its bytes, as from NATS.
        So is any value when the sender checked it against other limits than the
        receiver's (two systems with different :class:`Limits` on one transport).
        """
        value = self.value
        assert self._codec is not None
        limits = self._codec.limits
        if limits is not codecs.limits and limits != codecs.limits:
            return decode_body(self.data, self.headers, codecs)
        wire_name = self.headers.get(MESSAGE_TYPE) if self.headers else None
        if wire_name is None or codecs.registry.shares(wire_name, type(value)):
            return value
        return decode_body(self.data, self.headers, codecs)


@final
class Letter(_Ids):
    """A received message as a receiver reads it: the headers it trusts, parsed on demand.

    Made by :meth:`open` (one call per message). Header names are matched without regard
    to case; missing headers mean their defaults.

    Attributes:
        subject: the subject it arrived on.
        reply: where an answer goes ("" for a tell).
        data: the body.
        headers: the headers, names in their canonical case (empty when none).
        message: the transport's message it was read from.
    """

    __slots__ = ("headers", "message", "reply", "subject")

    def __init__(self, message: Incoming, headers: dict[str, str] | None) -> None:
        self.message = message
        self.subject = message.subject
        self.reply = message.reply
        self.headers: dict[str, str] = headers if headers is not None else {}

    @property
    def data(self) -> bytes:
        """The body's bytes (a shared value's are made when first read)."""
        return self.message.data

    @classmethod
    def open(cls, message: Incoming) -> Letter:
        """Read ``message``.

        Raises:
            CodecError: one header name twice in different cases (which counts would be a
                guess).
        """
        if type(message) is SharedMessage:  # made here from a Sealed: our names, as written
            return cls(message, message.headers)
        return cls(message, received_headers(message.headers))

    @property
    def tenant(self) -> str | None:
        """``Sdk-Tenant-Id``, when the sender claimed one."""
        return self.headers.get(TENANT_ID)

    @property
    def expires(self) -> float | None:
        """When its time to live ends (``Sdk-Expires``, epoch seconds); None: never."""
        raw = self.headers.get(EXPIRES)
        return int(raw) / 1000 if raw is not None and raw.isdigit() else None

    @property
    def timeout(self) -> float | None:
        """Seconds the asker still waits (``Sdk-Timeout-Ms``); None for none or a malformed one."""
        raw = self.headers.get(TIMEOUT_MS)
        if raw is None or not raw.isdigit():
            return None
        return int(raw) / 1000

    @property
    def attempt(self) -> int:
        """``Sdk-Attempt``: which attempt of an ask this is, from 1."""
        raw = self.headers.get(ATTEMPT)
        return int(raw) if raw is not None and raw.isdigit() and raw != "0" else 1

    @property
    def reply_to(self) -> str:
        """``Sdk-Reply-To``: a stored request's asker, "" when none."""
        return self.headers.get(REPLY_TO, "")

    @property
    def progress_to(self) -> str:
        """``Sdk-Progress-To``: where the asker wants progress reports, "" when nowhere."""
        return self.headers.get(PROGRESS_TO, "")

    @property
    def is_streaming_ask(self) -> bool:
        """Whether the asker reads a streaming reply (``Sdk-Stream-Window``)."""
        return STREAM_WINDOW in self.headers

    def window(self, parts: int, size: int) -> tuple[int, int]:
        """The credit window asked for, parts and bytes; ``parts``/``size`` where malformed."""
        fields = self.headers.get(STREAM_WINDOW, "").split()
        if fields and fields[0].isdigit():
            parts = max(1, min(MAX_WINDOW, int(fields[0])))
        if len(fields) > 1 and fields[1].isdigit():
            size = max(1, int(fields[1]))
        return parts, size

    @property
    def stream_seq(self) -> int | None:
        """``Sdk-Stream-Seq``: a part's number, or a consumer's report; -1 when malformed."""
        raw = self.headers.get(STREAM_SEQ)
        if raw is None:
            return None
        return int(raw) if raw.isdigit() else -1

    @property
    def ends_stream(self) -> bool:
        """Whether it is a streaming reply's last message."""
        return self.headers.get(STREAM_END) in _ENDS

    @property
    def cancels_stream(self) -> bool:
        """Whether it is a stream consumer's cancel."""
        return self.headers.get(STREAM_END) == _CANCEL

    @property
    def has_body(self) -> bool:
        """Whether it carries an encoded value (a stream's bare end does not)."""
        return self.headers.get(STREAM_END) != _BARE_END

    @property
    def error(self) -> str | None:
        """``Sdk-Error``: the type name of an error reply."""
        return self.headers.get(ERROR)

    @property
    def no_responders(self) -> bool:
        """Whether it is the server's no-responders status (nobody had the subject)."""
        return self.headers.get(_STATUS) == _NO_RESPONDERS

    @property
    def is_pub_ack(self) -> bool:
        """Whether it is JetStream's acknowledgement of a stored message, not a reply."""
        if self.headers or type(self.message) is SharedMessage:
            return False
        return is_pub_ack_body(self.data)

    @property
    def dead_reason(self) -> str:
        """``Sdk-Dead-Reason``."""
        return self.headers.get(DEAD_REASON, "")

    @property
    def message_type(self) -> str | None:
        """``Sdk-Message-Type``: a typed message's wire name."""
        return self.headers.get(MESSAGE_TYPE)

    @property
    def content_type(self) -> str | None:
        """``Content-Type``."""
        return self.headers.get(CONTENT_TYPE)

    def size(self) -> int:
        """Headers and body, as the server counts them against ``max_payload``."""
        return message_size(self.data, self.headers)

    def body(self, codecs: Codecs, *, claims: bool = False) -> Any:
        """The decoded body, as its registered type when typed.

        Args:
            codecs: the codecs to decode with.
            claims: a body kept in the object store (``Sdk-Claim``) is returned as a
                :class:`Claimed`, for the receiver to fetch; False: it is an error (only
                tells, asks and replies are claimed).

        Raises:
            CodecError: unsupported content type or unknown message type.
            DecodeError: malformed bytes, a limit exceeded, or fields that do not fit.
        """
        message = self.message
        if type(message) is SharedMessage:
            return message.take(codecs)
        if CLAIM in self.headers:
            if not claims:
                raise DecodeError("claim", None, f"{CLAIM} on a message that is never claimed")
            return Claimed.read(self.headers, len(self.data))
        return decode_body(self.data, self.headers, codecs)

    def error_details(self, codecs: Codecs) -> tuple[str, str, str]:
        """``(type_name, message, origin)`` of an error reply, tolerating odd bodies."""
        return decode_error(self.data, self.headers, codecs)

    def dead_letter_headers(self, reason: str) -> dict[str, str]:
        """Its headers plus ``Sdk-Dead-Reason`` (JetStream's ``Nats-*`` controls left out)."""
        return dead_letter_headers(self.headers, reason)


_STATE_MAGIC: Final = b"sdk-state/1 "


def seal_state(value: object, codec: Codec) -> bytes:
    """An agent's state as kept in a key-value bucket.

    One line ``sdk-state/1 <content type> <message type or ->`` before the body, so a
    state written with one codec or an older version of a ``@message`` class is read
    back as a message would be.

    Raises:
        EncodeError: ``value`` is outside the value model, or a typed field is wrong.
        MessageTooLarge: the body exceeds the codec's size limit.
    """
    headers: dict[str, str] = {}
    body = encode_body(value, codec, headers)
    line = f"{codec.content_type} {headers.get(MESSAGE_TYPE, '-')}\n".encode()
    return _STATE_MAGIC + line + body


def open_state(data: bytes, codecs: Codecs) -> Any:
    """The state ``seal_state`` kept.

    Raises:
        DecodeError: not a kept state, or its body does not decode.
        CodecError: an unknown content or message type.
    """
    end = data.find(b"\n", 0, 512)
    if not data.startswith(_STATE_MAGIC) or end < 0:
        raise DecodeError("state", None, "not kept by motadata-actors (no sdk-state/1 line)")
    try:
        content_type, wire_name = data[len(_STATE_MAGIC) : end].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise DecodeError("state", None, "a malformed sdk-state/1 line") from None
    headers = {CONTENT_TYPE: content_type}
    if wire_name != "-":
        headers[MESSAGE_TYPE] = wire_name
    return decode_body(data[end + 1 :], headers, codecs)


def seal_reminder(value: object, codec: Codec, schedule: str, target: str) -> Sealed:
    """A reminder's definition for a stream that runs schedules.

    ``schedule`` is ``@at <RFC 3339 time>`` or ``@every <seconds>s``; the server publishes
    the body to ``target`` then (and again, for ``@every``), with ``Nats-Scheduler``
    naming the definition's subject. Fired copies expire after a day unread.

    Raises:
        EncodeError, MessageTooLarge: ``value`` cannot be encoded, or is too large.
    """
    headers = {
        "Nats-Schedule": schedule,
        "Nats-Schedule-Target": target,
        "Nats-Schedule-TTL": "86400s",
    }
    return Sealed(seal_state(value, codec), headers)


def reminder_of(msg: Incoming) -> tuple[str, str] | None:
    """``(definition subject, schedule)`` of a fired reminder, or None if it is not one."""
    headers = msg.headers or {}
    subject = headers.get("Nats-Scheduler")
    if not subject:
        return None
    return subject, headers.get("Nats-Schedule", "")
