"""Codecs: the set of codecs one system uses, chosen by name and by ``Content-Type``."""

from __future__ import annotations

from typing import Final, final

from motadata_actors._errors import CodecError

from ._codec import Codec
from ._limits import Limits
from ._plugins import BUILTINS, Plugin, find_plugin, plugin_for_content_type, unavailable
from ._registry import TypeRegistry, default_registry
from ._sealing import KeyRing

__all__ = ("CODEC_NAMES", "Codecs")

CODEC_NAMES: Final = tuple(BUILTINS)
"""The names of the built-in codecs; ``codec_names()`` adds the plug-ins'."""


@final
class Codecs:
    """Every codec, sharing one registry and one set of limits; one of them the default.

    A receiver decodes by the message's ``Content-Type`` whatever its own default is,
    so a fleet can move from one codec to another one service at a time. Plug-in codecs
    (:func:`~motadata_actors.codecs.register_codec`, entry points) are made on first use.

    Args:
        default: the name of the codec for outgoing messages, built-in or plug-in.
        registry: the typed-message registry.
        limits: bounds for every codec.

    Raises:
        CodecError: ``default`` names no codec, or its plug-in cannot start (a missing
            optional dependency: the message says what to install).
    """

    def __init__(
        self,
        default: str = "json",
        *,
        registry: TypeRegistry | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.limits = limits if limits is not None else Limits()
        self._by_name: dict[str, Codec] = {}
        self._by_content_type: dict[str, Codec] = {}
        for name, cls in BUILTINS.items():
            codec: Codec = cls(self.registry, self.limits)
            self._by_name[name] = codec
            self._by_content_type[codec.content_type] = codec
        self.default: Codec = self.named(default)
        self.keys: KeyRing | None = None
        """The tenant's key ring when bodies are sealed (set by the system), else None."""

    def named(self, name: str) -> Codec:
        """Return the codec called ``name``.

        Raises:
            CodecError: no codec has that name (the message lists those that do), or its
                plug-in cannot start.
        """
        codec = self._by_name.get(name)
        if codec is None:
            codec = self._start(find_plugin(name))
        return codec

    def _start(self, plugin: Plugin) -> Codec:
        """Make a plug-in's codec for this set (once: later lookups find it)."""
        codec = plugin.build(self.registry, self.limits)
        self._by_content_type[plugin.content_type] = codec
        self._by_name[plugin.name] = codec
        return codec

    def for_content_type(self, content_type: str | None) -> Codec:
        """Return the codec for a ``Content-Type`` header; absent (a foreign client) means JSON.

        Raises:
            CodecError: the content type is not one this process can decode, or its
                plug-in cannot start.
        """
        if content_type is None:
            return self._by_name["json"]
        codec = self._by_content_type.get(content_type)
        if codec is None:
            # "application/json; charset=utf-8", "Application/JSON": parameters and case
            # do not change the format (RFC 9110).
            media_type = content_type.split(";", 1)[0].strip().lower()
            codec = self._by_content_type.get(media_type)
            if codec is None:
                plugin = plugin_for_content_type(media_type)
                if plugin is None:
                    raise CodecError(f"unsupported Content-Type {content_type!r}{unavailable()}")
                codec = self._by_name.get(plugin.name)
                if codec is None:
                    codec = self._start(plugin)
        return codec
