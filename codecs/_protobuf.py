"""Protobuf: typed messages as real protobuf messages, generated from their attrs schema.

Choices (documented in the README):

* Descriptors are generated at run time from the attrs definition, one ``.proto``
  file per registered message: package ``sdk.<wire tokens but the last two>``,
  message ``<Name><Version>`` (``planner.plan.v1`` -> ``sdk.planner.PlanV1``). No
  code generation step; :meth:`ProtobufCodec.proto_files` exports the ``.proto``
  sources, so protoc-generated classes in any language read our bytes and we read theirs.
* Field numbers are explicit: every field declares ``field(proto=N)``. They never come
  from field order, so inserting a field renumbers nothing.
* Singular fields use explicit presence (proto3 ``optional``), so a missing required
  field is detected; None means absent. Lists and maps of scalars or messages are
  ``repeated`` and ``map<string, T>`` (they have no presence: missing reads as empty).
* Anything else (``Any``, unions, enums, nested lists, vectors) and untyped messages use
  our own ``motadata.sdk.Value`` oneof, which keeps ints as ints and carries bytes, typed
  messages and vectors (``motadata.sdk.Array``: dtype, shape, little-endian bytes), unlike
  ``google.protobuf.Struct`` (doubles only, no bytes).
* Validation is the same as every codec's (``_schema``/``_values``): this module only
  maps checked plain values to protobuf messages and back.
* Decoding is as strict as the other codecs where protobuf can say the same thing: a map
  that repeats a key is refused (protobuf would keep the last). Bytes are parsed with twin
  descriptors in which every ``map<string, T>`` is what the protobuf spec says it is on the
  wire, ``repeated`` entries, so every entry is seen. Protobuf has no top-level framing:
  bytes after a message are more fields of it, and a singular field seen twice is the
  last one, as the encoding defines (concatenated messages merge). So "trailing bytes"
  are bytes that do not form whole fields, refused by the parser.
"""

from __future__ import annotations

import threading
from typing import Any, Final, final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError as _ProtoDecodeError
from google.protobuf.message import Message

from motadata_actors._errors import DecodeError, EncodeError, MessageTooLarge

from ._codec import ValueCodec
from ._limits import Limits
from ._registry import TypeRegistry
from ._schema import (
    Conv,
    DictConv,
    ListConv,
    MessageConv,
    OptionalConv,
    ScalarConv,
    schema_of,
)
from ._values import TYPE_KEY, VALUE_KEY, ModelError
from ._vectors import Packed, unpack

__all__ = ("ProtobufCodec",)

F = descriptor_pb2.FieldDescriptorProto
VALUE_FILE: Final = "motadata/sdk/value.proto"
VALUE_PACKAGE: Final = "motadata.sdk"
_SCALARS: Final = {
    "str": F.TYPE_STRING,
    "bytes": F.TYPE_BYTES,
    "bool": F.TYPE_BOOL,
    "int": F.TYPE_SINT64,
    "float": F.TYPE_DOUBLE,
}
_TYPE_NAMES: Final = {
    F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes",
    F.TYPE_BOOL: "bool",
    F.TYPE_SINT64: "sint64",
    F.TYPE_DOUBLE: "double",
    F.TYPE_UINT64: "uint64",
}

# How a field maps: (shape, scalar type or None for messages, nested class or None)
_SINGULAR, _REPEATED, _MAP, _VALUE = "singular", "repeated", "map", "value"


class _ValueItem:
    """Marks lists and maps whose items are ``Value`` (annotated ``Any``)."""


