"""Object stores: where bodies too large for one message wait for their receiver.

A bucket maps names to immutable byte objects of any size, kept at most ``ttl`` seconds
after they were written, so nothing outlives a crashed sender or receiver by longer.
Two implementations with the same semantics: JetStream object stores (``OBJ_<bucket>``
streams, chunked, checked by SHA-256, through :mod:`._natspy`) on NATS, and
:class:`MemoryObjectStore` in process. Bucket names carry their tenant
(``SDK_OBJECTS_<tenant>``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol, final, runtime_checkable

from motadata_actors._errors import DecodeError

__all__ = ("KeepsObjects", "MemoryObjectStore", "ObjectStore", "gone")


def gone(bucket: str, name: str) -> DecodeError:
    """The error for an object that is not (or no longer) in its bucket."""
    return DecodeError(
        "claim",
        None,
        f"body {name!r} is not in object store {bucket}: it was handled already, or its "
        "time to live (SDK_CLAIM_TTL) passed before it was read",
    )


class ObjectStore(Protocol):
    """One object bucket."""

    @property
    def name(self) -> str:
        """The bucket's name."""
        ...

    async def put(self, name: str, data: bytes) -> None:
        """Keep ``data`` under ``name``."""
        ...

    async def get(self, name: str) -> bytes | bytearray:
        """The whole object, in one buffer.

        Raises:
            DecodeError: it is not there (:func:`gone`), or its bytes do not match its digest.
        """
        ...

    def chunks(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes chunk by chunk, in order (raises like :meth:`get`)."""
        ...

    async def delete(self, name: str) -> None:
        """Remove the object, leaving nothing of it behind; no error when it is gone."""
        ...

    async def names(self) -> list[str]:
        """The names of the objects kept now."""
        ...


@runtime_checkable
class KeepsObjects(Protocol):
    """A transport that keeps object buckets (JetStream on NATS; memory in process)."""

    async def object_store(self, bucket: str, *, ttl: float) -> ObjectStore:
        """The bucket ``bucket``, made when missing, keeping objects ``ttl`` seconds at most.

        Raises:
            ConfigError: JetStream is off, or the bucket exists with another ``ttl``.
        """
        ...


@final
class MemoryObjectStore:
    """An object bucket in this process's memory, with the JetStream bucket's semantics."""

    _CHUNK = 128 * 1024

    def __init__(self, name: str, *, ttl: float) -> None:
        self._name = name
        self._ttl = ttl
        self._objects: dict[str, tuple[bytes, float]] = {}

    @property
    def name(self) -> str:
        """The bucket's name."""
        return self._name

    def _expire(self) -> None:
        now = time.monotonic()
        for name in [n for n, (_, until) in self._objects.items() if until <= now]:
            del self._objects[name]

    async def put(self, name: str, data: bytes) -> None:
        """Keep ``data`` under ``name`` (for ``ttl`` seconds at most)."""
        self._expire()
        self._objects[name] = (bytes(data), time.monotonic() + self._ttl)

    async def get(self, name: str) -> bytes:
        """The whole object (the very bytes kept: they are immutable)."""
        self._expire()
        found = self._objects.get(name)
        if found is None:
            raise gone(self._name, name)
        return found[0]

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks of 128 KiB."""
        data = await self.get(name)
        view = memoryview(data)
        for start in range(0, len(data), self._CHUNK):
            yield bytes(view[start : start + self._CHUNK])

    async def delete(self, name: str) -> None:
        """Forget the object."""
        self._objects.pop(name, None)

    async def names(self) -> list[str]:
        """The names of the objects kept now."""
        self._expire()
        return sorted(self._objects)
