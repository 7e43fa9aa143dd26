"""JSON Schema (2020-12) of typed messages, as the JSON codec writes them (sans-io, pure).

Made from the same compiled schema the codecs check with (``_schema``), so it says what a
receiver accepts: required fields are those without a default, ``X | None`` may be null,
ints are 64-bit, floats finite, bytes are ``{"$bytes": base64}``, vectors the ``$array``
map, nested messages are ``$defs`` entries referenced by ``$ref`` (a class may contain
itself), ``Any`` fields are any value. Unknown fields are allowed (newer senders add them).
"""

from __future__ import annotations

from typing import Any, Final

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
from ._values import INT_MAX, INT_MIN

__all__ = ("json_schema",)

_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_BYTES: Final = {
    "type": "object",
    "properties": {"$bytes": {"type": "string", "contentEncoding": "base64"}},
    "required": ["$bytes"],
    "additionalProperties": False,
}
_VECTOR: Final = {
    "type": "object",
    "properties": {
        "$array": {
            "type": "object",
            "properties": {
                "dtype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "data": {"type": "string", "contentEncoding": "base64"},
            },
            "required": ["dtype", "shape", "data"],
        }
    },
    "required": ["$array"],
}


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of ``cls``'s messages (an attrs class, ``@message`` or not).

    Its ``title`` is the wire name (or the class name), its ``description`` the class's
    docstring's first paragraph.
    """
    defs: dict[str, Any] = {}
    root = _message(cls, defs)
    out: dict[str, Any] = {"$schema": _DIALECT, **defs[root]}
    if len(defs) > 1 or _refers_to(defs, root):
        out["$defs"] = defs  # the root stays there too: it may refer to itself
    return out


def _refers_to(defs: dict[str, Any], name: str) -> bool:
    return f'"#/$defs/{name}"' in repr(defs).replace("'", '"')


def _name(cls: type) -> str:
    return getattr(cls, "__sdk_wire_name__", None) or cls.__qualname__


def _message(cls: type, defs: dict[str, Any]) -> str:
    name = _name(cls)
    if name in defs:
        return name
    defs[name] = {}  # placed first: a class may refer to itself
    properties: dict[str, Any] = {}
    required: list[str] = []
    for spec in schema_of(cls).fields:
        properties[spec.name] = _of(spec.conv, defs)
        if spec.required:
            required.append(spec.name)
    entry: dict[str, Any] = {"title": name, "type": "object", "properties": properties}
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc:
        entry["description"] = " ".join(doc.split())
    if required:
        entry["required"] = required
    defs[name] = entry
    return name


def _of(conv: Conv, defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(conv, ScalarConv):
        kind = conv.kind
        if kind == "int":
            return {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
        if kind == "float":
            return {"type": "number"}
        if kind == "bytes":
            return dict(_BYTES)
        return {"type": {"str": "string", "bool": "boolean"}[kind]}
    if isinstance(conv, NoneConv):
        return {"type": "null"}
    if isinstance(conv, OptionalConv):
        return {"anyOf": [_of(conv.inner, defs), {"type": "null"}]}
    if isinstance(conv, ListConv):
        return {"type": "array", "items": _of(conv.item, defs)}
    if isinstance(conv, DictConv):
        return {"type": "object", "additionalProperties": _of(conv.item, defs)}
    if isinstance(conv, EnumConv):
        return {"enum": [member.value for member in conv.tp]}
    if isinstance(conv, MessageConv):
        return {"$ref": f"#/$defs/{_message(conv.tp, defs)}"}
    if isinstance(conv, VectorConv):
        return dict(_VECTOR)
    return {}  # Any: every value of the model
