"""The envelope: SDK header names, message ids, sizes, and body encoding (sans-io).

Everything about a message travels in NATS headers; the body is the codec's bytes
and nothing else. Headers are sparse (each costs about a microsecond to parse in
nats-py), so a sender adds only what DESIGN.md's header table asks for, and a
receiver treats a missing header as its default.
"""

from __future__ import annotations

import itertools
import os
import time
from base64 import urlsafe_b64encode
from collections.abc import Mapping
from typing import Any, Final

from motadata_actors._errors import CodecError, MessageTooLarge
from motadata_actors.codecs import Codec, Codecs, wire_name_of

__all__ = (
    "ATTEMPT",
    "CONTENT_TYPE",
    "CORRELATION_ID",
    "DEAD_REASON",
    "ERROR",
    "MESSAGE_ID",
    "MESSAGE_TYPE",
    "REPLY_TO",
    "STREAM_END",
    "STREAM_SEQ",
    "STREAM_WINDOW",
    "TENANT_ID",
    "TIMEOUT_MS",
    "dead_letter_headers",
    "decode_body",
    "decode_error",
    "encode_body",
    "encode_error",
    "message_id_time",
    "message_size",
    "new_message_id",
    "received_headers",
)

CONTENT_TYPE: Final = "Content-Type"
MESSAGE_TYPE: Final = "Sdk-Message-Type"
MESSAGE_ID: Final = "Sdk-Message-Id"
CORRELATION_ID: Final = "Sdk-Correlation-Id"
TENANT_ID: Final = "Sdk-Tenant-Id"
TIMEOUT_MS: Final = "Sdk-Timeout-Ms"
ATTEMPT: Final = "Sdk-Attempt"
REPLY_TO: Final = "Sdk-Reply-To"
ERROR: Final = "Sdk-Error"
DEAD_REASON: Final = "Sdk-Dead-Reason"
STREAM_SEQ: Final = "Sdk-Stream-Seq"
STREAM_END: Final = "Sdk-Stream-End"
STREAM_WINDOW: Final = "Sdk-Stream-Window"

# Every header a receiver reads, in the case our senders write it. Received names are
# matched without regard to case (HTTP's rule, which NATS headers follow), so a foreign
# client's ``sdk-tenant-id`` is checked like ``Sdk-Tenant-Id``.
_KNOWN: Final = (
    CONTENT_TYPE, MESSAGE_TYPE, MESSAGE_ID, CORRELATION_ID, TENANT_ID, TIMEOUT_MS,
    ATTEMPT, REPLY_TO, ERROR, DEAD_REASON, STREAM_SEQ, STREAM_END, STREAM_WINDOW,
    "traceparent", "tracestate", "baggage", "Nats-Msg-Id", "Status", "Description",
)  # fmt: skip
_KNOWN_NAMES: Final = frozenset(_KNOWN)
_CANONICAL: Final = {name.lower(): name for name in _KNOWN}

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
    values = headers.values()
    # C-speed passes: this runs for every message sent and received.
    size = _HEADER_BLOCK_OVERHEAD + len(data) + 4 * len(headers) + sum(map(len, headers))
    if all(map(str.isascii, values)):
        return size + sum(map(len, values))
    return size + sum(len(v.encode()) for v in values)


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

    Raises:
        EncodeError: ``obj`` is outside the value model, or a typed field is wrong.
        MessageTooLarge: the body exceeds the codec's size limit.
    """
    headers[CONTENT_TYPE] = codec.content_type
    wire_name = wire_name_of(obj)
    if wire_name is not None:
        headers[MESSAGE_TYPE] = wire_name
    return codec.encode(obj)


def decode_body(data: bytes, headers: Mapping[str, str] | None, codecs: Codecs) -> Any:
    """Decode a body by its ``Content-Type`` (JSON when absent), as its registered type.

    Raises:
        CodecError: unsupported content type or unknown message type.
        DecodeError: malformed bytes, a limit exceeded, or fields that do not fit.
    """
    if not headers:
        return codecs.for_content_type(None).decode(data)
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
    headers = {CONTENT_TYPE: codec.content_type, ERROR: type_name}
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
