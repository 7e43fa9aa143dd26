"""Typed messages: ``@message`` and the registry that maps wire names to classes.

Rules:

* A wire name is lowercase dotted tokens ending in a version, ``planner.plan.v1``.
* ``@message`` makes the class a frozen attrs class (when it is not an attrs class
  already) and registers it in a registry, the process-wide default unless one is given.
* On the wire a typed message is a mapping of its field names to plain values; the
  wire name travels beside it (in the ``Sdk-Message-Type`` header), never in the body.
* Decoding ignores unknown fields (newer senders may add optional fields) and uses
  defaults for missing optional ones; a missing required field is a ``CodecError``
  naming the field.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, dataclass_transform

import attr
import attrs

from motadata_actors._errors import CodecError

__all__ = ("TypeRegistry", "default_registry", "message", "wire_name_of")

T = TypeVar("T")

_WIRE_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[0-9]+")
_WIRE_NAME_MAX = 128
_ATTR = "__sdk_wire_name__"


def _check_wire_name(wire_name: object) -> str:
    if (
        not isinstance(wire_name, str)
        or len(wire_name) > _WIRE_NAME_MAX
        or not _WIRE_NAME.fullmatch(wire_name)
    ):
        raise CodecError(
            f"invalid wire name {wire_name!r}: use lowercase dotted tokens ending in a "
            f"version, such as 'planner.plan.v1' (at most {_WIRE_NAME_MAX} characters)"
        )
    return wire_name


def wire_name_of(obj: object) -> str | None:
    """Return the wire name of a typed message instance, or None for a plain value."""
    name: str | None = getattr(type(obj), _ATTR, None)
    return name


class TypeRegistry:
    """Maps wire names to message classes and converts instances to and from plain values.

    One registry serves a whole :class:`~motadata_actors.ActorSystem`; ``@message``
    registers into :func:`default_registry` unless told otherwise.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, type[Any]] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[T], wire_name: str) -> type[T]:
        """Register an attrs class under ``wire_name``.

        Raises:
            CodecError: the wire name is malformed, the class is not an attrs class,
                or the name is taken by another class.
        """
        _check_wire_name(wire_name)
        is_attrs = attrs.has(cls)  # not in the `if`: the TypeGuard would narrow `cls`
        if not is_attrs:
            raise CodecError(f"{cls.__qualname__} must be an attrs class to be registered")
        with self._lock:
            existing = self._by_name.get(wire_name)
            if existing is not None and existing.__qualname__ != cls.__qualname__:
                raise CodecError(
                    f"wire name {wire_name!r} is already registered to "
                    f"{existing.__module__}.{existing.__qualname__}"
                )
            self._by_name[wire_name] = cls
        setattr(cls, _ATTR, wire_name)
        return cls

    def lookup(self, wire_name: str) -> type[Any]:
        """Return the class registered under ``wire_name``.

        Raises:
            CodecError: nothing is registered under that name.
        """
        try:
            return self._by_name[wire_name]
        except KeyError:
            raise CodecError(
                f"unknown message type {wire_name!r}: no class is registered "
                "under that wire name in this process"
            ) from None

    def __contains__(self, wire_name: object) -> bool:
        return wire_name in self._by_name

    def to_value(self, obj: object) -> Any:
        """Convert a typed message (or a plain value) into plain values a codec can carry."""
        if attrs.has(type(obj)):
            return attrs.asdict(obj, recurse=True)  # type: ignore[arg-type]
        return obj

    def from_value(self, wire_name: str, value: object) -> Any:
        """Build an instance of the class registered under ``wire_name`` from plain values.

        Raises:
            CodecError: unknown wire name, a body that is not a mapping, a missing
                required field, or a value the class rejects.
        """
        return _build(self.lookup(wire_name), value, wire_name)


def _resolve(cls: type[Any]) -> None:
    # Turn string annotations into types once, so nested attrs fields can be rebuilt.
    # A class defined in a function may name types its module cannot see: those
    # fields then arrive as plain values.
    if getattr(cls, "__sdk_resolved__", False):
        return
    with contextlib.suppress(NameError):
        attrs.resolve_types(cls)
    setattr(cls, "__sdk_resolved__", True)  # noqa: B010


def _build(cls: type[Any], value: object, where: str) -> Any:
    if not isinstance(value, Mapping):
        raise CodecError(f"{where}: expected a mapping of fields, got {type(value).__name__}")
    _resolve(cls)
    kwargs: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        key = field.alias or field.name
        if field.name not in value:
            if field.default is attrs.NOTHING:
                raise CodecError(f"{where}: missing required field {field.name!r}")
            continue
        item = value[field.name]
        if isinstance(field.type, type) and attrs.has(field.type) and isinstance(item, Mapping):
            item = _build(field.type, item, f"{where}.{field.name}")
        kwargs[key] = item
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{where}: {exc}") from exc


_DEFAULT = TypeRegistry()


def default_registry() -> TypeRegistry:
    """Return the process-wide registry that ``@message`` uses by default."""
    return _DEFAULT


@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field, attr.attrib))
def message(
    wire_name: str, *, registry: TypeRegistry | None = None
) -> Callable[[type[T]], type[T]]:
    """Declare a typed message: a frozen attrs class registered under a versioned wire name.

    Example::

        @message("planner.plan.v1")
        class Plan:
            goal: str
            steps: int = 3

    Args:
        wire_name: lowercase dotted tokens ending in a version, such as ``planner.plan.v1``.
        registry: where to register; the process-wide default when omitted.

    Raises:
        CodecError: the wire name is malformed or already taken by another class.
    """
    _check_wire_name(wire_name)
    target = registry if registry is not None else _DEFAULT

    def decorate(cls: type[T]) -> type[T]:
        is_attrs = attrs.has(cls)
        made = cls if is_attrs else attrs.frozen(cls)
        return target.register(made, wire_name)

    return decorate
