"""Codec plug-ins: codecs registered by name and ``Content-Type``, explicitly or by entry point.

Rules (theory of operation):

* The four built-in codecs are fixed. A plug-in takes neither their names nor their content
  types, nor another plug-in's: the first registration of a name or content type wins.
* A plug-in is a *factory*, ``(registry, limits) -> Codec``: usually the codec class itself,
  whose ``name`` and ``content_type`` class attributes say what it registers as. A factory
  without them (a function) is registered with ``name=`` and ``content_type=``. A factory is
  called once per :class:`~motadata_actors.codecs.Codecs` that uses it, on first use, so a
  plug-in whose library is missing costs nothing until it is chosen, and is then an error.
* Registration is process-wide, like ``@message`` into the default type registry: a codec is
  a format the process can speak, not state of one system.
* Entry points of the group ``motadata_actors.codecs`` (``avro =
  "motadata_actors.codecs._avro:AvroCodec"``) are read once, lazily: the first time a name or
  content type that no built-in has is asked for, or a codec is registered (so that a clash
  with an installed plug-in is found whatever the order). The entry point's name must be the
  codec's.
* A broken entry point (its import fails, it is not a codec factory, it clashes) is logged as
  a warning and skipped: one broken package must not stop a process that never uses it.
  Asking for its codec then raises a :class:`CodecError` naming the entry point, its
  distribution and the cause.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
from collections.abc import Callable
from typing import Final, TypeVar, final

import attrs

from motadata_actors._errors import CodecError

from ._codec import Codec
from ._formats import CborCodec, JsonCodec, MsgpackCodec
from ._limits import Limits
from ._protobuf import ProtobufCodec
from ._registry import TypeRegistry

__all__ = (
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "CodecFactory",
    "Plugin",
    "codec_names",
    "find_plugin",
    "plugin_for_content_type",
    "register_codec",
    "unavailable",
)

CodecFactory = Callable[[TypeRegistry, Limits], Codec]
"""Makes a codec from the type registry and the limits it shares with the other codecs."""

F = TypeVar("F", bound=CodecFactory)

ENTRY_POINT_GROUP: Final = "motadata_actors.codecs"
"""The entry-point group plug-in distributions declare their codecs in."""

BUILTINS: Final = {c.name: c for c in (JsonCodec, MsgpackCodec, CborCodec, ProtobufCodec)}
_BUILTIN_TYPES: Final = {c.content_type: c.name for c in BUILTINS.values()}
_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# A media type without parameters, lowercase (receivers compare the lowercased media type):
# RFC 6838 restricted names on both sides of the slash.
_TOKEN: Final = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE: Final = re.compile(f"{_TOKEN}/{_TOKEN}")
_MEMBERS: Final = (
    "name",
    "content_type",
    "registry",
    "limits",
    "encode",
    "encode_inline",
    "decode",
)
_log = logging.getLogger("motadata_actors.codecs")


@final
@attrs.frozen(slots=True)
class Plugin:
    """One registered plug-in codec.

    Attributes:
        name: the codec's name, as in ``CODEC_TYPE`` and ``codec=``.
        content_type: the ``Content-Type`` of the bodies it writes.
        factory: makes the codec.
        origin: where it was registered, for error messages.
    """

    name: str
    content_type: str
    factory: CodecFactory
    origin: str = attrs.field(eq=False)

    def build(self, registry: TypeRegistry, limits: Limits) -> Codec:
        """Make the codec, and check that it is one and says what it registered as.

        Raises:
            CodecError: the factory failed, or made something that is not this codec.
        """
        try:
            codec = self.factory(registry, limits)
        except CodecError:
            raise  # already says what is wrong (a missing library, say)
        except Exception as exc:
            raise CodecError(
                f"codec plug-in {self.name!r} ({self.origin}) failed to start: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        missing = [m for m in _MEMBERS if not hasattr(codec, m)]
        if missing:
            raise CodecError(
                f"codec plug-in {self.name!r} ({self.origin}) made {type(codec).__qualname__}, "
                f"which is not a codec: it lacks {', '.join(missing)}"
            )
        if (codec.name, codec.content_type) != (self.name, self.content_type):
            raise CodecError(
                f"codec plug-in {self.name!r} ({self.origin}) made a codec that calls itself "
                f"{codec.name!r} ({codec.content_type!r}), not {self.name!r} "
                f"({self.content_type!r})"
            )
        return codec


class _Plugins:
    """The process's plug-ins; entry points are read once, on first need."""

    def __init__(self) -> None:
        self.by_name: dict[str, Plugin] = {}
        self.by_content_type: dict[str, Plugin] = {}
        self.failed: dict[str, str] = {}  # entry point name -> why it was skipped
        self._discovered = False
        self._discovering = False  # in this thread, under the lock
        self._lock = threading.RLock()

    def add(self, plugin: Plugin) -> None:
        with self._lock:
            for key, table, builtins in (
                (plugin.name, self.by_name, BUILTINS),
                (plugin.content_type, self.by_content_type, _BUILTIN_TYPES),
            ):
                if key in builtins:
                    raise CodecError(
                        f"cannot register codec {plugin.name!r} ({plugin.origin}): "
                        f"{key!r} belongs to the built-in codec {_builtin_name(key)!r}"
                    )
                other = table.get(key)
                if other is not None and other != plugin:
                    raise CodecError(
                        f"cannot register codec {plugin.name!r} ({plugin.origin}): {key!r} is "
                        f"already taken by codec {other.name!r} ({other.origin})"
                    )
            self.by_name[plugin.name] = plugin
            self.by_content_type[plugin.content_type] = plugin

    def discover(self) -> None:
        if self._discovered:
            return
        with self._lock:  # reentrant: a plug-in's module may call register_codec
            if self._discovered or self._discovering:
                return
            self._discovering = True
            try:
                self._load_entry_points()
            finally:
                self._discovered = True
                self._discovering = False

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = _describe(ep)
            try:
                factory = ep.load()
                self.add(_plugin(factory, None, None, origin, entry_point=ep.name))
            except Exception as exc:
                reason = f"{origin} failed to load: {type(exc).__name__}: {exc}"
                self.failed.setdefault(ep.name, reason)
                _log.warning("codec plug-in skipped: %s", reason)


