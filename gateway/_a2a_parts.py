"""Values to A2A parts and back, and our errors to failed tasks and back (sans-io).

Rules, shared by the A2A server and :class:`~motadata_actors.gateway.A2ARef`:

* **A value becomes one part.** A ``str`` is a text part, ``bytes`` a raw part, anything
  else a data part holding its JSON form (the system's JSON codec encodes it); a typed
  message's wire name travels in the part's metadata as ``sdkMessageType``.
* **Parts become a value.** Data parts win: one is its value, several a list; else the
  text parts joined by newlines; else the raw bytes. A data part naming
  ``sdkMessageType`` is decoded as that registered type. A2A carries numbers as doubles
  (``google.protobuf.Value``), so whole numbers come back as ``int`` (exact up to 2**53).
* **An error becomes a failed task** whose status message says what happened and names
  our error type in its metadata (``sdkError``; a :class:`RemoteError` adds the remote
  type, message and actor); :func:`error_of` rebuilds the same type on the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson
from a2a.types.a2a_pb2 import Message, Part, Role
from google.protobuf import json_format, struct_pb2

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    MailboxFull,
    NoResponders,
    RemoteError,
    StreamError,
    TenantError,
)
from motadata_actors.codecs import Codecs
from motadata_actors.mailbox import CONTENT_TYPE, MESSAGE_TYPE, decode_body, encode_body

__all__ = ("error_message", "error_of", "part_of", "value_of", "values_of")

TYPE_KEY: Final = "sdkMessageType"
ERROR_KEY: Final = "sdkError"
_JSON: Final = "application/json"
_EXACT: Final = 2**53
_ERRORS: Final[dict[str, type[ActorsError]]] = {
    **{c.__name__: c for c in (AskTimeout, NoResponders, CodecError, MailboxFull, StreamError,
                               TenantError, ConfigError)},
    **dict.fromkeys(("DecodeError", "EncodeError", "MessageTooLarge", "SealError"), CodecError),
}  # fmt: skip


def part_of(value: object, codecs: Codecs) -> Part:
    """The A2A part carrying ``value``.

    Raises:
        EncodeError: ``value`` is outside the value model.
    """
    if isinstance(value, str):
        return Part(text=value)
    if isinstance(value, (bytes, bytearray)):
        return Part(raw=bytes(value), media_type="application/octet-stream")
    headers: dict[str, str] = {}
    body = encode_body(value, codecs.named("json"), headers)
    data = json_format.ParseDict(orjson.loads(body), struct_pb2.Value())
    part = Part(data=data, media_type=_JSON)
    if MESSAGE_TYPE in headers:
        part.metadata.update({TYPE_KEY: headers[MESSAGE_TYPE]})
    return part


def _whole(value: Any) -> Any:
    """``value`` with whole floats as ints (A2A's JSON is protobuf's: every number a double)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _EXACT else value
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value


def _data(part: Part, codecs: Codecs) -> Any:
    value = _whole(json_format.MessageToDict(part.data))
    wire_name = part.metadata.fields.get(TYPE_KEY) if part.HasField("metadata") else None
    if wire_name is None or not wire_name.string_value:
        return value
    headers = {CONTENT_TYPE: _JSON, MESSAGE_TYPE: wire_name.string_value}
    return decode_body(orjson.dumps(value), headers, codecs)


def values_of(parts: Iterable[Part], codecs: Codecs) -> list[Any]:
    """The value of each part, in order (a URL part is its URL; it is never fetched).

    Raises:
        CodecError: a typed part whose type is unknown or whose fields do not fit.
    """
    out: list[Any] = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "data":
            out.append(_data(part, codecs))
        elif kind == "raw":
            out.append(part.raw)
        elif kind == "url":
            out.append(part.url)
        else:
            out.append(part.text)
    return out


def value_of(parts: Iterable[Part], codecs: Codecs) -> Any:
    """The one value a request's parts make (see the rules above).

    Raises:
        CodecError: no text, data or raw part, or a typed part that does not decode.
    """
    parts = list(parts)
    data = [_data(p, codecs) for p in parts if p.HasField("data")]
    if data:
        return data[0] if len(data) == 1 else data
    texts = [p.text for p in parts if p.HasField("text")]
    if texts:
        return "\n".join(texts)
    raw = [p.raw for p in parts if p.HasField("raw")]
    if raw:
        return raw[0] if len(raw) == 1 else raw
    raise CodecError("an A2A message needs a text, data or raw part (URLs are not fetched)")


def error_message(exc: ActorsError, task_id: str, context_id: str) -> Message:
    """The agent message of a task failed by ``exc``: its text, our type in metadata."""
    meta: dict[str, Any] = {ERROR_KEY: type(exc).__name__}
    if isinstance(exc, RemoteError):
        meta.update(remoteType=exc.type_name, remoteMessage=exc.message)
        if exc.actor:
            meta["actor"] = exc.actor
    message = Message(
        role=Role.ROLE_AGENT, task_id=task_id, context_id=context_id,
        message_id=f"{task_id}-error", parts=[Part(text=f"{type(exc).__name__}: {exc}"[:4096])],
    )  # fmt: skip
    message.metadata.update(meta)
    return message


def error_of(state: str, message: Message | None) -> ActorsError:
    """The error a task that ended in ``state`` (FAILED, CANCELED...) raises at the asker.

    Ours come back as the same type; a foreign agent's as :class:`RemoteError` named
    after the state, with the status message's text.
    """
    meta: Mapping[str, Any] = {}
    text = ""
    if message is not None:
        meta = json_format.MessageToDict(message.metadata) if message.HasField("metadata") else {}
        text = "\n".join(p.text for p in message.parts if p.HasField("text"))
    kind = meta.get(ERROR_KEY)
    if kind == "RemoteError":
        return RemoteError(
            str(meta.get("remoteType", "Error")), str(meta.get("remoteMessage", text)),
            meta.get("actor"),
        )  # fmt: skip
    known = _ERRORS.get(str(kind))
    if known is not None:
        prefix = f"{kind}: "
        return known(text[len(prefix) :] if text.startswith(prefix) else text)
    return RemoteError(str(kind or state), text or f"the agent's task ended {state}")
