"""Avro: typed messages as Avro records, their schemas derived from the attrs classes.

The first codec plug-in (entry point ``avro`` of the group ``motadata_actors.codecs``), on
fastavro, an optional dependency (``pip install 'motadata-actors[avro]'``).

Choices (documented in docs/codecs.md):

* A body is Avro's *single-object encoding*: ``C3 01``, the 8-byte little-endian
  CRC-64-AVRO fingerprint of the writer's schema (of its Parsing Canonical Form), then the
  Avro binary encoding. Avro binary cannot be read without the writer's schema, and bytes
  read with another schema may well parse into wrong values; so a receiver reads with the
  schema derived from its own class and refuses a body whose fingerprint differs. Schema
  evolution is therefore by version (``planner.plan.v2`` with ``upgrade=``), never by Avro's
  writer/reader schema resolution, which needs the writer's schema at hand.
* Schemas: one record per attrs class, named from its wire name as protobuf names it
  (``planner.plan.v1`` -> ``sdk.planner.PlanV1``; an unregistered nested class by its module
  and qualified name), one field per attrs field, in order. ``str``, ``bytes``, ``bool``,
  ``int``, ``float`` are ``string``, ``bytes``, ``boolean``, ``long``, ``double``; ``X | None``
  a union ``["null", X]`` (``"default": null`` when the field's default is None); lists and
  tuples ``array``; ``dict[str, X]`` ``map``; nested classes records (recursion included);
  enums Avro enums of their member names; vectors the record ``motadata.sdk.Array`` (numpy's
  element type, the shape, the little-endian bytes).
* ``Any``, unions of several types and untyped bodies: the recursive record
  ``motadata.sdk.Value``, whose one field ``v`` is a union of null, boolean, long, double,
  string, bytes, an array of Value, a map of Value and a vector. A typed message in such a
  place is the reserved map ``{"$type": ..., "$value": {...}}``, as in the self-describing
  codecs.
* Checks are every codec's (``_schema``, ``_values``); this module maps checked values to
  fastavro's shapes and reads bytes back into plain values.
* fastavro writes. Reading is this module's own bounded reader: fastavro's reader recurses in
  C without a bound (a 20 KB body of nested Value arrays crashes the process with a
  segmentation fault) and loops once per item an array declares even when items take no
  bytes. This reader bounds depth and container lengths, and items that take no bytes (null,
  empty records) to ``max_length`` per body; checks every length against the bytes left; and
  refuses booleans other than 0 and 1, varints past 64 bits, repeated map keys, invalid
  UTF-8, unknown union branches and enum symbols, and trailing bytes.
"""

from __future__ import annotations

import copy
import enum
import io
import math
import re
import struct
import threading
from collections.abc import Callable
from typing import Any, Final, final

import attrs

from motadata_actors._errors import CodecError, DecodeError, EncodeError, MessageTooLarge

from ._codec import ValueCodec
from ._limits import Limits
from ._registry import TypeRegistry
from ._schema import (
    Conv,
    DictConv,
    EnumConv,
    ListConv,
    MessageConv,
    NoneConv,
    OptionalConv,
    ScalarConv,
    VectorConv,
    schema_of,
)
from ._values import INT_MAX, INT_MIN, ModelError
from ._vectors import Packed, unpack

__all__ = ("AvroCodec",)

INSTALL: Final = "pip install 'motadata-actors[avro]'"
MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = 10
VALUE_NAME: Final = "motadata.sdk.Value"
VECTOR_NAME: Final = "motadata.sdk.Array"
_WIRE_ATTR: Final = "__sdk_wire_name__"
_SCALARS: Final = {
    "str": "string",
    "bytes": "bytes",
    "bool": "boolean",
    "int": "long",
    "float": "double",
}
_PYTHON: Final = {"string": str, "boolean": bool}
_AVRO_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOUBLE: Final = struct.Struct("<d")


class _Malformed(Exception):
    """Bytes that are not an Avro encoding of the schema."""