_PLUGINS = _Plugins()


def _builtin_name(key: str) -> str:
    return key if key in BUILTINS else _BUILTIN_TYPES[key]


def _describe(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    where = "an unknown distribution" if dist is None else f"{dist.name} {dist.version}"
    return f"entry point {ep.name} = {ep.value} of {where}"


def _plugin(
    factory: object,
    name: str | None,
    content_type: str | None,
    origin: str,
    *,
    entry_point: str | None = None,
) -> Plugin:
    """Check a factory and what it registers as; return the plug-in."""
    if not callable(factory):
        raise CodecError(
            f"{factory!r} ({origin}) is not a codec factory: register a codec class, or a "
            "callable (registry, limits) -> codec"
        )
    if isinstance(factory, type):
        lacking = [m for m in ("encode", "encode_inline", "decode") if not hasattr(factory, m)]
        if lacking:
            raise CodecError(
                f"{factory.__qualname__} ({origin}) is not a codec: it lacks {', '.join(lacking)}"
            )
    for what, given in (("name", name), ("content_type", content_type)):
        own = getattr(factory, what, None)
        if given is not None and isinstance(own, str) and own != given:
            raise CodecError(
                f"{what}={given!r} contradicts the codec's own {what} {own!r} ({origin})"
            )
    name = name if name is not None else getattr(factory, "name", None)
    if content_type is None:
        content_type = getattr(factory, "content_type", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CodecError(
            f"invalid codec name {name!r} ({origin}): lowercase letters, digits, '_' and '-', "
            "starting with a letter, at most 32 characters (pass name= for a factory "
            "without a name attribute)"
        )
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise CodecError(
            f"invalid content type {content_type!r} for codec {name!r} ({origin}): a lowercase "
            "media type without parameters, such as 'application/avro' (pass content_type= "
            "for a factory without a content_type attribute)"
        )
    if entry_point is not None and entry_point != name:
        raise CodecError(f"the entry point is named {entry_point!r}, the codec {name!r}")
    return Plugin(name, content_type, factory, origin)


def register_codec(factory: F, *, name: str | None = None, content_type: str | None = None) -> F:
    """Register a codec plug-in for this process; usable as a class decorator.

    Afterwards every :class:`~motadata_actors.codecs.Codecs` decodes bodies of its
    ``Content-Type``, ``CODEC_TYPE`` and ``codec=`` accept its name, and
    ``Codecs.named(name)`` returns it. Registering the same factory again is a no-op.

    Example::

        @register_codec
        class YamlCodec:
            name = "yaml"
            content_type = "application/yaml"

            def __init__(self, registry: TypeRegistry, limits: Limits) -> None: ...
            def encode(self, obj: object) -> bytes: ...
            def encode_inline(self, obj: object) -> bytes: ...
            def decode(self, data: bytes, cls: type | None = None) -> Any: ...

    Args:
        factory: a codec class, or a callable ``(registry, limits) -> Codec``.
        name: the codec's name; by default the factory's ``name`` attribute.
        content_type: the ``Content-Type`` it writes; by default the factory's
            ``content_type`` attribute.

    Returns:
        ``factory``, unchanged.

    Raises:
        CodecError: the factory is not a codec factory; the name or content type is
            malformed, or belongs to a built-in codec or another plug-in.
    """
    where = getattr(factory, "__qualname__", type(factory).__qualname__)
    _PLUGINS.discover()  # so that a clash with an installed plug-in is found now, always
    _PLUGINS.add(_plugin(factory, name, content_type, f"registered as {where}"))
    return factory


def codec_names() -> tuple[str, ...]:
    """Return every codec name this process accepts: the built-ins, then plug-ins, sorted."""
    _PLUGINS.discover()
    return (*BUILTINS, *sorted(_PLUGINS.by_name))


def find_plugin(name: str) -> Plugin:
    """Return the plug-in called ``name``.

    Raises:
        CodecError: no codec has that name (the message lists those that do), or its entry
            point failed to load (the message says why).
    """
    plugin = _PLUGINS.by_name.get(name)
    if plugin is None:
        _PLUGINS.discover()
        plugin = _PLUGINS.by_name.get(name)
    if plugin is None:
        failed = _PLUGINS.failed.get(name)
        if failed is not None:
            raise CodecError(f"codec plug-in {name!r} is unavailable: {failed}")
        raise CodecError(f"unknown codec {name!r}; available: {', '.join(codec_names())}")
    return plugin


def plugin_for_content_type(content_type: str) -> Plugin | None:
    """Return the plug-in for a (lowercased, parameterless) media type, or None."""
    plugin = _PLUGINS.by_content_type.get(content_type)
    if plugin is None:
        _PLUGINS.discover()
        plugin = _PLUGINS.by_content_type.get(content_type)
    return plugin


def unavailable() -> str:
    """Describe entry points that failed to load (empty when none did), for error messages."""
    if not _PLUGINS.failed:
        return ""
    return "; skipped plug-ins: " + "; ".join(_PLUGINS.failed.values())
