"""Codecs: the set of codecs one system uses, chosen by name and by ``Content-Type``."""

from __future__ import annotations

from typing import Final, final

from motadata_actors._errors import CodecError

from ._codec import Codec
from ._formats import CborCodec, JsonCodec, MsgpackCodec
from ._limits import Limits
from ._protobuf import ProtobufCodec
from ._registry import TypeRegistry, default_registry
from ._sealing import KeyRing

__all__ = ("CODEC_NAMES", "Codecs")

_CLASSES: Final = {c.name: c for c in (JsonCodec, MsgpackCodec, CborCodec, ProtobufCodec)}
CODEC_NAMES: Final = tuple(_CLASSES)
"""The names ``CODEC_TYPE`` accepts."""


@final
class Codecs:
    """Every codec, sharing one registry and one set of limits; one of them the default.

    A receiver decodes by the message's ``Content-Type`` whatever its own default is,
    so a fleet can move from one codec to another one service at a time.

    Args:
        default: the name of the codec for outgoing messages.
        registry: the typed-message registry.
        limits: bounds for every codec.

    Raises:
        CodecError: ``default`` names no codec.
    """

    def __init__(
        self,
        default: str = "json",
        *,
        registry: TypeRegistry | None = None,
        limits: Limits | None = None,
    ) -> None:
        if default not in _CLASSES:
            raise CodecError(f"unknown codec {default!r}; available: {', '.join(CODEC_NAMES)}")
        self.registry = registry if registry is not None else default_registry()
        self.limits = limits if limits is not None else Limits()
        self._by_name: dict[str, Codec] = {}
        self._by_content_type: dict[str, Codec] = {}
        for name, cls in _CLASSES.items():
            codec: Codec = cls(self.registry, self.limits)
            self._by_name[name] = codec
            self._by_content_type[codec.content_type] = codec
        self.default: Codec = self._by_name[default]
        self.keys: KeyRing | None = None
        """The tenant's key ring when bodies are sealed (set by the system), else None."""

    def named(self, name: str) -> Codec:
        """Return the codec called ``name``.

        Raises:
            CodecError: no codec has that name.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise CodecError(
                f"unknown codec {name!r}; available: {', '.join(CODEC_NAMES)}"
            ) from None

    def for_content_type(self, content_type: str | None) -> Codec:
        """Return the codec for a ``Content-Type`` header; absent (a foreign client) means JSON.

        Raises:
            CodecError: the content type is not one this process can decode.
        """
        if content_type is None:
            return self._by_name["json"]
        codec = self._by_content_type.get(content_type)
        if codec is None:
            # "application/json; charset=utf-8", "Application/JSON": parameters and case
            # do not change the format (RFC 9110).
            codec = self._by_content_type.get(content_type.split(";", 1)[0].strip().lower())
            if codec is None:
                raise CodecError(f"unsupported Content-Type {content_type!r}")
        return codec
