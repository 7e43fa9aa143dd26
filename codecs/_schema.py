"""Schemas of typed messages: per attrs class, how each field is checked and converted.

A schema is compiled once per class from its attrs fields and their annotations:

| annotation                        | on the wire                              |
|-----------------------------------|------------------------------------------|
| ``str``, ``bytes``, ``bool``      | the same                                 |
| ``int``                           | a 64-bit integer                         |
| ``float``                         | a finite double (or an int of the model) |
| ``X | None``                      | X, or absent/null                        |
| ``list[X]``, ``tuple[X, ...]``    | a list of X                              |
| ``dict[str, X]``                  | a map of X                               |
| an attrs class                    | its field map (nested message)           |
| an Enum                           | its value                                |
| ``numpy.ndarray``, ``array.array`` | a vector (``_vectors``), of that type    |
| ``Any`` and anything else         | any value of the model                   |

Encoding checks every field against its annotation, so a wrong type fails at the
sender, naming the field; decoding checks again, ignores unknown fields (newer
senders), fills defaults for missing optional ones (older senders), and refuses a
missing required field by name.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Final, Union

import attrs

from ._values import INT_MAX, INT_MIN, ModelError, Walker, leaf_bound
from ._vectors import annotation, array_code, as_array, as_ndarray, dtype_of, is_vector

__all__ = ("Conv", "FieldSpec", "Schema", "schema_of")

_SCHEMA_ATTR: Final = "__sdk_schema__"
_NONE = type(None)


class Conv:
    """Checks and converts one field's values; subclasses per annotation kind.

    ``depth`` is the nesting depth of the container (message) holding the value.
    """

    kind = "any"

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        """Check ``value`` and return it ready for the codec."""
        return walker.out(value, depth)

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        """Check a decoded value and return the Python value for the field."""
        return walker.back(value, depth)

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        """An upper bound of ``value``'s encoded size, or -1 when it must be copied.

        A bound only when decoding would give back an equal immutable value of the same
        type, so in process it needs no copy.
        """
        return leaf_bound(value)


def _type_error(expected: str, value: object) -> ModelError:
    return ModelError(f"expected {expected}, got {type(value).__name__}")


class ScalarConv(Conv):
    """str, bytes, bool, int or float."""

    def __init__(self, tp: type) -> None:
        self.tp = tp
        self.kind = tp.__name__

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        tp = self.tp
        t = type(value)
        if t is tp and tp is not float and tp is not int and tp is not bytes:
            return value  # str, bool: nothing to check
        if tp is float:
            if t is int:
                if not INT_MIN <= value <= INT_MAX:  # an int of the model, even here
                    raise ModelError("integer outside 64-bit range")
                value = float(value)
            elif t is not float:
                raise _type_error("float", value)
            if value - value != 0:
                raise ModelError(f"non-finite float {value!r}")
            return value
        if tp is int:
            if t is not int:
                raise _type_error("int", value)
            if not INT_MIN <= value <= INT_MAX:
                raise ModelError("integer outside 64-bit range")
            return value
        if t is not tp:
            if tp is str and isinstance(value, str):
                return str.__str__(value)
            if tp is bytes and isinstance(value, (bytes, bytearray, memoryview)):
                value = bytes(value)
            else:
                raise _type_error(tp.__name__, value)
        return walker.out(value, depth)  # bytes: JSON wraps them

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        tp = self.tp
        t = type(value)
        if tp is bytes and t is dict:
            value = walker.back(value, depth)
            t = type(value)
        if t is tp:
            if tp is int and not INT_MIN <= value <= INT_MAX:
                raise ModelError("integer outside 64-bit range")
            if tp is float and value - value != 0:
                raise ModelError(f"non-finite float {value!r}")
            return value
        if tp is float and t is int:
            if not INT_MIN <= value <= INT_MAX:
                raise ModelError("integer outside 64-bit range")
            return float(value)
        raise _type_error(tp.__name__, value)

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        # Exactly the annotated type: an int in a float field comes back a float.
        return leaf_bound(value) if type(value) is self.tp else -1


class NoneConv(Conv):
    """Only None."""

    kind = "none"

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        if value is not None:
            raise _type_error("None", value)
        return None

    back = out

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        return 5 if value is None else -1


class OptionalConv(Conv):
    """``X | None``."""

    kind = "optional"

    def __init__(self, inner: Conv) -> None:
        self.inner = inner

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        return None if value is None else self.inner.out(value, depth, walker)

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        return None if value is None else self.inner.back(value, depth, walker)

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        return 5 if value is None else self.inner.shared(value, depth, walker)


class ListConv(Conv):
    """``list[X]`` (or ``tuple[X, ...]`` with ``as_tuple``)."""

    kind = "list"

    def __init__(self, item: Conv, *, as_tuple: bool = False) -> None:
        self.item = item
        self.as_tuple = as_tuple

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _type_error("list", value)
        item = self.item
        if type(item) is Conv:
            return walker.out(value, depth)
        walker.check_container(len(value), depth + 1)
        if type(item) is ScalarConv and item.tp is not bytes:
            types = set(map(type, value))
            if types == {item.tp} and item.tp is not int and item.tp is not float:
                return value
        result: list[Any] = []
        try:
            for x in value:
                result.append(item.out(x, depth + 1, walker))
        except ModelError as exc:
            raise exc.at(f"[{len(result)}]") from None
        return result

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        if type(value) is not list:
            raise _type_error("list", value)
        item = self.item
        if type(item) is Conv:
            result = walker.back(value, depth)
        else:
            walker.check_container(len(value), depth + 1)
            result = []
            try:
                for x in value:
                    result.append(item.back(x, depth + 1, walker))
            except ModelError as exc:
                raise exc.at(f"[{len(result)}]") from None
        return tuple(result) if self.as_tuple else result

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        # A tuple field comes back a tuple; a list field (mutable) is always copied.
        if not self.as_tuple or type(value) is not tuple:
            return -1
        if len(value) > walker.max_length or depth + 1 > walker.max_depth:
            return -1  # the copy refuses it with the limit's own error
        size = 2 + len(value)
        item = self.item
        for x in value:
            n = item.shared(x, depth + 1, walker)
            if n < 0:
                return -1
            size += n
        return size


class DictConv(Conv):
    """``dict[str, X]``."""

    kind = "dict"

    def __init__(self, item: Conv) -> None:
        self.item = item

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        if not isinstance(value, Mapping):
            raise _type_error("dict", value)
        if type(self.item) is Conv and type(value) is dict:
            return walker.out(value, depth)
        walker.check_container(len(value), depth + 1)
        result = {}
        key: Any = None
        try:
            for key, x in value.items():
                if type(key) is not str:
                    raise ModelError(f"map key {key!r} is not a str")
                result[key] = self.item.out(x, depth + 1, walker)
        except ModelError as exc:
            raise exc.at(f".{key}") if type(key) is str else exc from None
        return result

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        if type(value) is not dict:
            raise _type_error("dict", value)
        if type(self.item) is Conv:
            return walker.back(value, depth)
        walker.check_container(len(value), depth + 1)
        result = {}
        key: Any = None
        try:
            for key, x in value.items():
                result[key] = self.item.back(x, depth + 1, walker)
        except ModelError as exc:
            raise exc.at(f".{key}") from None
        return result

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        return -1  # mutable


class EnumConv(Conv):
    """An Enum: travels as its value."""

    kind = "enum"

    def __init__(self, tp: type[enum.Enum]) -> None:
        self.tp = tp

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        if not isinstance(value, self.tp):
            raise _type_error(self.tp.__name__, value)
        return walker.out(value.value, depth)

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        try:
            return self.tp(value)
        except (ValueError, TypeError):
            raise ModelError(f"{value!r} is not a {self.tp.__name__}") from None

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        return leaf_bound(value.value) if type(value) is self.tp else -1  # a member: a singleton


class MessageConv(Conv):
    """A nested attrs class."""

    kind = "message"

    def __init__(self, tp: type) -> None:
        self.tp = tp

    @property
    def schema(self) -> Schema:
        """The nested class's schema (compiled on first use: classes may refer to each other)."""
        return schema_of(self.tp)

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        if not isinstance(value, self.tp):
            raise _type_error(self.tp.__name__, value)
        return self.schema.out(value, depth + 1, walker)

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        return self.schema.back(value, depth + 1, walker)

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        return self.schema.shared(value, depth + 1, walker) if type(value) is self.tp else -1