@final
class _Reader:
    """The state of one decode: the bytes, the position, the budgets."""

    __slots__ = ("data", "end", "free", "max_depth", "max_length", "pos")

    def __init__(self, data: bytes, pos: int, limits: Limits) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)
        self.free = limits.max_length  # items that take no bytes, in the whole body
        # A typed message inside a Value is two maps deep ($type/$value) where the value
        # model counts one level; the walker checks the exact depth after reading.
        self.max_depth = 2 * limits.max_depth + 2
        self.max_length = limits.max_length

    def long(self) -> int:
        """Read a zigzag varint (IndexError when the bytes end first)."""
        data = self.data
        pos = self.pos
        b = data[pos]
        pos += 1
        n = b & 0x7F
        shift = 7
        while b & 0x80:
            if shift > 63:
                raise _Malformed("a varint longer than 10 bytes")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
        if n >> 64:
            raise _Malformed("integer outside 64-bit range")
        self.pos = pos
        return (n >> 1) ^ -(n & 1)

    def length(self) -> int:
        """Read the length of a string or bytes, checked against the bytes left."""
        n = self.long()
        if n < 0 or n > self.end - self.pos:
            raise _Malformed(f"a length of {n} with {self.end - self.pos} bytes left")
        return n

    def deeper(self, depth: int) -> int:
        depth += 1
        if depth > self.max_depth:
            raise ModelError(f"nesting deeper than {(self.max_depth - 2) // 2}")
        return depth

    def count(self, total: int, zero: bool) -> int:
        """Read a block's item count (0 ends the container), checking the budgets."""
        n = self.long()
        if n < 0:  # a block with its size in bytes: the size is not needed
            n = -n
            if self.long() < 0:
                raise _Malformed("a negative block size")
        if total + n > self.max_length:
            raise ModelError(f"container of {total + n} items exceeds {self.max_length}")
        if zero:
            self.free -= n
            if self.free < 0:
                raise _Malformed(f"more than {self.max_length} items that take no bytes")
        return n


class _Node:
    """One Avro type: how a checked value becomes fastavro's datum, and how bytes are read."""

    zero = False  # takes no bytes
    needs_prep = False  # the datum differs from the checked value
    branch = ""  # its name in a union (fastavro's tuple notation)

    def prep(self, value: Any) -> Any:
        """Turn a value checked by the schema into fastavro's datum."""
        return value

    def read(self, r: _Reader, depth: int) -> Any:
        """Read one value of this type."""
        raise NotImplementedError


class _Null(_Node):
    zero = True
    branch = "null"

    def read(self, r: _Reader, depth: int) -> Any:
        return None


class _Boolean(_Node):
    branch = "boolean"

    def read(self, r: _Reader, depth: int) -> Any:
        b = r.data[r.pos]
        if b > 1:
            raise _Malformed(f"boolean byte {b}")
        r.pos += 1
        return b == 1


class _Long(_Node):
    branch = "long"

    def read(self, r: _Reader, depth: int) -> Any:
        return r.long()


class _Double(_Node):
    branch = "double"

    def read(self, r: _Reader, depth: int) -> Any:
        if r.end - r.pos < 8:
            raise _Malformed("a double cut short")
        value = _DOUBLE.unpack_from(r.data, r.pos)[0]
        r.pos += 8
        return value


class _String(_Node):
    branch = "string"

    def read(self, r: _Reader, depth: int) -> Any:
        n = r.length()
        start = r.pos
        r.pos += n
        return str(r.data[start : r.pos], "utf-8")


class _Bytes(_Node):
    branch = "bytes"

    def read(self, r: _Reader, depth: int) -> Any:
        n = r.length()
        start = r.pos
        r.pos += n
        return r.data[start : r.pos]


class _Optional(_Node):
    needs_prep = True

    def __init__(self, inner: _Node) -> None:
        self.inner = inner

    def prep(self, value: Any) -> Any:
        return None if value is None else (self.inner.branch, self.inner.prep(value))

    def read(self, r: _Reader, depth: int) -> Any:
        index = r.long()
        if index == 0:
            return None
        if index == 1:
            return self.inner.read(r, depth)
        raise _Malformed(f"union branch {index} of 2")


class _Array(_Node):
    branch = "array"

    def __init__(self, item: _Node) -> None:
        self.item = item
        self.needs_prep = item.needs_prep

    def prep(self, value: Any) -> Any:
        item = self.item
        return [item.prep(x) for x in value] if item.needs_prep else value

    def read(self, r: _Reader, depth: int) -> Any:
        depth = r.deeper(depth)
        item = self.item
        out: list[Any] = []
        while n := r.count(len(out), item.zero):
            for _ in range(n):
                out.append(item.read(r, depth))
        return out


