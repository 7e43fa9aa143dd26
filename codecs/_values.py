"""The value model, checked on the way out and on the way in (sans-io, pure).

The model is exact and the same for every codec:

* None, bool, str, bytes;
* int in [-2**63, 2**63 - 1];
* float, finite only: NaN and the infinities are refused by every codec (JSON cannot
  carry them, and one rule for all codecs keeps a fleet's codecs interchangeable);
* lists (a tuple is sent as a list), dicts with str keys;
* typed messages (``@message``): a typed message in an untyped position (inside a
  plain list or dict, or a field annotated ``Any``) travels as the reserved map
  ``{"$type": <wire name>, "$value": {<fields>}}`` and comes back as an instance.

Enum members travel as their values; subclasses of str, int and float as the base type,
numpy scalars as the Python number they hold. Vectors (numpy arrays, ``array.array``)
travel as their raw bytes in each codec's own form (``_vectors``). Anything else is
refused at encode time. JSON has no bytes: the JSON codec carries
them as the reserved map ``{"$bytes": "<base64>"}`` (and vectors as ``{"$array": {...}}``). A plain
dict shaped like a reserved map is refused at encode time, so decoding is never ambiguous.

Depth and container lengths are bounded (:class:`Limits`) in both directions.
Containers made only of plain leaves are checked with C-speed passes (``set(map(type,
...))``, ``sum``, ``min``/``max``), because this runs for every message.
"""

from __future__ import annotations

import base64
import enum
import sys
from collections.abc import Callable
from typing import Any, Final, NamedTuple

_Plain = Callable[[object, int, int, bool, bool], bool]
_plain: _Plain | None
try:  # the optional C fast path (setup.py builds it; pure Python is the fallback)
    from ._fastcheck import plain as _plain
except ImportError:  # pragma: no cover - a build without a C compiler
    _plain = None

__all__ = ("ModelError", "VectorHooks", "Walker")

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
TYPE_KEY: Final = "$type"
VALUE_KEY: Final = "$value"
BYTES_KEY: Final = "$bytes"
ARRAY_KEY: Final = "$array"
WIRE_ATTR: Final = "__sdk_wire_name__"

_NONE = type(None)
_SIMPLE: Final = frozenset({str, bool, _NONE})
_NUMERIC_LEAVES: Final = frozenset({str, bool, _NONE, int, float})


def leaf_bound(value: Any) -> int:
    """An upper bound of a plain leaf's encoded size in every codec; -1 when not one.

    A leaf is an immutable value the model carries as itself: exact str, bytes, bool, None,
    an int in 64-bit range, a finite float. Subclasses, containers and anything else are -1:
    in process they are copied (a list comes back a list, a tuple a list too).
    """
    t = type(value)
    if t is str:
        if not value.isascii():
            try:  # a lone surrogate has no UTF-8: the codec refuses it, so it is no leaf
                value.encode()
            except UnicodeEncodeError:
                return -1
        return 6 * len(value) + 2  # JSON's worst escape is six bytes per character
    if t is bytes:
        return 4 * len(value) // 3 + 16  # JSON's {"$bytes": base64}
    if t is int:
        return 24 if INT_MIN <= value <= INT_MAX else -1
    if t is float:
        return 32 if value - value == 0 else -1
    if t is bool or value is None:
        return 5
    return -1