class VectorConv(Conv):
    """A vector field: a numpy array or an ``array.array``, decoded into that type.

    The sender may hold either; a numpy annotation that fixes the element type
    (``NDArray[np.float32]``) is checked both ways.
    """

    kind = "vector"

    def __init__(self, numpy: bool, dtype: str | None) -> None:
        self.numpy = numpy
        self.dtype = dtype

    def out(self, value: Any, depth: int, walker: Walker) -> Any:
        if not is_vector(value):
            raise _type_error("a vector (a numpy array or an array.array)", value)
        if self.dtype is not None and dtype_of(value) != self.dtype:
            raise ModelError(f"expected a vector of {self.dtype}, got {dtype_of(value)}")
        if not self.numpy:
            array_code(value)  # refuses what the receiver could not make an array.array
        return walker.out(value, depth)

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        value = walker.back(value, depth)  # JSON's $array map becomes the vector here
        if not is_vector(value):
            raise _type_error("a vector", value)
        return as_ndarray(value, self.dtype) if self.numpy else as_array(value)

    def shared(self, value: Any, depth: int, walker: Walker) -> int:
        return -1  # mutable


def conv_for(tp: Any) -> Conv:
    """Return the converter for an annotation (``Conv()``, any value, when unknown)."""
    if tp in (str, bytes, bool, int, float):
        return ScalarConv(tp)
    vector = annotation(tp)
    if vector is not None:
        return VectorConv(*vector)
    if tp is None or tp is _NONE:
        return NoneConv()
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return EnumConv(tp)
        if attrs.has(tp):
            return MessageConv(tp)
        if tp is list:
            return ListConv(Conv())
        if tp is dict:
            return DictConv(Conv())
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not _NONE]
        inner = conv_for(rest[0]) if len(rest) == 1 else Conv()
        return OptionalConv(inner) if len(rest) < len(args) else inner
    if origin in (list, Sequence):
        return ListConv(conv_for(args[0]) if args else Conv())
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return ListConv(conv_for(args[0]), as_tuple=True)
    if origin in (dict, Mapping) and (not args or args[0] is str):
        return DictConv(conv_for(args[1]) if args else Conv())
    return Conv()


