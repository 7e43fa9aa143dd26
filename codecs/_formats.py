"""JSON (orjson), MessagePack (msgpack) and CBOR (cbor2): the self-describing codecs."""

from __future__ import annotations

from collections.abc import Callable
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
from ._values import ModelError
from ._vectors import (
    CBOR_NDIM_TAG,
    CBOR_TAGS,
    MSGPACK_EXT,
    Packed,
    cbor_typed,
    from_cbor,
    from_cbor_ndim,
    from_msgpack,
    to_json,
    to_msgpack,
)

__all__ = ("CborCodec", "JsonCodec", "MsgpackCodec")


@final
class JsonCodec(ValueCodec):
    """JSON (RFC 8259) as UTF-8, via orjson: the default, human-readable codec.

    orjson was chosen on the benchmark (several times faster than the standard
    library's json). Bytes travel as ``{"$bytes": "<base64>"}``, vectors as
    ``{"$array": {"dtype": ..., "shape": ..., "data": "<base64>"}}``. Decoding is strict
    (``_strict``): no repeated keys, no integer literals outside the model.
    """

    name = "json"
    content_type = "application/json"
    json_bytes = True
    shares = True
    _library_errors = (orjson.JSONDecodeError,)

    def _dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def _vector(self, packed: Packed) -> Any:
        return to_json(packed)

    def _loads(self, data: bytes) -> tuple[Any, bool]:
        if not data:
            return None, True
        value = orjson.loads(data)
        verdict = json_check(data, value, self._max_depth, self._max_length)
        if verdict:  # a problem, or work left for the walker
            return value, json_settle(data, value, verdict)
        return value, True


def _ext(code: int, data: bytes) -> Any:
    if code != MSGPACK_EXT:
        raise ValueError(f"MessagePack extension type {code} is not accepted")
    return from_msgpack(data)


@final
class MsgpackCodec(ValueCodec):
    """MessagePack, via msgpack: compact and fast. Bytes are native (bin).

    Vectors are extension type 1 (``_vectors``); every other extension is refused.

    Decoding is strict (``_strict``): no repeated keys (msgpack keeps the last), nothing
    after the value.
    """

    name = "msgpack"
    content_type = "application/msgpack"
    shares = True
    _library_errors = (ValueError, msgpack.UnpackException, TypeError, UnicodeDecodeError)

    def __init__(self, registry: TypeRegistry | None = None, limits: Limits | None = None) -> None:
        super().__init__(registry, limits)
        # One Packer per codec: packb() builds a new one on every call. pack() runs in C
        # holding the GIL and resets its buffer after an error, so reuse is safe.
        self._packer = msgpack.Packer(use_bin_type=True)

    def _dumps(self, value: Any) -> bytes:
        return self._packer.pack(value)  # type: ignore[no-any-return]

    def _vector(self, packed: Packed) -> Any:
        return msgpack.ExtType(MSGPACK_EXT, to_msgpack(packed))

    def _loads(self, data: bytes) -> tuple[Any, bool]:
        if not data:
            return None, True
        size = self._max_length
        try:
            value = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                ext_hook=_ext,
                max_array_len=size,
                max_map_len=size,
                max_ext_len=self.limits.max_size,
            )
        except msgpack.ExtraData as exc:
            raise trailing(len(exc.extra)) from None
        verdict = msgpack_check(data, value, self._max_depth, size)
        if verdict:  # a problem, or work left for the walker
            return value, msgpack_settle(data, value, verdict)
        return value, True


def _refused(tag: int) -> Callable[[Any, bool], NoReturn]:
    def refuse(value: Any, immutable: bool) -> NoReturn:
        raise ModelError(f"CBOR tag {tag} is not accepted (of tags, only RFC 8746 vectors)")

    return refuse


def _refuse_tag(tag: cbor2.CBORTag, immutable: bool) -> NoReturn:
    _refused(tag.tag)(tag.value, immutable)


def _typed_array(tag: int) -> Callable[[Any, bool], Any]:
    def decode(value: Any, immutable: bool) -> Any:
        return from_cbor(tag, value)

    return decode


def _ndim_array(value: Any, immutable: bool) -> Any:
    return from_cbor_ndim(value)


# Every semantic tag cbor2 would otherwise turn into an object (datetimes, decimals,
# regular expressions, MIME messages, sets, shared references, ...) is refused, but RFC
# 8746's typed arrays (vectors).
_SEMANTICS: Final[dict[int, Callable[..., Any]]] = {
    **{tag: _refused(tag) for tag in (*range(0, 300), 1004, 1040, 25441, 55799)},
    **{tag: _typed_array(tag) for tag in CBOR_TAGS},
    CBOR_NDIM_TAG: _ndim_array,
}


@final
class CborCodec(ValueCodec):
    """CBOR (RFC 8949), via cbor2. Bytes are native; vectors are RFC 8746 typed arrays.

    Every other tag is refused on decode.

    Decoding is strict (``_strict``): no repeated keys, nothing after the value (cbor2
    ignores what follows the first item).
    """

    name = "cbor"
    content_type = "application/cbor"
    shares = True
    _library_errors = (cbor2.CBORDecodeError, ValueError, TypeError, UnicodeDecodeError, EOFError)

    def _dumps(self, value: Any) -> bytes:
        return cbor2.dumps(value)

    def _vector(self, packed: Packed) -> Any:
        tag, data, shape = cbor_typed(packed)
        typed = cbor2.CBORTag(tag, data)
        return typed if shape is None else cbor2.CBORTag(CBOR_NDIM_TAG, [shape, typed])

    def _loads(self, data: bytes) -> tuple[Any, bool]:
        if not data:
            return None, True
        try:
            value = cbor2.loads(
                data,
                tag_hook=_refuse_tag,
                semantic_decoders=_SEMANTICS,
                max_depth=self._max_depth + 2,
                strict_hashable_types=True,
                allow_duplicate_keys=False,
            )
        except cbor2.CBORDecodeError as exc:
            if isinstance(exc.__cause__, ModelError):  # a tag refused, a bad vector
                raise exc.__cause__ from None
            raise
        verdict = cbor_check(data, value, self._max_depth, self._max_length)
        if verdict:  # a problem, or work left for the walker
            return value, cbor_settle(data, value, verdict)
        return value, True
