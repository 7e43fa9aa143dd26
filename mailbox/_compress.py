"""Compressed bodies: zstd, an optional dependency (``pip install 'motadata-actors[compress]'``).

A sender compresses a body above ``SDK_COMPRESS_ABOVE`` bytes and says so in
``Content-Encoding: zstd``; a receiver decompresses it with its output bounded by the
message size limit, so a small hostile frame cannot unfold into gigabytes (a
decompression bomb is refused as a :class:`~motadata_actors.DecodeError`). A receiver
without zstandard refuses such a message with a :class:`~motadata_actors.CodecError`
that says what to install.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

from motadata_actors._errors import CodecError, ConfigError, DecodeError

__all__ = ("ZSTD", "available", "compress", "decompress")

ZSTD: Final = "zstd"
_CHUNK: Final = 64 * 1024
_INSTALL: Final = "pip install 'motadata-actors[compress]'"


def _zstd() -> Any:
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        return None


def available() -> bool:
    """Whether zstandard is installed."""
    return _zstd() is not None


def require() -> None:
    """Raise a ConfigError naming the extra to install when zstandard is missing."""
    if _zstd() is None:
        raise ConfigError(f"SDK_COMPRESS_ABOVE needs zstandard: {_INSTALL}")


def compress(data: bytes) -> bytes:
    """``data`` as one zstd frame (level 3)."""
    zstd = _zstd()
    if zstd is None:
        raise ConfigError(f"compressing needs zstandard: {_INSTALL}")
    return bytes(zstd.ZstdCompressor(level=3).compress(data))


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """The body ``Content-Encoding: <encoding>`` carried, at most ``limit`` bytes of it.

    Raises:
        CodecError: an encoding other than ``zstd`` (or ``identity``), or zstandard is not
            installed here.
        DecodeError: not a zstd frame, or it unfolds past ``limit`` bytes.
    """
    name = encoding.strip().lower()
    if name == "identity":
        return data
    if name != ZSTD:
        raise CodecError(f"unsupported Content-Encoding {encoding!r} (only zstd)")
    zstd = _zstd()
    if zstd is None:
        raise CodecError(f"a zstd-compressed body arrived and zstandard is missing: {_INSTALL}")
    chunks: list[bytes] = []
    total = 0
    try:
        reader = zstd.ZstdDecompressor().stream_reader(data)
        while chunk := reader.read(_CHUNK if total + _CHUNK <= limit else limit + 1 - total):
            total += len(chunk)
            if total > limit:
                raise DecodeError(ZSTD, None, f"the body unfolds past {limit} bytes (refused)")
            chunks.append(chunk)
    except zstd.ZstdError as exc:
        raise DecodeError(ZSTD, None, f"not a zstd frame: {exc}") from None
    return b"".join(chunks)
