"""The tenant's shared schema registry: which message types exist, and who knows them.

Every system publishes, in the background once it has started, the JSON Schema of each
typed message class its registry holds to the tenant's key-value bucket
``SDK_SCHEMAS_<tenant>`` (key: the wire name; value: the schema, the process that
published it last, when). A receiver that refuses a message of a type it does not know
looks the wire name up there and says which process knows it. Best effort: without
JetStream there is no bucket, and nothing else changes.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any, Final

import orjson

from motadata_actors._errors import ActorsError, SequenceConflict
from motadata_actors.codecs import json_schema
from motadata_actors.mailbox._kv import KeepsValues, KeyValueStore, bucket_name
from motadata_actors.telemetry import get_logger

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ("SchemaRegistry", "read_registry")

log = get_logger("actors")
PROCESS: Final = f"{socket.gethostname()}:{os.getpid()}"


class SchemaRegistry:
    """The tenant's registry bucket, as one system uses it."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._bucket: KeyValueStore | None = None

    async def _store(self) -> KeyValueStore | None:
        transport = self._rt.transport
        if self._bucket is None and isinstance(transport, KeepsValues):
            self._bucket = await transport.key_value(bucket_name("schemas", self._rt.tenant))
        return self._bucket

    async def publish(self) -> int:
        """Publish the schema of every registered type; how many were written."""
        try:
            store = await self._store()
        except ActorsError as exc:  # no JetStream, say: nothing to share with
            log.debug("no schema registry for tenant %r: %r", self._rt.tenant, exc)
            return 0
        if store is None:
            return 0
        registry = self._rt.codecs.registry
        written = 0
        for wire_name in registry.wire_names():
            value = orjson.dumps(
                {
                    "schema": json_schema(registry.lookup(wire_name)),
                    "process": PROCESS,
                    "published": time.time(),
                }
            )
            try:
                entry = await store.get(wire_name)
                if entry is None:
                    await store.create(wire_name, value)
                else:
                    await store.update(wire_name, value, entry.revision)
                written += 1
            except SequenceConflict:  # another process wrote it just now: as good
                continue
            except ActorsError as exc:
                log.debug("schema of %s not published: %r", wire_name, exc)
        return written

    async def known(self, wire_name: str) -> dict[str, Any] | None:
        """What the registry knows of ``wire_name`` (schema, process, published), or None."""
        try:
            store = await self._store()
            entry = await store.get(wire_name) if store is not None else None
        except ActorsError:
            return None
        if entry is None:
            return None
        found: dict[str, Any] = orjson.loads(entry.value)
        return found


async def read_registry(transport: object, tenant: str) -> dict[str, dict[str, Any]]:
    """Every entry of ``tenant``'s registry, by wire name: ``schema``, ``process``, ``published``.

    Empty without JetStream (no bucket); an entry that is not ours is left out.
    """
    if not isinstance(transport, KeepsValues):
        return {}
    found: dict[str, dict[str, Any]] = {}
    try:
        store = await transport.key_value(bucket_name("schemas", tenant))
        for key in await store.keys():
            entry = await store.get(key)
            if entry is None:
                continue
            try:
                value = orjson.loads(entry.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and isinstance(value.get("schema"), dict):
                found[key] = value
    except ActorsError as exc:  # no JetStream: no registry
        log.debug("no schema registry for tenant %r: %r", tenant, exc)
    return found
