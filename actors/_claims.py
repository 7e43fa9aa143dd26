"""Claim checks: bodies too large for a message travel through the tenant's object store.

Rules (``SDK_CLAIM_ABOVE`` turns them on):

* A tell, ask or reply whose finished body (encoded, compressed, sealed) is larger than
  ``SDK_CLAIM_ABOVE`` bytes is kept as an object of ``SDK_OBJECTS_<tenant>`` under a fresh
  name; the message goes with an empty body and ``Sdk-Claim: <name> <size>``, its other
  headers unchanged. An ask's retries carry the same claim (one object per message).
* The receiver fetches the object before the handler runs and decodes it as if it had come
  in the message, so the handler sees the value; an actor whose class sets
  ``claimed_bodies = "reader"`` gets a :class:`BodyReader` instead, to read it in chunks.
* The object is deleted once the message is handled: at once for a core message, after
  the acknowledgement for a durable one (a redelivery still finds it), by the asker once
  it has read a reply. Whatever else happens (a crash, a dead letter, a lost reply) the
  store's time to live, ``SDK_CLAIM_TTL``, removes it; a dead letter can be replayed
  until then.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, final

import anyio

from motadata_actors._errors import ActorsError, AskTimeout, ConfigError, DecodeError
from motadata_actors.mailbox._envelope import Claimed, Sealed
from motadata_actors.mailbox._kv import bucket_name
from motadata_actors.mailbox._objects import KeepsObjects, ObjectStore
from motadata_actors.telemetry import get_logger

if TYPE_CHECKING:
    from motadata_actors.codecs import Codecs
    from motadata_actors.mailbox import Transport

__all__ = ("BodyReader", "Claims", "claims_off")

log = get_logger("actors")


def claims_off(claimed: Claimed) -> DecodeError:
    """The error for a claimed body reaching a process that has claims off."""
    return DecodeError(
        "claim",
        None,
        f"a body of {claimed.size} bytes kept in the object store arrived, and this process "
        "reads none: set SDK_CLAIM_ABOVE (and SDK_CLAIM_MAX_SIZE) here as on the sender",
    )


@final
class Claims:
    """The claim checks of one system: its tenant's object store and the threshold."""

    def __init__(
        self, transport: Transport, tenant: str, codecs: Codecs, *, above: int, ttl: float
    ) -> None:
        """Claim checks over ``transport`` for ``tenant``.

        Raises:
            ConfigError: the transport keeps no objects.
        """
        if not isinstance(transport, KeepsObjects):
            raise ConfigError(
                f"SDK_CLAIM_ABOVE needs a transport that keeps objects; {transport!r} keeps none"
            )
        self._transport = transport
        self._bucket = bucket_name("objects", tenant)
        self._codecs = codecs
        self.above = above
        """Bytes above which a body is checked in."""
        self._ttl = ttl
        self._store: ObjectStore | None = None

    async def store(self) -> ObjectStore:
        """The tenant's object store, opened (made) on first use."""
        if self._store is None:
            self._store = await self._transport.object_store(self._bucket, ttl=self._ttl)
        return self._store

    async def check_in(self, sealed: Sealed, *, within: float | None = None) -> float:
        """Keep ``sealed``'s body in the store when it is over the threshold.

        Returns the seconds it took (0 for a body kept in the message).

        Args:
            sealed: the message, its body replaced by the claim when kept.
            within: seconds it may take at most (an ask's time budget).

        Raises:
            ConfigError: JetStream is off, or the store's time to live differs.
            ConnectionLost: the connection broke (nothing was sent).
            AskTimeout: not stored ``within`` seconds (what was written expires with
                the store's time to live).
        """
        if len(sealed.data) <= self.above:
            return 0.0
        began, size = anyio.current_time(), len(sealed.data)
        name = uuid.uuid4().hex
        with anyio.move_on_after(math.inf if within is None else within) as waited:
            store = await self.store()
            await store.put(name, sealed.check_in(name))
        if waited.cancelled_caught:
            raise AskTimeout(
                f"a body of {size} bytes was not stored in the object store "
                f"within the ask's {within:g}s"
            )
        return anyio.current_time() - began

    async def value(self, claimed: Claimed) -> Any:
        """Fetch and decode a claimed body.

        Raises:
            DecodeError: the object is gone or corrupt, or does not decode.
            CodecError: an unknown content or message type.
        """
        store = await self.store()
        data = await store.get(claimed.name)
        return claimed.decode(data, self._codecs)

    def reader(self, claimed: Claimed) -> BodyReader:
        """A reader of a claimed body, for a handler that reads it in chunks."""
        return BodyReader(self, claimed)

    async def take(self, claimed: Claimed) -> Any:
        """Fetch, decode and delete a claimed body read once (a reply)."""
        try:
            return await self.value(claimed)
        finally:
            await self.release(claimed.name)

    async def release(self, name: str) -> None:
        """Delete a handled message's object; a failure only leaves it to its TTL."""
        try:
            store = await self.store()
            await store.delete(name)
        except ActorsError as exc:
            log.warning("claimed body %s not deleted (its TTL will): %r", name, exc)


@final
class BodyReader:
    """A body kept in the object store, read when and how the handler chooses.

    What an actor with ``claimed_bodies = "reader"`` receives instead of a large value.
    The bytes are the body as sent: encoded by its codec (``content_type``), compressed or
    sealed when the sender did so; :meth:`value` decodes them as any message.
    """

    __slots__ = ("_claimed", "_claims")

    def __init__(self, claims: Claims, claimed: Claimed) -> None:
        """A reader of ``claimed`` (made by the framework, never by users)."""
        self._claims = claims
        self._claimed = claimed

    def __repr__(self) -> str:
        return f"<BodyReader {self.size} bytes {self.content_type}>"

    @property
    def size(self) -> int:
        """The body's bytes."""
        return self._claimed.size

    @property
    def content_type(self) -> str:
        """The body's ``Content-Type``."""
        return self._claimed.content_type

    @property
    def plain(self) -> bool:
        """Whether the bytes are the codec's own (neither compressed nor sealed)."""
        return self._claimed.plain

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes, chunk by chunk (128 KiB each on NATS), never all at once.

        Raises:
            DecodeError: the object is gone, or its bytes do not match its digest.
        """
        store = await self._claims.store()
        async for chunk in store.chunks(self._claimed.name):
            yield chunk

    async def value(self) -> Any:
        """The decoded body, as the handler would have received it.

        Raises:
            DecodeError, CodecError: as for any received message.
        """
        return await self._claims.value(self._claimed)
