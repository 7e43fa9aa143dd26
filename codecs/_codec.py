"""The Codec protocol and the shared machinery of the self-describing codecs.

A codec turns a message (a typed message or a plain value of the model, see
``_values``) into bytes and back: pure, synchronous, bounded by :class:`Limits`.
Every failure is an :class:`EncodeError`, :class:`DecodeError` or
:class:`MessageTooLarge`, saying which codec, which message type and what was wrong.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from motadata_actors._errors import DecodeError, EncodeError, MessageTooLarge

from ._limits import Limits
from ._registry import TypeRegistry, default_registry, wire_name_of
from ._schema import schema_of
from ._strict import BodyError
from ._values import ModelError, VectorHooks, Walker, leaf_bound
from ._vectors import Packed, from_json, is_vector, pack

__all__ = ("Codec", "ValueCodec")


class Codec(Protocol):
    """Turns messages into bytes and back; pure and synchronous."""

    @property
    def name(self) -> str:
        """The codec's name, as in ``CODEC_TYPE``."""
        ...

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` of the bodies it writes."""
        ...

    @property
    def registry(self) -> TypeRegistry:
        """Where typed messages are looked up."""
        ...

    @property
    def limits(self) -> Limits:
        """The bounds it enforces."""
        ...

    def encode(self, obj: object) -> bytes:
        """Encode a typed message or a plain value.

        Raises:
            EncodeError: the value is outside the model or a typed field is wrong.
            MessageTooLarge: the result exceeds ``limits.max_size``.
        """
        ...

    def encode_inline(self, obj: object) -> bytes:
        """Encode ``obj`` as an untyped value: a typed message carries its wire name inline.

        For bodies that travel without an ``Sdk-Message-Type`` header; ``decode`` without
        a class restores the typed message.
        """
        ...

    def decode(self, data: bytes, cls: type[Any] | None = None) -> Any:
        """Decode bytes: into an instance of ``cls`` (typed) or a plain value.

        Raises:
            DecodeError: malformed bytes, a limit exceeded, or fields that do not fit.
        """
        ...


class ValueCodec:
    """Base of the codecs whose library works on plain Python values.

    Subclasses set ``name``, ``content_type`` and ``json_bytes``, and implement
    ``_dumps``, ``_loads`` and ``_vector`` (a vector's wire form, see ``_vectors``); library
    errors they raise, ``BodyError`` (a strict rule broken, see ``_strict``) and
    ``ModelError`` (a bad vector, say), become ``DecodeError``. ``_loads`` also says
    whether the value is proven plain within the limits (the walker's fast check, done by
    the strict check's walk), so that an untyped decode walks it only once.
    """

    name: ClassVar[str]
    content_type: ClassVar[str]
    json_bytes: ClassVar[bool] = False
    shares: ClassVar[bool] = False
    """Whether :meth:`shared_size` may let a value skip this codec in process (the codec
    would accept every value it allows, and give back an equal one). Off unless a codec
    says so: JSON, MessagePack and CBOR do; a plug-in with rules of its own does not."""
    _library_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, registry: TypeRegistry | None = None, limits: Limits | None = None) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.limits = limits if limits is not None else Limits()
        self._max_depth = self.limits.max_depth  # read on every decode
        self._max_length = self.limits.max_length
        self._walker = Walker(
            max_depth=self.limits.max_depth,
            max_length=self.limits.max_length,
            json_bytes=self.json_bytes,
            to_fields=self.registry.to_fields,
            from_fields=self.registry.from_fields,
            vectors=VectorHooks(is_vector, lambda v: self._vector(pack(v)), from_json),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.content_type}>"

    def _dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def _loads(self, data: bytes) -> tuple[Any, bool]:
        raise NotImplementedError

    def _vector(self, packed: Packed) -> Any:
        raise NotImplementedError

    def encode(self, obj: object) -> bytes:
        """Encode a typed message (its field map) or a plain value of the model."""
        return self._encode(obj, wire_name_of(obj))

    def encode_inline(self, obj: object) -> bytes:
        """Encode ``obj`` as an untyped value (a typed message carries its wire name inline)."""
        return self._encode(obj, None)

    def shared_size(self, obj: object) -> int:
        """An upper bound of ``obj``'s encoded size if in process it may go as itself.

        That is, without a copy: immutable (a plain leaf, or a frozen typed message whose
        fields are leaves, tuples or frozen messages of their annotated types) and inside
        the value model and its limits, so this codec would encode it and decode an equal
        value of the same type. -1 otherwise: then it is encoded, and so copied.
        """
        if not self.shares:
            return -1
        wire_name = wire_name_of(obj)
        if wire_name is None:
            return leaf_bound(obj)
        return schema_of(type(obj)).shared(obj, 1, self._walker)

    def _encode(self, obj: object, wire_name: str | None) -> bytes:
        try:
            if wire_name is None:
                value = self._walker.out(obj)
            else:
                value = schema_of(type(obj)).out(obj, 1, self._walker)
            data = self._dumps(value)
        except ModelError as exc:
            raise EncodeError(self.name, wire_name, str(exc)) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(self.name, wire_name, f"{type(exc).__name__}: {exc}") from exc
        if len(data) > self.limits.max_size:
            raise MessageTooLarge(len(data), self.limits.max_size, part="body")
        return data

    def _check_size(self, data: bytes, wire_name: str | None) -> None:
        """Refuse a body over ``limits.max_size`` before any decoding."""
        if len(data) > self.limits.max_size:
            raise DecodeError(
                self.name,
                wire_name,
                f"{len(data)} bytes exceed the limit of {self.limits.max_size}",
            )

    def decode(self, data: bytes, cls: type[Any] | None = None) -> Any:
        """Decode ``data`` into an instance of ``cls`` (upgraded if registered) or a value."""
        wire_name = getattr(cls, "__sdk_wire_name__", None) if cls is not None else None
        self._check_size(data, wire_name)
        try:
            value, plain = self._loads(data)
        except self._library_errors as exc:
            raise DecodeError(self.name, wire_name, f"malformed body: {exc}") from None
        except (BodyError, ModelError) as exc:
            raise DecodeError(self.name, wire_name, str(exc)) from None
        except RecursionError:
            raise DecodeError(self.name, wire_name, "nesting too deep") from None
        try:
            if cls is None:
                return value if plain else self._walker.back(value)
            obj = schema_of(cls).back(value, 1, self._walker)
            return self.registry.upgraded(obj)
        except ModelError as exc:
            raise DecodeError(self.name, wire_name, str(exc)) from None