class ModelError(Exception):
    """A value is outside the value model; the codec turns it into Encode/DecodeError.

    The path to the value is collected while the error unwinds (``parts``), so the
    happy path never builds path strings.
    """

    def __init__(self, reason: str, *parts: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.parts = list(parts)

    def at(self, part: str) -> ModelError:
        """Record one more (outer) step of the path; return self for ``raise``."""
        self.parts.append(part)
        return self

    @property
    def path(self) -> str:
        """The path from the message's root to the value, like ``$.params.stop[1]``."""
        return "$" + "".join(reversed(self.parts))

    def __str__(self) -> str:
        return f"{self.reason} at {self.path}"


def _check_numbers(items: Any, types: set[type]) -> None:
    """Check the ints and floats of a list of plain leaves, at C speed where possible."""
    if float in types:
        floats = items if len(types) == 1 else [x for x in items if type(x) is float]
        total = sum(floats)
        if total - total != 0:  # NaN or inf somewhere (or an overflow: look closer)
            for i, x in enumerate(items):
                if type(x) is float and x - x != 0:
                    raise ModelError(f"non-finite float {x!r}", f"[{i}]")
    if int in types:
        ints = items if len(types) == 1 else [x for x in items if type(x) is int]
        if min(ints) < INT_MIN or max(ints) > INT_MAX:
            for i, x in enumerate(items):
                if type(x) is int and not INT_MIN <= x <= INT_MAX:
                    raise ModelError("integer outside 64-bit range", f"[{i}]")


class VectorHooks(NamedTuple):
    """How a codec carries vectors (made from ``_vectors``, which needs this module)."""

    is_vector: Callable[[Any], bool]
    out: Callable[[Any], Any]
    """A vector's wire form in the codec."""
    from_map: Callable[[Any], Any]
    """A vector from the inside of a JSON ``$array`` map."""


class Walker:
    """Checks (and, where needed, converts) values against the model for one codec.

    Args:
        max_depth: deepest nesting allowed.
        max_length: most items in one container.
        json_bytes: carry bytes as ``{"$bytes": base64}`` (JSON has no bytes).
        registry: where decoding finds the classes of ``$type`` maps.
        to_fields: turns a typed message into its field map (the registry's).
        from_fields: builds a typed message from its wire name and field map.
        fast: use the C check (when built) to pass plain values through untouched.
        vectors: how the codec carries vectors (``_vectors``); None: it carries none.
    """

    def __init__(
        self,
        *,
        max_depth: int,
        max_length: int,
        json_bytes: bool,
        to_fields: Callable[[object, int, Walker], dict[str, Any]],
        from_fields: Callable[[str, Any, int, Walker], object],
        fast: bool = True,
        vectors: VectorHooks | None = None,
    ) -> None:
        self.max_depth = max_depth
        self.max_length = max_length
        self.json_bytes = json_bytes
        self._plain = _plain if fast else None
        self._to_fields = to_fields
        self._from_fields = from_fields
        self._vectors = vectors

    # -- encoding ----------------------------------------------------------------

    def out(self, value: Any, depth: int = 0) -> Any:
        """Return ``value`` ready for the codec's library (the same object if unchanged).

        ``depth`` is the nesting depth of the container holding ``value``.
        """
        plain = self._plain
        if plain is not None and plain(
            value, self.max_depth - depth, self.max_length, not self.json_bytes, True
        ):
            return value  # proven plain by the C check: nothing to convert or refuse
        return self._out(value, depth)

    def _out(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t in _SIMPLE:
            return value
        if t is int:
            if not INT_MIN <= value <= INT_MAX:
                raise ModelError("integer outside 64-bit range")
            return value
        if t is float:
            if value - value != 0:
                raise ModelError(f"non-finite float {value!r}")
            return value
        if t is dict:
            return self._out_dict(value, depth + 1)
        if t is list or t is tuple:
            return self._out_list(value, depth + 1)
        if t is bytes:
            return {BYTES_KEY: base64.b64encode(value).decode()} if self.json_bytes else value
        wire_name = getattr(t, WIRE_ATTR, None)
        if wire_name is not None:
            return {TYPE_KEY: wire_name, VALUE_KEY: self._to_fields(value, depth + 1, self)}
        return self._out_other(value, depth)

    def _out_other(self, value: Any, depth: int) -> Any:
        vectors = self._vectors
        if vectors is not None and vectors.is_vector(value):
            return vectors.out(value)
        if isinstance(value, enum.Enum):
            return self._out(value.value, depth)
        if isinstance(value, (bytearray, memoryview)):
            return self._out(bytes(value), depth)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return self._out(int(value), depth)
        if isinstance(value, float):
            return self._out(float(value), depth)
        if isinstance(value, bytes):
            return self._out(bytes(value), depth)
        if isinstance(value, dict):
            return self._out(dict(value), depth)
        if isinstance(value, list):
            return self._out(list(value), depth)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(value, np.generic):
            return self._out(value.item(), depth)  # np.float32(0.5): the number it holds
        raise ModelError(f"{type(value).__qualname__} is not in the value model")

    def check_container(self, size: int, depth: int) -> None:
        """Raise if a container of ``size`` items at ``depth`` breaks the limits."""
        if depth > self.max_depth:
            raise ModelError(f"nesting deeper than {self.max_depth}")
        if size > self.max_length:
            raise ModelError(f"container of {size} items exceeds {self.max_length}")

    def _out_dict(self, d: dict[Any, Any], depth: int) -> dict[str, Any]:
        if depth > self.max_depth or len(d) > self.max_length:
            self.check_container(len(d), depth)
        if len(d) <= 2 and (TYPE_KEY in d or BYTES_KEY in d or ARRAY_KEY in d) and _reserved(d):
            raise ModelError(f"a plain map with keys {sorted(d)} is reserved")
        out: dict[str, Any] | None = None
        key: Any = None
        try:
            for key, item in d.items():
                if type(key) is not str:
                    raise ModelError(f"map key {key!r} is not a str")
                t = type(item)
                if t in _SIMPLE:
                    continue
                if t is float:
                    if item - item != 0:
                        raise ModelError(f"non-finite float {item!r}")
                    continue
                if t is int:
                    if not INT_MIN <= item <= INT_MAX:
                        raise ModelError("integer outside 64-bit range")
                    continue
                new = self._out(item, depth)
                if new is not item:
                    if out is None:
                        out = dict(d)
                    out[key] = new
        except ModelError as exc:
            raise exc.at(f".{key}") if type(key) is str else exc from None
        return d if out is None else out

    def _out_list(self, items: list[Any] | tuple[Any, ...], depth: int) -> Any:
        if depth > self.max_depth or len(items) > self.max_length:
            self.check_container(len(items), depth)
        types = set(map(type, items))
        if types <= _SIMPLE:
            return items
        if types <= _NUMERIC_LEAVES:
            _check_numbers(items, types)
            return items
        out: list[Any] | None = None
        i = 0
        try:
            for i, item in enumerate(items):
                new = self._out(item, depth)
                if new is not item:
                    if out is None:
                        out = list(items)
                    out[i] = new
        except ModelError as exc:
            raise exc.at(f"[{i}]") from None
        return items if out is None else out

    # -- decoding ----------------------------------------------------------------

    def back(self, value: Any, depth: int = 0) -> Any:
        """Check a decoded value against the model and restore reserved maps."""
        plain = self._plain
        if plain is not None and plain(value, self.max_depth - depth, self.max_length, True, False):
            return value  # proven plain by the C check
        return self._back(value, depth)

    def _back(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is dict:
            return self._back_dict(value, depth + 1)
        if t is list:
            return self._back_list(value, depth + 1)
        if t in _SIMPLE or t is bytes:
            return value
        if t is int:
            if not INT_MIN <= value <= INT_MAX:
                raise ModelError("integer outside 64-bit range")
            return value
        if t is float:
            if value - value != 0:
                raise ModelError(f"non-finite float {value!r}")
            return value
        if self._vectors is not None and self._vectors.is_vector(value):
            return value  # built and checked by the codec's decoder
        raise ModelError(f"{t.__qualname__} is not in the value model")

    def _back_dict(self, d: dict[Any, Any], depth: int) -> Any:
        if depth > self.max_depth or len(d) > self.max_length:
            self.check_container(len(d), depth)
        if len(d) <= 2:
            if self.json_bytes and len(d) == 1 and BYTES_KEY in d:
                raw = d[BYTES_KEY]
                if type(raw) is not str:
                    raise ModelError("$bytes must hold a base64 string")
                try:
                    return base64.b64decode(raw, validate=True)
                except ValueError:  # binascii.Error, or a non-ASCII string
                    raise ModelError("$bytes holds invalid base64") from None
            if self.json_bytes and len(d) == 1 and ARRAY_KEY in d and self._vectors is not None:
                return self._vectors.from_map(d[ARRAY_KEY])
            if len(d) == 2 and TYPE_KEY in d and VALUE_KEY in d:
                wire_name = d[TYPE_KEY]
                if type(wire_name) is not str:
                    raise ModelError("$type must be a str")
                return self._from_fields(wire_name, d[VALUE_KEY], depth, self)
        key: Any = None
        try:
            for key, item in d.items():
                if type(key) is not str:
                    raise ModelError(f"map key {key!r} is not a str")
                t = type(item)
                if t in _SIMPLE:
                    continue
                if t is float:
                    if item - item != 0:
                        raise ModelError(f"non-finite float {item!r}")
                    continue
                new = self._back(item, depth)
                if new is not item:
                    d[key] = new  # decoded values are ours to change
        except ModelError as exc:
            raise exc.at(f".{key}") if type(key) is str else exc from None
        return d

    def _back_list(self, items: list[Any], depth: int) -> list[Any]:
        if depth > self.max_depth or len(items) > self.max_length:
            self.check_container(len(items), depth)
        types = set(map(type, items))
        if types <= _SIMPLE:
            return items
        if types <= _NUMERIC_LEAVES:
            _check_numbers(items, types)
            return items
        i = 0
        try:
            for i, item in enumerate(items):
                new = self._back(item, depth)
                if new is not item:
                    items[i] = new
        except ModelError as exc:
            raise exc.at(f"[{i}]") from None
        return items


def _reserved(d: dict[Any, Any]) -> bool:
    keys = set(d)
    return keys == {TYPE_KEY, VALUE_KEY} or keys == {BYTES_KEY} or keys == {ARRAY_KEY}