def _value_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name=VALUE_FILE, package=VALUE_PACKAGE, syntax="proto3"
    )
    value = fdp.message_type.add(name="Value")
    value.oneof_decl.add(name="kind")
    kinds = [
        ("null_value", F.TYPE_BOOL, None),
        ("bool_value", F.TYPE_BOOL, None),
        ("int_value", F.TYPE_SINT64, None),
        ("float_value", F.TYPE_DOUBLE, None),
        ("string_value", F.TYPE_STRING, None),
        ("bytes_value", F.TYPE_BYTES, None),
        ("list_value", F.TYPE_MESSAGE, ".motadata.sdk.ValueList"),
        ("map_value", F.TYPE_MESSAGE, ".motadata.sdk.ValueMap"),
        ("typed_value", F.TYPE_MESSAGE, ".motadata.sdk.TypedValue"),
        ("array_value", F.TYPE_MESSAGE, ".motadata.sdk.Array"),
    ]
    for number, (name, tp, type_name) in enumerate(kinds, start=1):
        f = value.field.add(
            name=name, number=number, type=tp, label=F.LABEL_OPTIONAL, oneof_index=0
        )
        if type_name:
            f.type_name = type_name
    vlist = fdp.message_type.add(name="ValueList")
    vlist.field.add(
        name="items", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
        type_name=".motadata.sdk.Value",
    )  # fmt: skip
    vmap = fdp.message_type.add(name="ValueMap")
    _add_map(vmap, "entries", 1, F.TYPE_MESSAGE, ".motadata.sdk.Value", ".motadata.sdk.ValueMap")
    typed = fdp.message_type.add(name="TypedValue")
    typed.field.add(name="type", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    typed.field.add(name="data", number=2, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    vector = fdp.message_type.add(name="Array")  # a vector: see _vectors
    vector.field.add(name="dtype", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    vector.field.add(name="shape", number=2, type=F.TYPE_UINT64, label=F.LABEL_REPEATED)
    vector.field.add(name="data", number=3, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    return fdp


def _add_map(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    value_type: int,
    value_type_name: str | None,
    owner: str,
) -> None:
    entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    entry = msg.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    v = entry.field.add(name="value", number=2, type=value_type, label=F.LABEL_OPTIONAL)
    if value_type_name:
        v.type_name = value_type_name
    msg.field.add(
        name=name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
        type_name=f"{owner}.{entry_name}",
    )  # fmt: skip


def proto_names(wire_name: str) -> tuple[str, str, str]:
    """Return (file, package, message) for a wire name.

    ``planner.plan.v1`` -> (``sdk/planner/plan_v1.proto``, ``sdk.planner``, ``PlanV1``).
    """
    tokens = wire_name.split(".")
    package = ".".join(["sdk", *tokens[:-2]])
    message = tokens[-2][:1].upper() + tokens[-2][1:] + tokens[-1].upper()
    file = "/".join(["sdk", *tokens[:-2], f"{tokens[-2]}_{tokens[-1]}.proto"])
    return file, package, message


class _Plan:
    """How one registered class maps to its protobuf message."""

    __slots__ = ("decode_class", "fields", "message_class")

    def __init__(
        self,
        message_class: type[Message],
        decode_class: type[Message],
        fields: list[tuple[str, str, type | None]],
    ) -> None:
        self.message_class = message_class  # encodes
        self.decode_class = decode_class  # parses: maps as repeated entries (_entries_only)
        self.fields = fields  # (name, shape, nested class or None)


def _shape(conv: Conv) -> tuple[str, int | None, type | None]:
    """(shape, scalar type, nested class) of a field's converter."""
    if isinstance(conv, OptionalConv):
        conv = conv.inner
    if isinstance(conv, ScalarConv):
        return _SINGULAR, _SCALARS[conv.kind], None
    if isinstance(conv, MessageConv):
        return _SINGULAR, None, conv.tp
    if isinstance(conv, (ListConv, DictConv)):
        item = conv.item
        shape = _REPEATED if isinstance(conv, ListConv) else _MAP
        if isinstance(item, ScalarConv):
            return shape, _SCALARS[item.kind], None
        if isinstance(item, MessageConv):
            return shape, None, item.tp
        if type(item) is Conv:
            return shape, None, _ValueItem
    return _VALUE, None, None


@final
class ProtobufCodec(ValueCodec):
    """Protobuf, via the protobuf runtime (upb), with descriptors made from attrs schemas.

    It shares the value model's checks with the other codecs (``ValueCodec``) and replaces
    how checked values become bytes and back.
    """

    name = "protobuf"
    content_type = "application/x-protobuf"

    def __init__(self, registry: TypeRegistry | None = None, limits: Limits | None = None) -> None:
        super().__init__(registry, limits)
        self._pool = descriptor_pool.DescriptorPool()
        self._decode_pool = descriptor_pool.DescriptorPool()
        self._files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        self._add_file(_value_file())
        self._value_cls = self._message_class("motadata.sdk.Value")
        self._value_decode_cls = self._message_class("motadata.sdk.Value", self._decode_pool)
        self._plans: dict[type, _Plan] = {}
        self._lock = threading.RLock()

    def _message_class(
        self, full_name: str, pool: descriptor_pool.DescriptorPool | None = None
    ) -> type[Message]:
        pool = self._pool if pool is None else pool
        cls: type[Message] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
        return cls

    def _add_file(self, fdp: descriptor_pb2.FileDescriptorProto) -> None:
        self._pool.Add(fdp)
        self._decode_pool.Add(_entries_only(fdp))
        self._files[fdp.name] = fdp

    # -- descriptors ------------------------------------------------------------

    def _plan(self, cls: type, building: tuple[type, ...] = ()) -> _Plan:
        plan = self._plans.get(cls)
        if plan is not None:
            return plan
        with self._lock:
            plan = self._plans.get(cls)
            if plan is None:
                plan = self._build(cls, building)
                self._plans[cls] = plan
        return plan

    def _build(self, cls: type, building: tuple[type, ...]) -> _Plan:
        wire_name = wire_name_of_class(cls)
        if cls in building:
            raise ModelError(
                f"{wire_name} and {wire_name_of_class(building[-1])} refer to each other; "
                "protobuf files cannot import each other: use an Any field for one side"
            )
        file, package, message = proto_names(wire_name)
        schema = schema_of(cls)
        fdp = descriptor_pb2.FileDescriptorProto(name=file, package=package, syntax="proto3")
        msg = fdp.message_type.add(name=message)
        owner = f".{package}.{message}"
        deps: set[str] = set()
        fields: list[tuple[str, str, type | None]] = []
        numbers: dict[int, str] = {}
        for spec in schema.fields:
            if spec.number is None:
                raise ModelError(
                    f"field {spec.name!r} has no protobuf number: declare it with "
                    f"field(proto=N) to send {wire_name} as protobuf"
                )
            if spec.number in numbers:
                raise ModelError(
                    f"fields {numbers[spec.number]!r} and {spec.name!r} share protobuf number "
                    f"{spec.number}"
                )
            numbers[spec.number] = spec.name
            shape, scalar, nested = _shape(spec.conv)
            type_name = None
            if nested is _ValueItem:
                deps.add(VALUE_FILE)
                type_name = ".motadata.sdk.Value"
            elif nested is cls:  # a message may contain itself (trees); same file, no import
                type_name = owner
            elif nested is not None:
                self._plan(nested, (*building, cls))
                nested_file, nested_package, nested_message = proto_names(
                    wire_name_of_class(nested)
                )
                deps.add(nested_file)
                type_name = f".{nested_package}.{nested_message}"
            if shape == _VALUE:
                deps.add(VALUE_FILE)
                type_name = ".motadata.sdk.Value"
            tp = F.TYPE_MESSAGE if scalar is None else scalar
            if shape == _MAP:
                _add_map(msg, spec.name, spec.number, tp, type_name, owner)
            else:
                label = F.LABEL_REPEATED if shape == _REPEATED else F.LABEL_OPTIONAL
                f = msg.field.add(name=spec.name, number=spec.number, type=tp, label=label)
                if type_name:
                    f.type_name = type_name
                if shape != _REPEATED:  # explicit presence, like proto3 `optional`
                    f.proto3_optional = True
                    f.oneof_index = len(msg.oneof_decl)
                    msg.oneof_decl.add(name=f"_{spec.name}")
            fields.append((spec.name, shape, nested))
        fdp.dependency.extend(sorted(deps))
        if file not in self._files:
            self._add_file(fdp)
        full_name = f"{package}.{message}"
        return _Plan(
            self._message_class(full_name),
            self._message_class(full_name, self._decode_pool),
            fields,
        )

    def proto_files(self, cls: type) -> dict[str, str]:
        """Return the ``.proto`` sources for ``cls`` and everything it imports, by file name.

        Raises:
            EncodeError: ``cls`` cannot be expressed in protobuf (a field lacks a number).
        """
        wire_name = wire_name_of_class(cls)
        try:
            self._plan(cls)
        except ModelError as exc:
            raise EncodeError(self.name, wire_name, str(exc)) from None
        out: dict[str, str] = {}
        pending = [proto_names(wire_name)[0]]
        while pending:
            name = pending.pop()
            if name not in out:
                fdp = self._files[name]
                out[name] = _render(fdp)
                pending.extend(fdp.dependency)
        return out

    # -- encoding -----------------------------------------------------------------

    def _vector(self, packed: Packed) -> Any:
        return packed  # _to_value writes it as a motadata.sdk.Array

    def _encode(self, obj: object, wire_name: str | None) -> bytes:
        try:
            if wire_name is None:
                msg: Message = self._value_cls()
                self._to_value(msg, self._walker.out(obj))
            else:
                fields = schema_of(type(obj)).out(obj, 1, self._walker)
                msg = self._to_message(type(obj), fields)
            data: bytes = msg.SerializeToString()
        except ModelError as exc:
            raise EncodeError(self.name, wire_name, str(exc)) from None
        if len(data) > self.limits.max_size:
            raise MessageTooLarge(len(data), self.limits.max_size, part="body")
        return data

    def _to_message(self, cls: type, fields: dict[str, Any]) -> Message:
        plan = self._plan(cls)
        msg = plan.message_class()
        self._fill(msg, plan, fields)
        return msg

    def _fill(self, msg: Any, plan: _Plan, fields: dict[str, Any]) -> None:
        for name, shape, nested in plan.fields:
            value = fields.get(name)
            if shape == _VALUE:
                self._to_value(getattr(msg, name), value)
                continue
            if value is None:
                continue  # absent (None for an optional field)
            if shape == _SINGULAR:
                if nested is None:
                    setattr(msg, name, value)
                else:
                    sub = getattr(msg, name)
                    sub.SetInParent()
                    self._fill(sub, self._plan(nested), value)
            elif shape == _REPEATED:
                target = getattr(msg, name)
                if nested is None:
                    target.extend(value)
                elif nested is _ValueItem:
                    for item in value:
                        self._to_value(target.add(), item)
                else:
                    nested_plan = self._plan(nested)
                    for item in value:
                        self._fill(target.add(), nested_plan, item)
            else:
                target = getattr(msg, name)
                if nested is None:
                    for key, item in value.items():
                        target[key] = item
                elif nested is _ValueItem:
                    for key, item in value.items():
                        self._to_value(target[key], item)
                else:
                    nested_plan = self._plan(nested)
                    for key, item in value.items():
                        self._fill(target[key], nested_plan, item)

    def _to_value(self, msg: Any, value: Any) -> None:
        t = type(value)
        if value is None:
            msg.null_value = True
        elif t is bool:
            msg.bool_value = value
        elif t is int:
            msg.int_value = value
        elif t is float:
            msg.float_value = value
        elif t is str:
            msg.string_value = value
        elif t is bytes:
            msg.bytes_value = value
        elif t is Packed:
            vector = msg.array_value
            vector.dtype = value.dtype
            vector.shape.extend(value.shape)
            vector.data = value.data
        elif t is list or t is tuple:
            items = msg.list_value
            items.SetInParent()
            for item in value:
                self._to_value(items.items.add(), item)
        elif t is dict:
            if len(value) == 2 and TYPE_KEY in value and VALUE_KEY in value:
                cls = self.registry.lookup(value[TYPE_KEY])
                msg.typed_value.type = value[TYPE_KEY]
                msg.typed_value.data = self._to_message(cls, value[VALUE_KEY]).SerializeToString()
                return
            entries = msg.map_value
            entries.SetInParent()
            for key, item in value.items():
                self._to_value(entries.entries[key], item)
        else:  # the walker lets nothing else through
            raise ModelError(f"{t.__name__} is not in the value model")

    # -- decoding -----------------------------------------------------------------

    def decode(self, data: bytes, cls: type[Any] | None = None) -> Any:
        """Decode a protobuf message of ``cls``, or a ``Value`` when untyped."""
        wire_name = wire_name_of_class(cls) if cls is not None else None
        self._check_size(data, wire_name)
        try:
            if cls is None:
                value = self._from_value(self._value_decode_cls.FromString(data), 0)
                return self._walker.back(value)
            fields = self._from_message(cls, data, 1)
            obj = schema_of(cls).back(fields, 1, self._walker)
            return self.registry.upgraded(obj)
        except _ProtoDecodeError as exc:
            raise DecodeError(self.name, wire_name, f"malformed body: {exc}") from None
        except RecursionError:
            raise DecodeError(self.name, wire_name, "nesting too deep") from None
        except ModelError as exc:
            raise DecodeError(self.name, wire_name, str(exc)) from None

    def _from_message(self, cls: type, data: bytes, depth: int) -> dict[str, Any]:
        plan = self._plan(cls)
        return self._read(plan.decode_class.FromString(data), plan, depth)

    def _read(self, msg: Any, plan: _Plan, depth: int) -> dict[str, Any]:
        if depth > self.limits.max_depth:
            raise ModelError(f"nesting deeper than {self.limits.max_depth}")
        out: dict[str, Any] = {}
        name = ""
        try:
            for name, shape, nested in plan.fields:
                if shape in (_SINGULAR, _VALUE):
                    if msg.HasField(name):
                        out[name] = self._read_one(getattr(msg, name), shape, nested, depth)
                    continue
                items = getattr(msg, name)
                self._walker.check_container(len(items), depth + 1)
                if shape == _REPEATED:
                    out[name] = [self._read_one(x, shape, nested, depth + 1) for x in items]
                else:  # repeated entries (_entries_only)
                    d = {e.key: self._read_one(e.value, shape, nested, depth + 1) for e in items}
                    if len(d) != len(items):
                        raise _repeated_key(items)
                    out[name] = d
        except ModelError as exc:
            raise exc.at(f".{name}") from None
        return out

    def _read_one(self, value: Any, shape: str, nested: type | None, depth: int) -> Any:
        if shape == _VALUE or nested is _ValueItem:
            return self._from_value(value, depth)
        if nested is None:
            return value
        return self._read(value, self._plan(nested), depth + 1)

    def _from_value(self, msg: Any, depth: int) -> Any:
        kind = msg.WhichOneof("kind")
        if kind is None or kind == "null_value":
            return None
        if kind == "list_value":
            items = msg.list_value.items
            self._walker.check_container(len(items), depth + 1)
            return [self._from_value(x, depth + 1) for x in items]
        if kind == "map_value":
            entries = msg.map_value.entries  # repeated entries (_entries_only)
            self._walker.check_container(len(entries), depth + 1)
            d = {e.key: self._from_value(e.value, depth + 1) for e in entries}
            if len(d) != len(entries):
                raise _repeated_key(entries)
            return d
        if kind == "typed_value":
            wire_name = msg.typed_value.type
            if wire_name not in self.registry:
                raise ModelError(f"unknown message type {wire_name!r}")
            cls = self.registry.lookup(wire_name)
            fields = self._from_message(cls, msg.typed_value.data, depth + 1)
            return {TYPE_KEY: wire_name, VALUE_KEY: fields}
        if kind == "array_value":
            vector = msg.array_value
            return unpack(vector.dtype, list(vector.shape), vector.data)
        return getattr(msg, kind)


def _entries_only(fdp: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """A copy of ``fdp`` whose map fields are plain repeated entry messages.

    The protobuf spec defines ``map<K, V> f = N`` on the wire as ``repeated FEntry f = N``
    (message ``FEntry { K key = 1; V value = 2; }``): the same bytes parse either way, but a
    map keeps only the last entry of a repeated key, and repeated entries keep them all.
    """
    twin = descriptor_pb2.FileDescriptorProto()
    twin.CopyFrom(fdp)
    pending = list(twin.message_type)
    while pending:
        msg = pending.pop()
        if msg.options.map_entry:
            msg.ClearField("options")
        pending.extend(msg.nested_type)
    return twin


def _repeated_key(entries: Any) -> ModelError:
    seen = set()
    for entry in entries:
        if entry.key in seen:
            break
        seen.add(entry.key)
    return ModelError(f"duplicate map key {entry.key!r}")


def wire_name_of_class(cls: type) -> str:
    """Return the wire name of a registered class (protobuf needs one for every type)."""
    name = getattr(cls, "__sdk_wire_name__", None)
    if not isinstance(name, str):
        raise ModelError(
            f"{cls.__qualname__} is not a registered message: declare it with @message to "
            "send it as protobuf"
        )
    return name


def _render(fdp: descriptor_pb2.FileDescriptorProto) -> str:
    """Render a FileDescriptorProto as ``.proto`` source."""
    lines = [
        "// Generated by motadata-actors from the attrs definition; do not edit.",
        'syntax = "proto3";',
        "",
        f"package {fdp.package};",
        "",
    ]
    lines += [f'import "{dep}";' for dep in fdp.dependency]
    if fdp.dependency:
        lines.append("")
    for msg in fdp.message_type:
        lines += _render_message(msg, fdp.package)
        lines.append("")
    return "\n".join(lines)


def _type_ref(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type == F.TYPE_MESSAGE:
        return field.type_name
    return _TYPE_NAMES[field.type]


def _render_message(msg: descriptor_pb2.DescriptorProto, package: str) -> list[str]:
    entries = {f".{package}.{msg.name}.{n.name}": n for n in msg.nested_type if n.options.map_entry}
    lines = [f"message {msg.name} {{"]
    real_oneofs = {
        i: o.name
        for i, o in enumerate(msg.oneof_decl)
        if not any(f.proto3_optional and f.oneof_index == i for f in msg.field)
    }
    for index, oneof in real_oneofs.items():
        lines.append(f"  oneof {oneof} {{")
        for f in msg.field:
            if f.HasField("oneof_index") and f.oneof_index == index:
                lines.append(f"    {_type_ref(f)} {f.name} = {f.number};")
        lines.append("  }")
    for f in msg.field:
        if f.HasField("oneof_index") and f.oneof_index in real_oneofs:
            continue
        if f.type_name in entries:
            value = entries[f.type_name].field[1]
            lines.append(f"  map<string, {_type_ref(value)}> {f.name} = {f.number};")
        elif f.label == F.LABEL_REPEATED:
            lines.append(f"  repeated {_type_ref(f)} {f.name} = {f.number};")
        elif f.proto3_optional:
            lines.append(f"  optional {_type_ref(f)} {f.name} = {f.number};")
        else:
            lines.append(f"  {_type_ref(f)} {f.name} = {f.number};")
    lines.append("}")
    return lines
