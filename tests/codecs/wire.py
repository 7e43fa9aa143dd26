"""Hand-made bodies in every format, for what our encoders refuse to write.

A tree is a leaf of the value model (or an int outside it), a list, or ``Pairs``: a map
as its list of entries, so a key may repeat. ``body(fmt, tree)`` writes it in the codec's
format, by the format's own rules and not through our codecs' checks; ``plain(tree)`` is
the value a strict decoder must return for it (when no key repeats).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import cbor2
import msgpack

from motadata_actors.codecs import Codecs


class Pairs(list[tuple[str, Any]]):
    """A map as its entries, in order; a key may repeat."""


def plain(tree: Any) -> Any:
    if isinstance(tree, Pairs):
        return {k: plain(v) for k, v in tree}
    if isinstance(tree, list):
        return [plain(x) for x in tree]
    return tree


def _json(tree: Any) -> bytes:
    if isinstance(tree, Pairs):
        return b"{" + b",".join(_json(k) + b":" + _json(v) for k, v in tree) + b"}"
    if isinstance(tree, list):
        return b"[" + b",".join(_json(x) for x in tree) + b"]"
    if isinstance(tree, bytes):
        return _json(Pairs([("$bytes", base64.b64encode(tree).decode())]))
    return json.dumps(tree).encode()  # the standard library writes any int


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(n)


def _cbor(tree: Any) -> bytes:
    if isinstance(tree, Pairs):
        return _cbor_head(5, len(tree)) + b"".join(_cbor(k) + _cbor(v) for k, v in tree)
    if isinstance(tree, list):
        return _cbor_head(4, len(tree)) + b"".join(_cbor(x) for x in tree)
    if type(tree) is int and -(2**64) <= tree < 2**64:
        return _cbor_head(0, tree) if tree >= 0 else _cbor_head(1, -1 - tree)
    return cbor2.dumps(tree)  # ints past 64 bits as bignum tags


def _msgpack(tree: Any) -> bytes:
    packer = msgpack.Packer(use_bin_type=True)
    if isinstance(tree, Pairs):
        return packer.pack_map_header(len(tree)) + b"".join(
            _msgpack(k) + _msgpack(v) for k, v in tree
        )
    if isinstance(tree, list):
        return packer.pack_array_header(len(tree)) + b"".join(_msgpack(x) for x in tree)
    return packer.pack(tree)  # uint64 reaches 2**64 - 1; nothing reaches below -2**63


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


_VALUES = Codecs("protobuf").named("protobuf")


def _protobuf(tree: Any) -> bytes:
    """A ``motadata.sdk.Value``: list_value is field 7, map_value field 8 (entries: 1)."""
    if isinstance(tree, Pairs):
        entries = b"".join(
            pb_field(1, pb_field(1, k.encode()) + pb_field(2, _protobuf(v))) for k, v in tree
        )
        return pb_field(8, entries)
    if isinstance(tree, list):
        return pb_field(7, b"".join(pb_field(1, _protobuf(x)) for x in tree))
    return _VALUES.encode(tree)


_WRITERS = {"json": _json, "msgpack": _msgpack, "cbor": _cbor, "protobuf": _protobuf}


def body(fmt: str, tree: Any) -> bytes:
    """``tree`` written in ``fmt`` (a codec name)."""
    return _WRITERS[fmt](tree)