class _Map(_Node):
    branch = "map"

    def __init__(self, item: _Node) -> None:
        self.item = item
        self.needs_prep = item.needs_prep

    def prep(self, value: Any) -> Any:
        item = self.item
        return {k: item.prep(x) for k, x in value.items()} if item.needs_prep else value

    def read(self, r: _Reader, depth: int) -> Any:
        depth = r.deeper(depth)
        item = self.item
        out: dict[str, Any] = {}
        while n := r.count(len(out), False):  # a key takes a byte at least
            for _ in range(n):
                key = _STRING.read(r, depth)
                if key in out:
                    raise ModelError(f"duplicate map key {key!r}")
                out[key] = item.read(r, depth)
        return out


class _Enum(_Node):
    needs_prep = True

    def __init__(self, tp: type[enum.Enum], fullname: str) -> None:
        self.tp = tp
        self.members = list(tp)
        self.branch = fullname

    def prep(self, value: Any) -> Any:
        try:
            return self.tp(value).name
        except (ValueError, TypeError):  # a flag combination has no symbol
            raise ModelError(f"{value!r} is no single member of {self.tp.__name__}") from None

    def read(self, r: _Reader, depth: int) -> Any:
        index = r.long()
        if not 0 <= index < len(self.members):
            raise _Malformed(f"enum symbol {index} of {len(self.members)}")
        return self.members[index].value


class _Record(_Node):
    def __init__(self, fullname: str) -> None:
        self.branch = fullname
        self.fields: list[tuple[str, _Node]] = []  # filled after creation: records recurse
        self.zero = True
        self.needs_prep = True  # until its fields are known (a record may contain itself)
        self._prep_fields: list[tuple[str, _Node]] = []

    def finish(self) -> None:
        self._prep_fields = [(name, node) for name, node in self.fields if node.needs_prep]
        self.needs_prep = bool(self._prep_fields)
        self.zero = all(node.zero for _, node in self.fields)

    def prep(self, value: Any) -> Any:
        if not self._prep_fields:
            return value
        out = dict(value)
        name = ""
        try:
            for name, node in self._prep_fields:
                out[name] = node.prep(out[name])
        except ModelError as exc:
            raise exc.at(f".{name}") from None
        return out

    def read(self, r: _Reader, depth: int) -> Any:
        depth = r.deeper(depth)  # a message is one level below what holds it (the top: 1)
        return {name: node.read(r, depth) for name, node in self.fields}


class _Vector(_Node):
    """``motadata.sdk.Array``: a vector (``_vectors``), a leaf of the model."""

    needs_prep = True
    branch = VECTOR_NAME

    def prep(self, value: Any) -> Any:
        if type(value) is not Packed:  # the walker packs every vector (AvroCodec._vector)
            raise ModelError(f"expected a vector, got {type(value).__name__}")
        return {"dtype": value.dtype, "shape": list(value.shape), "data": value.data}

    def read(self, r: _Reader, depth: int) -> Any:
        dtype = _STRING.read(r, depth)
        shape: list[int] = []
        while n := r.count(len(shape), False):
            for _ in range(n):
                shape.append(r.long())
        return unpack(dtype, shape, _PRIMITIVES["bytes"].read(r, depth))


