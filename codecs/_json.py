"""The JSON codec (orjson underneath), the default codec of the SDK."""

from __future__ import annotations

from typing import Any, Final, Protocol, final

import orjson

from motadata_actors._errors import CodecError

__all__ = ("Codec", "JsonCodec")


class Codec(Protocol):
    """Turns plain values into bytes and back; pure and synchronous.

    Plain values are None, bool, int, float, str, lists and string-keyed dicts.
    """

    @property
    def name(self) -> str:
        """The codec's name, as in ``CODEC_TYPE``."""
        ...

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header value of bodies it encodes."""
        ...

    def encode(self, value: Any) -> bytes:
        """Encode a plain value; raise :class:`CodecError` if it cannot be carried."""
        ...

    def decode(self, data: bytes) -> Any:
        """Decode bytes into a plain value; raise :class:`CodecError` if malformed."""
        ...


@final
class JsonCodec:
    """JSON as UTF-8 (RFC 8259), via orjson: the default, human-readable codec.

    Integers beyond 64 bits and non-string dict keys are refused with a
    :class:`CodecError` rather than silently changed.
    """

    name: Final = "json"
    content_type: Final = "application/json"

    def encode(self, value: Any) -> bytes:
        """Encode ``value`` as JSON bytes."""
        try:
            return orjson.dumps(value)
        except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
            raise CodecError(f"cannot encode as JSON: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        """Decode JSON bytes (an empty body decodes to None)."""
        if not data:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"malformed JSON body: {exc}") from exc
