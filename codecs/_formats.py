"""JSON (orjson), MessagePack (msgpack) and CBOR (cbor2): the self-describing codecs."""

from __future__ import annotations

from typing import Any, Final, NoReturn, final

import cbor2
import msgpack
import orjson

from ._codec import ValueCodec
from ._limits import Limits
from ._registry import TypeRegistry
from ._strict import (
    cbor_check,
    cbor_settle,
    json_check,
    json_settle,
    msgpack_check,
    msgpack_settle,
    trailing,
)

__all__ = ("CborCodec", "JsonCodec", "MsgpackCodec")


@final
class JsonCodec(ValueCodec):
    """JSON (RFC 8259) as UTF-8, via orjson: the default, human-readable codec.

    orjson was chosen on the benchmark (several times faster than the standard
    library's json). Bytes travel as ``{"$bytes": "<base64>"}``. Decoding is strict
    (``_strict``): no repeated keys, no integer literals outside the model.
    """

    name = "json"
    content_type = "application/json"
    json_bytes = True
    _library_errors = (orjson.JSONDecodeError,)

    def _dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def _loads(self, data: bytes) -> tuple[Any, bool]:
        if not data:
            return None, True
        value = orjson.loads(data)
        verdict = json_check(data, value, self._max_depth, self._max_length)
        if verdict:  # a problem, or work left for the walker
            return value, json_settle(data, value, verdict)
        return value, True


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"MessagePack extension type {code} is not accepted")


@final
class MsgpackCodec(ValueCodec):
    """MessagePack, via msgpack: compact and fast. Bytes are native (bin); no extensions.

    Decoding is strict (``_strict``): no repeated keys (msgpack keeps the last), nothing
    after the value.
    """

    name = "msgpack"
    content_type = "application/msgpack"
    _library_errors = (ValueError, msgpack.UnpackException, TypeError, UnicodeDecodeError)

    def __init__(self, registry: TypeRegistry | None = None, limits: Limits | None = None) -> None:
        super().__init__(registry, limits)
        # One Packer per codec: packb() builds a new one on every call. pack() runs in C
        # holding the GIL and resets its buffer after an error, so reuse is safe.
        self._packer = msgpack.Packer(use_bin_type=True)

    def _dumps(self, value: Any) -> bytes:
        return self._packer.pack(value)  # type: ignore[no-any-return]

    def _loads(self, data: bytes) -> tuple[Any, bool]:
        if not data:
            return None, True
        size = self._max_length
        try:
            value = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                ext_hook=_refuse_ext,
                max_array_len=size,
                max_map_len=size,
                max_ext_len=0,
            )
        except msgpack.ExtraData as exc:
            raise trailing(len(exc.extra)) from None
        verdict = msgpack_check(data, value, self._max_depth, size)
        if verdict:  # a problem, or work left for the walker
            return value, msgpack_settle(data, value, verdict)
        return value, True


def _refuse_tag(decoder: Any, tag: Any = None) -> NoReturn:
    raise ValueError("CBOR tags are not accepted")


# Every semantic tag cbor2 would otherwise turn into an object (datetimes, decimals,
# regular expressions, MIME messages, sets, shared references, ...) is refused.
_NO_SEMANTICS: Final = {tag: _refuse_tag for tag in (*range(0, 300), 1004, 1040, 25441, 55799)}


@final
class CborCodec(ValueCodec):
    """CBOR (RFC 8949), via cbor2. Bytes are native; tags are refused on decode.

    Decoding is strict (``_strict``): no repeated keys, nothing after the value (cbor2
    ignores what follows the first item).
    """

    name = "cbor"
    content_type = "application/cbor"
    _library_errors = (cbor2.CBORDecodeError, ValueError, TypeError, UnicodeDecodeError, EOFError)

    def _dumps(self, value: Any) -> bytes:
        return cbor2.dumps(value)

    def _loads(self, data: bytes) -> tuple[Any, bool]:
        if not data:
            return None, True
        value = cbor2.loads(
            data,
            tag_hook=_refuse_tag,
            semantic_decoders=_NO_SEMANTICS,
            max_depth=self._max_depth + 2,
            strict_hashable_types=True,
            allow_duplicate_keys=False,
        )
        verdict = cbor_check(data, value, self._max_depth, self._max_length)
        if verdict:  # a problem, or work left for the walker
            return value, cbor_settle(data, value, verdict)
        return value, True
