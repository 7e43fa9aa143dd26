"""Codecs: the ``Codec`` protocol, the shipped codecs, and the typed-message registry.

A leaf package: it knows nothing of NATS or actors.
"""

from motadata_actors._errors import CodecError

from ._json import Codec, JsonCodec
from ._registry import TypeRegistry, default_registry, message, wire_name_of

__all__ = (
    "Codec",
    "CodecError",
    "JsonCodec",
    "TypeRegistry",
    "codec_for_content_type",
    "codec_named",
    "default_registry",
    "message",
    "wire_name_of",
)

_JSON = JsonCodec()
_BY_NAME: dict[str, Codec] = {_JSON.name: _JSON}
_BY_CONTENT_TYPE: dict[str, Codec] = {_JSON.content_type: _JSON}


def codec_named(name: str) -> Codec:
    """Return the codec called ``name`` (as in ``CODEC_TYPE``).

    Raises:
        CodecError: no codec of that name ships in this version.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise CodecError(f"unknown codec {name!r}; available: {known}") from None


def codec_for_content_type(content_type: str | None) -> Codec:
    """Return the codec for a ``Content-Type`` header; absent means JSON.

    Raises:
        CodecError: the content type is not one this process can decode.
    """
    if content_type is None:
        return _JSON
    try:
        return _BY_CONTENT_TYPE[content_type]
    except KeyError:
        raise CodecError(f"unsupported Content-Type {content_type!r}") from None
