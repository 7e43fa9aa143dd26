"""Persistent agent state: loaded when an instance starts, saved after each message.

An actor declares state by giving its class a ``state`` attribute: the initial value (a
``@message`` instance or any value of the value model). Each instance starts with a copy
of it, or with what was saved before, and the dispatcher saves it after every handled
message that changed it, before the reply is sent (so an acknowledged ask's effect is
kept). Saves are fenced: each is a compare-and-set on the revision this instance loaded
or last saved, so an instance that is no longer the owner (its process lost its lease,
or another replica wrote) gets :class:`~motadata_actors.StateConflict` and never
overwrites newer state.

State lives in the tenant's key-value bucket ``SDK_STATE_<tenant>``, under the agent's
name (``writer``) or kind and key (``chat.session-42``), framed by
:func:`~motadata_actors.mailbox._envelope.seal_state` so it has the size limit, codecs
and schema upgrades of messages.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, final

from motadata_actors._errors import ConfigError, SequenceConflict, StateConflict
from motadata_actors.mailbox import KeepsValues, KeyValueStore
from motadata_actors.mailbox._envelope import open_state, seal_state
from motadata_actors.mailbox._kv import bucket_name

if TYPE_CHECKING:
    from ._actor import Actor
    from ._runtime import Runtime

__all__ = ("StateSlot", "declares_state", "state_store")

_NONE: Final = object()


def declares_state(cls: type[Actor]) -> bool:
    """Whether instances of ``cls`` keep persistent state (the class has ``state``)."""
    return getattr(cls, "state", _NONE) is not _NONE


async def state_store(rt: Runtime, what: str) -> KeyValueStore:
    """The tenant's state bucket, or a ConfigError saying why ``what`` cannot have one."""
    transport = rt.transport
    if not isinstance(transport, KeepsValues):
        raise ConfigError(f"{what} keeps state, which needs a transport with key-value buckets")
    return await transport.key_value(bucket_name("state", rt.tenant), max_value_size=rt.max_size)


@final
class StateSlot:
    """Where one instance's state is kept, and the revision it last read or wrote."""

    __slots__ = ("_agent", "_codecs", "_saved", "_store", "_tel", "key", "revision")

    def __init__(self, store: KeyValueStore, key: str, rt: Runtime) -> None:
        self._store = store
        self._codecs = rt.codecs
        self._tel = rt.telemetry
        self._agent = key.split(".", 1)[0]  # the name, or the kind (bounded cardinality)
        self.key = key
        """The key in ``SDK_STATE_<tenant>``."""
        self.revision = 0
        """The revision this instance loaded or last saved (0: none kept yet)."""
        self._saved = b""

    @property
    def size(self) -> int:
        """Bytes of the state as last loaded or saved."""
        return len(self._saved)

    async def load(self, actor: Actor) -> None:
        """Give ``actor`` its kept state, or a fresh copy of its class's initial one.

        Raises:
            CodecError: the kept state does not decode (an unknown type, say).
        """
        started = time.perf_counter()
        entry = await self._store.get(self.key)
        if self._tel is not None:
            size = len(entry.value) if entry is not None else 0
            self._tel.state_done("load", self._agent, size, time.perf_counter() - started)
        if entry is None:
            initial = type(actor).state  # type: ignore[attr-defined]
            actor.state = open_state(seal_state(initial, self._codecs.default), self._codecs)  # type: ignore[attr-defined]
            self.revision = 0
            self._saved = b""
            return
        actor.state = open_state(entry.value, self._codecs)  # type: ignore[attr-defined]
        self.revision = entry.revision
        self._saved = entry.value

    async def save(self, actor: Actor) -> bool:
        """Save ``actor.state`` if it changed since loaded or last saved; whether it did.

        Raises:
            StateConflict: another instance wrote it since (this one is stale).
            EncodeError, MessageTooLarge: the state cannot be encoded, or is too large.
            ConnectionLost: the bucket did not answer.
        """
        data = seal_state(actor.state, self._codecs.default)  # type: ignore[attr-defined]
        if data == self._saved:
            return False
        started = time.perf_counter()
        try:
            if self.revision:
                self.revision = await self._store.update(self.key, data, self.revision)
            else:
                self.revision = await self._store.create(self.key, data)
        except SequenceConflict as exc:
            if self._tel is not None:
                self._tel.state_done("save", self._agent, len(data), 0.0, conflict=True)
            raise StateConflict(
                f"state of {self.key!r} not saved: another instance wrote it since this one "
                f"loaded it (revision {self.revision}); this instance is stale"
            ) from exc
        self._saved = data
        if self._tel is not None:
            self._tel.state_done("save", self._agent, len(data), time.perf_counter() - started)
        return True