@attrs.frozen(slots=True)
class FieldSpec:
    """One field of a typed message."""

    name: str
    init_name: str
    conv: Conv
    required: bool
    number: int | None


@attrs.frozen(slots=True)
class Schema:
    """How to check and convert instances of one attrs class."""

    cls: type
    fields: tuple[FieldSpec, ...]
    convs: tuple[tuple[str, Conv], ...] = attrs.field(init=False)
    frozen: bool = attrs.field(init=False)
    """Whether instances are immutable (a frozen attrs class), so may be shared in process."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "convs", tuple((f.name, f.conv) for f in self.fields))
        object.__setattr__(self, "frozen", _is_frozen(self.cls))

    def out(self, obj: object, depth: int, walker: Walker) -> dict[str, Any]:
        """Return the field map of ``obj``, each field checked against its annotation.

        ``depth`` is the message's own nesting depth.
        """
        if depth > walker.max_depth:
            raise ModelError(f"nesting deeper than {walker.max_depth}")
        out: dict[str, Any] = {}
        name = ""
        try:
            for name, conv in self.convs:
                out[name] = conv.out(getattr(obj, name), depth, walker)
        except ModelError as exc:
            raise exc.at(f".{name}") from None
        return out

    def shared(self, obj: object, depth: int, walker: Walker) -> int:
        """An upper bound of ``obj``'s encoded field map, or -1 when it must be copied.

        A bound only when the class is frozen and every field immutable and of its
        annotated type, so in process ``obj`` itself can be delivered.
        """
        if not self.frozen or depth > walker.max_depth:
            return -1
        size = 2
        for name, conv in self.convs:
            n = conv.shared(getattr(obj, name), depth, walker)
            if n < 0:
                return -1
            size += n + 4 * len(name) + 4  # "name": , in UTF-8
        return size

    def back(self, value: Any, depth: int, walker: Walker) -> Any:
        """Build an instance from a decoded field map."""
        if type(value) is not dict:
            raise _type_error("a map of fields", value)
        if depth > walker.max_depth or len(value) > walker.max_length:
            walker.check_container(len(value), depth)
        kwargs: dict[str, Any] = {}
        f = None
        try:
            for f in self.fields:
                if f.name in value:
                    kwargs[f.init_name] = f.conv.back(value[f.name], depth, walker)
                elif f.required:
                    raise ModelError(f"missing required field {f.name!r}")
        except ModelError as exc:
            raise exc.at(f".{f.name}") if f is not None and f.name in value else exc from None
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{self.cls.__name__} refused the fields: {exc}") from exc


def _is_frozen(cls: type) -> bool:
    """Whether instances of ``cls`` are wholly carried by their fields and immutable.

    A frozen attrs class whose every attribute is set through ``__init__``: one with
    ``init=False`` holds state the wire does not carry (a cache, a derived list), which a
    receiver would otherwise share with its sender.
    """
    try:
        frozen = attrs.inspect(cls).is_frozen
    except attrs.exceptions.NotAnAttrsClassError:
        return False
    return frozen and all(a.init for a in attrs.fields(cls))


def schema_of(cls: type) -> Schema:
    """Return (compiling once) the schema of an attrs class."""
    schema: Schema | None = cls.__dict__.get(_SCHEMA_ATTR)
    if schema is not None:
        return schema
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # a class defined in a function, say: fields are Any
        hints = {}
    fields = []
    for a in attrs.fields(cls):
        if not a.init:
            continue
        tp = hints.get(a.name, a.type if not isinstance(a.type, str) else Any)
        number = a.metadata.get("proto")
        fields.append(
            FieldSpec(
                name=a.name,
                init_name=a.alias or a.name,
                conv=conv_for(tp),
                required=a.default is attrs.NOTHING,
                number=number,
            )
        )
    schema = Schema(cls, tuple(fields))
    setattr(cls, _SCHEMA_ATTR, schema)
    return schema
