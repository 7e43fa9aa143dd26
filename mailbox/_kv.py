"""Key-value buckets with revisions: what keyed agents' leases and state are kept in.

A bucket maps keys to values; every write gets a new *revision*, and ``create``,
``update(last=)`` and ``delete(last=)`` are compare-and-set on it, so two processes racing
for one key never both win (:class:`~motadata_actors.SequenceConflict` for the loser). A
bucket made with a ``ttl`` forgets a key that was not written for that long.

Two implementations: JetStream key-value buckets (``KV_<bucket>`` streams, through
:mod:`._natspy`) on NATS, and :class:`MemoryKeyValue` in process, with the same semantics.
Bucket names carry their tenant (``SDK_LEASES_<tenant>``, ``SDK_STATE_<tenant>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, final, runtime_checkable

import attrs

from motadata_actors._errors import ConfigError, MessageTooLarge, SequenceConflict

__all__ = ("Entry", "KeepsValues", "KeyValueStore", "MemoryKeyValue", "bucket_name")


def bucket_name(purpose: str, tenant: str) -> str:
    """``SDK_<PURPOSE>_<tenant>``: a tenant's bucket (the tenant in the name, as streams)."""
    return f"SDK_{purpose.upper()}_{tenant}"


@final
@attrs.frozen(slots=True)
class Entry:
    """A key's value and the revision that wrote it."""

    value: bytes
    revision: int


class KeyValueStore(Protocol):
    """One key-value bucket (keys: ``[-/_=.a-zA-Z0-9]``, dots separating levels)."""

    @property
    def name(self) -> str:
        """The bucket's name."""
        ...

    async def get(self, key: str) -> Entry | None:
        """The key's latest value, or None when it has none (never written, deleted, expired)."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` only if it has no value; its revision.

        Raises:
            SequenceConflict: it has one.
        """
        ...

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``key`` only if ``last`` is its latest revision; the new revision.

        Raises:
            SequenceConflict: it moved on (or is gone).
        """
        ...

    async def delete(self, key: str, last: int | None = None) -> None:
        """Remove ``key``'s value (only if ``last`` is its latest revision, when given).

        Raises:
            SequenceConflict: ``last`` is not its latest revision.
        """
        ...

    async def keys(self) -> list[str]:
        """The keys with a value now."""
        ...


@runtime_checkable
class KeepsValues(Protocol):
    """A transport that keeps key-value buckets (JetStream on NATS; memory in process)."""

    async def key_value(
        self, bucket: str, *, ttl: float | None = None, max_value_size: int = -1
    ) -> KeyValueStore:
        """The bucket ``bucket``, made when missing.

        Args:
            bucket: its name (``SDK_<PURPOSE>_<tenant>``).
            ttl: seconds after its last write that a key is forgotten (None: never).
            max_value_size: the largest value in bytes (-1: the server's limit).

        Raises:
            ConfigError: the bucket exists with another ``ttl``, or JetStream is off.
        """
        ...


def _conflict(key: str, what: str) -> SequenceConflict:
    return SequenceConflict(f"key {key!r}: {what} (another writer went first)")


@final
class MemoryKeyValue:
    """A key-value bucket in process memory: the in-process transport's.

    Revisions count per bucket from 1, as a JetStream bucket's stream sequence does.

    Args:
        name: the bucket's name.
        ttl: seconds after its last write that a key is forgotten (None: never).
        max_value_size: the largest value (-1: no limit).
        now: the clock that ages keys (monotonic seconds).
    """

    def __init__(
        self,
        name: str,
        *,
        ttl: float | None = None,
        max_value_size: int = -1,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self.ttl = ttl
        self._max = max_value_size
        self._now = now
        self._entries: dict[str, tuple[bytes, int, float]] = {}  # value, revision, written
        self._revision = 0

    @property
    def name(self) -> str:
        """The bucket's name."""
        return self._name

    def _live(self, key: str) -> tuple[bytes, int, float] | None:
        found = self._entries.get(key)
        if found is not None and self.ttl is not None and self._now() - found[2] >= self.ttl:
            del self._entries[key]
            return None
        return found

    def _write(self, key: str, value: bytes) -> int:
        if not isinstance(value, bytes):
            raise ConfigError(f"a value must be bytes, not {type(value).__name__}")
        if 0 <= self._max < len(value):
            raise MessageTooLarge(len(value), self._max, part=f"value of {key!r}")
        self._revision += 1
        self._entries[key] = (value, self._revision, self._now())
        return self._revision

    async def get(self, key: str) -> Entry | None:
        """The key's latest value, or None."""
        found = self._live(key)
        return None if found is None else Entry(found[0], found[1])

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` only if it has no value; its revision."""
        if self._live(key) is not None:
            raise _conflict(key, "it exists")
        return self._write(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``key`` only if ``last`` is its latest revision."""
        found = self._live(key)
        if found is None or found[1] != last:
            raise _conflict(key, f"revision {last} is not its latest")
        return self._write(key, value)

    async def delete(self, key: str, last: int | None = None) -> None:
        """Remove ``key``'s value (only at revision ``last``, when given)."""
        found = self._live(key)
        if last is not None and (found is None or found[1] != last):
            raise _conflict(key, f"revision {last} is not its latest")
        self._entries.pop(key, None)

    async def keys(self) -> list[str]:
        """The keys with a value now."""
        return [key for key in list(self._entries) if self._live(key) is not None]