class _Value(_Node):
    """``motadata.sdk.Value``: any value of the model."""

    needs_prep = True
    branch = VALUE_NAME

    def prep(self, value: Any) -> Any:
        t = type(value)
        if value is None:
            return {"v": None}
        if t is str:
            return {"v": ("string", value)}
        if t is bool:
            return {"v": ("boolean", value)}
        if t is int:
            return {"v": ("long", value)}
        if t is float:
            return {"v": ("double", value)}
        if t is bytes:
            return {"v": ("bytes", value)}
        if t is list or t is tuple:
            return {"v": ("array", [self.prep(x) for x in value])}
        if t is dict:
            return {"v": ("map", {k: self.prep(x) for k, x in value.items()})}
        if t is Packed:
            return {"v": (VECTOR_NAME, _VECTOR.prep(value))}
        if isinstance(value, str):  # subclasses, as the walker lets them through
            return self.prep(str.__str__(value))
        if isinstance(value, int):
            return self.prep(int(value))
        if isinstance(value, float):
            return self.prep(float(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.prep(bytes(value))
        if isinstance(value, (list, tuple)):
            return self.prep(list(value))
        if isinstance(value, dict):
            return self.prep(dict(value))
        raise ModelError(f"{t.__qualname__} cannot travel in Avro")

    def read(self, r: _Reader, depth: int) -> Any:
        index = r.long()
        if 0 <= index < len(_VALUE_KINDS):
            return _VALUE_KINDS[index].read(r, depth)
        raise _Malformed(f"Value branch {index} of {len(_VALUE_KINDS)}")


_STRING: Final = _String()
_VALUE: Final = _Value()
_VECTOR: Final = _Vector()
_PRIMITIVES: Final[dict[str, _Node]] = {
    "null": _Null(),
    "boolean": _Boolean(),
    "long": _Long(),
    "double": _Double(),
    "string": _STRING,
    "bytes": _Bytes(),
}
_VALUE_KINDS: Final[tuple[_Node, ...]] = (
    *_PRIMITIVES.values(),
    _Array(_VALUE),
    _Map(_VALUE),
    _VECTOR,
)


def _value_schema(vector: Any) -> dict[str, Any]:
    kinds: list[Any] = [*_PRIMITIVES]
    kinds += [{"type": "array", "items": VALUE_NAME}, {"type": "map", "values": VALUE_NAME}]
    return {
        "type": "record",
        "name": "Value",
        "namespace": "motadata.sdk",
        "doc": "Any value of the motadata-actors value model.",
        "fields": [{"name": "v", "type": [*kinds, vector]}],
    }


def _vector_schema() -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Array",
        "namespace": "motadata.sdk",
        "doc": "A vector: numpy's element type (<f4, ...), the shape, the little-endian data.",
        "fields": [
            {"name": "dtype", "type": "string"},
            {"name": "shape", "type": {"type": "array", "items": "long"}},
            {"name": "data", "type": "bytes"},
        ],
    }


def avro_names(wire_name: str) -> tuple[str, str]:
    """Return (namespace, name) for a wire name: ``planner.plan.v1`` -> (sdk.planner, PlanV1)."""
    tokens = wire_name.split(".")
    namespace = ".".join(["sdk", *tokens[:-2]])
    return namespace, tokens[-2][:1].upper() + tokens[-2][1:] + tokens[-1].upper()


def _default(node: _Node, default: Any) -> Any:
    """The Avro default of a field (for readers resolving schemas), or ``attrs.NOTHING``.

    Only literal defaults that Avro can state: None for optional fields, strings, booleans,
    64-bit ints, finite floats and enum members; factories are left out.
    """
    if isinstance(node, _Optional):
        return None if default is None else attrs.NOTHING
    if isinstance(node, _Enum):
        return default.name if isinstance(default, node.tp) else attrs.NOTHING
    t = type(default)
    if node.branch in ("string", "boolean") and t is _PYTHON[node.branch]:
        return default
    if node.branch in ("long", "double") and t is int and INT_MIN <= default <= INT_MAX:
        return default
    if node.branch == "double" and t is float and math.isfinite(default):
        return default
    return attrs.NOTHING


def _sanitize(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if _AVRO_NAME.fullmatch(name) else f"_{name}"


class _Builder:
    """Derives one self-contained schema: each named type defined once, then referred to."""

    def __init__(self) -> None:
        self.owners: dict[str, object] = {}  # full name -> the class that took it
        self.records: dict[type, _Record] = {}
        self.enums: dict[type, _Enum] = {}

    def _claim(self, namespace: str, name: str, owner: object) -> tuple[str, str]:
        base, n = name, 1
        while self.owners.get(f"{namespace}.{name}", owner) is not owner:
            n += 1
            name = f"{base}_{n}"
        self.owners[f"{namespace}.{name}"] = owner
        return namespace, name

    def value(self) -> tuple[Any, _Node]:
        if VALUE_NAME in self.owners:
            return VALUE_NAME, _VALUE
        self.owners[VALUE_NAME] = _VALUE
        return _value_schema(self.vector()[0]), _VALUE

    def vector(self) -> tuple[Any, _Node]:
        if VECTOR_NAME in self.owners:
            return VECTOR_NAME, _VECTOR
        self.owners[VECTOR_NAME] = _VECTOR
        return _vector_schema(), _VECTOR

    def record(self, cls: type) -> tuple[Any, _Node]:
        node = self.records.get(cls)
        if node is not None:
            return node.branch, node
        wire_name = getattr(cls, _WIRE_ATTR, None)
        if isinstance(wire_name, str):
            namespace, name = avro_names(wire_name)
        else:
            module = ".".join(_sanitize(part) for part in cls.__module__.split("."))
            namespace, name = f"py.{module}", _sanitize(cls.__qualname__)
        namespace, name = self._claim(namespace, name, cls)
        node = self.records[cls] = _Record(f"{namespace}.{name}")
        defaults = {a.name: a.default for a in attrs.fields(cls)}
        fields = []
        for spec in schema_of(cls).fields:
            if not _AVRO_NAME.fullmatch(spec.name):
                raise ModelError(f"field {spec.name!r} of {cls.__qualname__} is no Avro name")
            try:
                tp, child = self.conv(spec.conv, namespace)
            except ModelError as exc:
                raise exc.at(f".{spec.name}") from None
            entry: dict[str, Any] = {"name": spec.name, "type": tp}
            default = _default(child, defaults.get(spec.name, attrs.NOTHING))
            if default is not attrs.NOTHING:
                entry["default"] = default
            fields.append(entry)
            node.fields.append((spec.name, child))
        node.finish()
        schema = {"type": "record", "name": name, "namespace": namespace, "fields": fields}
        if isinstance(wire_name, str):
            schema["doc"] = f"motadata-actors message {wire_name}"
        return schema, node

    def conv(self, conv: Conv, namespace: str) -> tuple[Any, _Node]:
        if isinstance(conv, ScalarConv):
            kind = _SCALARS[conv.kind]
            return kind, _PRIMITIVES[kind]
        if isinstance(conv, NoneConv):
            return "null", _PRIMITIVES["null"]
        if isinstance(conv, OptionalConv):
            tp, inner = self.conv(conv.inner, namespace)
            if isinstance(inner, _Null):
                return tp, inner
            return ["null", tp], _Optional(inner)
        if isinstance(conv, ListConv):
            tp, item = self.conv(conv.item, namespace)
            return {"type": "array", "items": tp}, _Array(item)
        if isinstance(conv, DictConv):
            tp, item = self.conv(conv.item, namespace)
            return {"type": "map", "values": tp}, _Map(item)
        if isinstance(conv, MessageConv):
            return self.record(conv.tp)
        if isinstance(conv, EnumConv):
            return self.enum(conv.tp, namespace)
        if isinstance(conv, VectorConv):
            return self.vector()
        return self.value()  # Any, a union of several types, and kinds Avro has no type for

    def enum(self, tp: type[enum.Enum], namespace: str) -> tuple[Any, _Node]:
        node = self.enums.get(tp)
        if node is not None:
            return node.branch, node
        symbols = [m.name for m in tp]
        bad = [s for s in symbols if not _AVRO_NAME.fullmatch(s)]
        if bad or not symbols:
            raise ModelError(f"enum {tp.__qualname__} has no Avro symbols for {bad or 'nothing'}")
        namespace, name = self._claim(namespace, _sanitize(tp.__name__), tp)
        node = self.enums[tp] = _Enum(tp, f"{namespace}.{name}")
        return {"type": "enum", "name": name, "namespace": namespace, "symbols": symbols}, node


@final
@attrs.frozen(slots=True)
class _Plan:
    """How one class (or any value, for None) is written and read."""

    schema: dict[str, Any]
    parsed: Any  # fastavro's parsed schema
    header: bytes  # magic and fingerprint
    root: _Node


@final
class AvroCodec(ValueCodec):
    """Avro (single-object encoding), via fastavro, with schemas derived from attrs classes.

    It shares the value model's checks with the other codecs (``ValueCodec``) and replaces how
    checked values become bytes and back. :meth:`schema_of` returns the Avro schema of a
    class, for readers in other languages.

    Raises:
        CodecError: fastavro is not installed (``pip install 'motadata-actors[avro]'``).
    """

    name = "avro"
    content_type = "application/avro"

    def __init__(self, registry: TypeRegistry | None = None, limits: Limits | None = None) -> None:
        try:
            from fastavro import parse_schema, schemaless_writer
            from fastavro.schema import fingerprint, to_parsing_canonical_form
        except ImportError as exc:
            raise CodecError(f"the avro codec needs fastavro ({exc}): {INSTALL}") from None
        super().__init__(registry, limits)
        self._parse: Callable[[Any], Any] = parse_schema
        self._write: Callable[[Any, Any, Any], None] = schemaless_writer
        self._canonical: Callable[[Any], str] = to_parsing_canonical_form
        self._fingerprint: Callable[[str, str], str] = fingerprint
        self._plans: dict[type | None, _Plan] = {}
        self._lock = threading.Lock()
        self._value_plan = self._plan(None)

    # -- schemas ------------------------------------------------------------------

    def _plan(self, cls: type | None) -> _Plan:
        plan = self._plans.get(cls)
        if plan is not None:
            return plan
        with self._lock:
            plan = self._plans.get(cls)
            if plan is None:
                builder = _Builder()
                schema, root = builder.value() if cls is None else builder.record(cls)
                try:
                    parsed = self._parse(copy.deepcopy(schema))
                    fingerprint = self._fingerprint(self._canonical(schema), "CRC-64-AVRO")
                except Exception as exc:  # fastavro's SchemaParseException and the like
                    raise ModelError(f"no Avro schema: {type(exc).__name__}: {exc}") from exc
                plan = _Plan(schema, parsed, MAGIC + bytes.fromhex(fingerprint), root)
                self._plans[cls] = plan
        return plan

    def schema_of(self, cls: type | None = None) -> dict[str, Any]:
        """Return the Avro schema (JSON-ready) of an attrs class, or of untyped values.

        Our bodies are ``C3 01``, the schema's 8-byte fingerprint, then the Avro binary of
        a record of this schema: ``fastavro.schemaless_reader(io.BytesIO(body[10:]),
        schema)`` reads them anywhere.

        Raises:
            EncodeError: the class cannot be expressed in Avro.
        """
        wire_name = getattr(cls, _WIRE_ATTR, None) if cls is not None else None
        try:
            return copy.deepcopy(self._plan(cls).schema)
        except ModelError as exc:
            raise EncodeError(self.name, wire_name, str(exc)) from None

    # -- encoding -----------------------------------------------------------------

    def _vector(self, packed: Packed) -> Any:
        return packed  # written as a motadata.sdk.Array

    def _encode(self, obj: object, wire_name: str | None) -> bytes:
        try:
            if wire_name is None:
                plan = self._value_plan
                value = self._walker.out(obj)
            else:
                plan = self._plan(type(obj))
                value = schema_of(type(obj)).out(obj, 1, self._walker)
            buf = io.BytesIO()
            buf.write(plan.header)
            self._write(buf, plan.parsed, plan.root.prep(value))
            data = buf.getvalue()
        except ModelError as exc:
            raise EncodeError(self.name, wire_name, str(exc)) from None
        except (TypeError, ValueError, OverflowError, KeyError) as exc:
            raise EncodeError(self.name, wire_name, f"{type(exc).__name__}: {exc}") from exc
        if len(data) > self.limits.max_size:
            raise MessageTooLarge(len(data), self.limits.max_size, part="body")
        return data

    # -- decoding -----------------------------------------------------------------

    def decode(self, data: bytes, cls: type[Any] | None = None) -> Any:
        """Decode a body written with the schema of ``cls`` (or of untyped values)."""
        wire_name = getattr(cls, _WIRE_ATTR, None) if cls is not None else None
        self._check_size(data, wire_name)
        if type(data) is not bytes:
            data = bytes(data)
        try:
            plan = self._plan(cls)
            if not data and cls is None:
                return None  # an empty body, as in every codec
            if data[:2] != MAGIC or len(data) < HEADER_SIZE:
                raise _Malformed("not Avro single-object encoding (no C3 01 header)")
            if data[2:HEADER_SIZE] != plan.header[2:]:
                what = "untyped values" if cls is None else repr(wire_name or cls.__qualname__)
                raise _Malformed(
                    f"written with the schema of fingerprint {data[2:HEADER_SIZE].hex()}, "
                    f"and {what} here have {plan.header[2:].hex()}: Avro bytes cannot be read "
                    "with another schema (a class whose fields changed needs a new version)"
                )
            r = _Reader(data, HEADER_SIZE, self.limits)
            value = plan.root.read(r, 0)
            if r.pos != r.end:
                left = r.end - r.pos
                raise _Malformed(f"{left} trailing byte{'' if left == 1 else 's'} after the value")
            if cls is None:
                return self._walker.back(value)
            obj = schema_of(cls).back(value, 1, self._walker)
            return self.registry.upgraded(obj)
        except _Malformed as exc:
            raise DecodeError(self.name, wire_name, f"malformed body: {exc}") from None
        except IndexError:
            raise DecodeError(self.name, wire_name, "malformed body: cut short") from None
        except UnicodeDecodeError:
            raise DecodeError(self.name, wire_name, "malformed body: invalid UTF-8") from None
        except RecursionError:
            raise DecodeError(self.name, wire_name, "nesting too deep") from None
        except ModelError as exc:
            raise DecodeError(self.name, wire_name, str(exc)) from None
