"""Typed messages: ``@message``, ``field``, and the registry of wire names.

Rules:

* A wire name is lowercase dotted tokens ending in a version, ``planner.plan.v1``.
* ``@message`` makes the class a frozen attrs class (when it is not an attrs class
  already) and registers it, in the process-wide default registry unless told otherwise.
* On the wire a typed message is the map of its fields; its wire name travels in the
  ``Sdk-Message-Type`` header (or, inside an untyped value, in a reserved map).
* Versions live side by side: ``planner.plan.v1`` and ``planner.plan.v2`` are two
  classes. ``upgrade={PlanV1: to_v2}`` on v2 makes every decoded v1 arrive as v2, so a
  fleet can move one service at a time.
* Protobuf needs a stable number per field: declare it with ``field(proto=N)``;
  numbers never come from field order, so inserting a field renumbers nothing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, dataclass_transform

import attr
import attrs

from motadata_actors._errors import CodecError

from ._schema import schema_of
from ._values import ModelError, Walker

__all__ = ("TypeRegistry", "default_registry", "field", "message", "wire_name_of")

T = TypeVar("T")

_WIRE_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[0-9]+")
_WIRE_NAME_MAX = 128
_ATTR = "__sdk_wire_name__"
_MAX_UPGRADES = 16


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


def field(
    *,
    proto: int | None = None,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    validator: Any = None,
    converter: Any = None,
) -> Any:
    """Declare a message field, with its protobuf field number.

    Args:
        proto: the protobuf field number (1 to 536870911, never reused); required for
            every field of a message sent with the protobuf codec.
        default: the default value, which makes the field optional.
        factory: a callable making the default (for lists and dicts).
        validator: an attrs validator.
        converter: an attrs converter.
    """
    if proto is not None and (type(proto) is not int or not 1 <= proto <= 536_870_911):
        raise CodecError(f"protobuf field number must be an int in 1..536870911, not {proto!r}")
    if factory is not None:
        default = attrs.Factory(factory)
    return attrs.field(
        default=default,
        validator=validator,
        converter=converter,
        metadata={"proto": proto} if proto is not None else {},
    )


class TypeRegistry:
    """Maps wire names to message classes, and decodes field maps into instances.

    One registry serves a whole :class:`~motadata_actors.ActorSystem`; ``@message``
    registers into :func:`default_registry` unless told otherwise.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, type[Any]] = {}
        self._upgrades: dict[type[Any], Callable[[Any], Any]] = {}
        self._lock = threading.Lock()

    def register(
        self,
        cls: type[T],
        wire_name: str,
        *,
        upgrade: Mapping[type[Any], Callable[[Any], Any]] | None = None,
    ) -> type[T]:
        """Register an attrs class under ``wire_name``.

        Args:
            cls: an attrs class.
            wire_name: its versioned wire name.
            upgrade: older classes mapped to functions that turn an instance of the older
                class into one of ``cls``; applied to every decoded older message.

        Raises:
            CodecError: the wire name is malformed or taken by another class, or the
                class is not an attrs class.
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
            for old, fn in (upgrade or {}).items():
                self._upgrades[old] = fn
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
                f"unknown message type {wire_name!r}: no class is registered under that "
                "wire name in this process"
            ) from None

    def shares(self, wire_name: str, cls: type[Any]) -> bool:
        """Whether ``cls`` sent as ``wire_name`` decodes here to ``cls``, with no upgrade.

        Then in process an instance may be delivered as itself.
        """
        return self._by_name.get(wire_name) is cls and cls not in self._upgrades

    def __contains__(self, wire_name: object) -> bool:
        return wire_name in self._by_name

    def wire_names(self) -> list[str]:
        """Return every registered wire name, sorted."""
        return sorted(self._by_name)

    def to_fields(self, obj: object, depth: int, walker: Walker) -> dict[str, Any]:
        """Return the checked field map of a typed message (used by the codecs)."""
        return schema_of(type(obj)).out(obj, depth, walker)

    def from_fields(self, wire_name: str, value: Any, depth: int, walker: Walker) -> Any:
        """Build the message ``wire_name`` from its field map, upgraded if an upgrade is set.

        Raises:
            ModelError: unknown wire name, or fields that do not fit the class.
        """
        cls = self._by_name.get(wire_name)
        if cls is None:
            raise ModelError(f"unknown message type {wire_name!r}")
        return self.upgraded(schema_of(cls).back(value, depth, walker))

    def upgraded(self, obj: Any) -> Any:
        """Apply registered upgrades to ``obj`` until its class has none."""
        for _ in range(_MAX_UPGRADES):
            fn = self._upgrades.get(type(obj))
            if fn is None:
                return obj
            try:
                obj = fn(obj)
            except Exception as exc:
                raise ModelError(f"upgrade of {type(obj).__name__} failed: {exc!r}") from exc
        raise ModelError(f"more than {_MAX_UPGRADES} upgrades in a row (a cycle?)")


_DEFAULT = TypeRegistry()


def default_registry() -> TypeRegistry:
    """Return the process-wide registry that ``@message`` uses by default."""
    return _DEFAULT


@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field, attr.attrib, field))
def message(
    wire_name: str,
    *,
    registry: TypeRegistry | None = None,
    upgrade: Mapping[type[Any], Callable[[Any], Any]] | None = None,
) -> Callable[[type[T]], type[T]]:
    """Declare a typed message: a frozen attrs class registered under a versioned wire name.

    Example::

        @message("planner.plan.v1")
        class Plan:
            goal: str = field(proto=1)
            steps: int = field(proto=2, default=3)

    Args:
        wire_name: lowercase dotted tokens ending in a version, such as ``planner.plan.v1``.
        registry: where to register; the process-wide default when omitted.
        upgrade: older message classes mapped to functions that turn an older instance
            into this class; decoded older messages then arrive upgraded.

    Raises:
        CodecError: the wire name is malformed or already taken by another class.
    """
    _check_wire_name(wire_name)
    target = registry if registry is not None else _DEFAULT

    def decorate(cls: type[T]) -> type[T]:
        is_attrs = attrs.has(cls)
        made = cls if is_attrs else attrs.frozen(cls)
        return target.register(made, wire_name, upgrade=upgrade)

    return decorate
