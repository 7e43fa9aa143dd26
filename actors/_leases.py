"""Leases: which process holds which key of a keyed agent kind, decided through NATS.

Theory of operation:

* Each system that hosts keyed kinds is a *node*: it writes ``<node>`` into the tenant's
  bucket ``SDK_NODES_<tenant>``, whose keys are forgotten ``lease_time`` seconds after
  their last write, and renews it every quarter lease with a compare-and-set on its
  revision. A node that cannot renew in time stops handling (its lease is *valid* only
  until three quarters of the lease after the last renewal it sent); one that finds its
  key gone (it was paused or cut off past the lease, and others may have taken its keys)
  has *lost* its lease: its activations are dropped without saving, and it joins again
  under a new node id.
* A key's owner is recorded in ``SDK_LEASES_<tenant>`` under ``<kind>.<key>``: the owning
  node's id. It is taken with ``create`` (nobody holds it) or ``update(last=)`` (its holder
  is a node whose lease expired), so of processes racing for one key exactly one wins.
  The revision that wins is the activation's *fencing token*. Released with
  ``delete(last=token)`` when the activation ends.
* Whether another node is alive is read from ``SDK_NODES_<tenant>`` and believed for a
  quarter lease, and so is who holds a key held elsewhere: a busy key owned elsewhere costs
  its non-owners no read per message, and one given up there is taken within a quarter
  lease by the node it is placed on now.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, final

import anyio

from motadata_actors._errors import ActorsError, ConfigError, SequenceConflict
from motadata_actors.mailbox import KeepsValues, KeyValueStore
from motadata_actors.mailbox._kv import bucket_name
from motadata_actors.telemetry._logging import get_logger

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ("Leases",)

log = get_logger("actors")

_VALID: Final = 0.75  # of the lease after a renewal was sent: then stop handling
_RENEW: Final = 0.25  # of the lease between renewals
_OWNERS_MAX: Final = 200_000  # remembered owners of keys held elsewhere
# Seconds a release or the node's removal may take as the system stops: a server gone
# would hold the exit up for its whole timeout, and what is not removed expires anyway.
_AT_EXIT: Final = 1.0


def _new_node(client_id: str) -> str:
    return f"{client_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@final
class Leases:
    """The node lease of one system and the key leases of its keyed agents, in one tenant.

    Args:
        rt: the system's runtime (its clock, tenant and transport).
        lease_time: seconds a node's lease lasts without renewal (the whole tenant must
            use one value: the bucket keeps it).
    """

    def __init__(self, rt: Runtime, lease_time: float) -> None:
        if not lease_time > 0:
            raise ConfigError(f"lease_time must be > 0 seconds, not {lease_time!r}")
        self._rt = rt
        self.lease_time = lease_time
        self.node = _new_node(rt.client_id)
        """This system's node id (a new one after a lost lease)."""
        self._nodes: KeyValueStore | None = None
        self._records: KeyValueStore | None = None
        self._revision = 0
        self._valid_until = 0.0
        self._seen_alive: dict[str, float] = {}
        # Owners of keys held elsewhere (``<kind>.<key>`` -> node, when read).
        self._owners: dict[str, tuple[str, float]] = {}
        self.kinds: set[str] = set()
        """The keyed kinds this node hosts (written in its node record)."""
        self._hosts: dict[str, list[str]] = {}  # kind -> live nodes hosting it
        self._on_lost: list[Callable[[], Awaitable[None]]] = []
        self._started = False
        self._joined = False  # the node key of self.node is written
        self._renewal = asyncio.Lock()  # one compare-and-set on the node key at a time
        self._renewer = anyio.CancelScope()
        self.lost = 0
        """How many times this system lost its lease and joined again."""

    def on_lost(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` when the lease is lost (drop every activation, unsaved)."""
        self._on_lost.append(callback)

    async def start(self) -> None:
        """Join: open the buckets, write this node, start renewing (idempotent).

        Raises:
            ConfigError: no key-value buckets (a transport without them), or the tenant's
                node bucket keeps keys for another lease time.
        """
        if self._started:
            return
        await self.open()
        await self._join()
        self._started = True
        self._rt.run_soon(self._renewing)

    async def open(self) -> None:
        """Open the tenant's node and lease buckets (to read them; :meth:`start` joins).

        Raises:
            ConfigError: a transport without key-value buckets, or another lease time.
        """
        if self._records is not None:
            return
        transport = self._rt.transport
        if not isinstance(transport, KeepsValues):
            raise ConfigError("keyed agents need a transport with key-value buckets")
        tenant = self._rt.tenant
        self._nodes = await transport.key_value(bucket_name("nodes", tenant), ttl=self.lease_time)
        self._records = await transport.key_value(bucket_name("leases", tenant))

    async def owner(self, record: str) -> str | None:
        """The node holding ``record`` now, or None (nobody)."""
        await self.open()
        assert self._records is not None
        entry = await self._records.get(record)
        return None if entry is None else entry.value.decode(errors="replace")

    def _record(self) -> bytes:
        kinds = ",".join(sorted(self.kinds)) or "-"
        return f"{socket.gethostname()} {os.getpid()} {kinds}".encode()

    async def host(self, kind: str) -> None:
        """Say that this node hosts ``kind`` (its record and placement include it now)."""
        self.kinds.add(kind)
        await self.start()
        await self.renew()
        await self.refresh()

    async def refresh(self) -> None:
        """Read which live nodes host which kinds (for placement)."""
        nodes = self._nodes
        assert nodes is not None
        hosts: dict[str, list[str]] = {}
        try:
            for node in await nodes.keys():
                entry = await nodes.get(node)
                if entry is None:
                    continue
                fields = entry.value.decode(errors="replace").split(" ")
                for kind in fields[2].split(",") if len(fields) > 2 else ():
                    hosts.setdefault(kind, []).append(node)
        except ActorsError as exc:
            log.debug("keyed agents: node list not read: %r", exc)
            return
        for kind in self.kinds:  # this node hosts its kinds, whatever the list said
            if self.node not in hosts.setdefault(kind, []):
                hosts[kind].append(self.node)
        self._hosts = hosts

    def placed_here(self, kind: str, key: str) -> bool:
        """Whether this node is where ``key`` of ``kind`` should live (rendezvous hashing).

        Every node computes the same answer from the same list of live nodes hosting the
        kind, so a new key is taken by one node and keys spread over the nodes. A node
        missing from someone's list only makes two nodes try at once (the lease decides).
        """
        hosts = self._hosts.get(kind)
        if not hosts or len(hosts) == 1:
            return True
        best = max(hosts, key=lambda node: hashlib.blake2b(
            f"{node}|{key}".encode(), digest_size=8).digest())  # fmt: skip
        return best == self.node

    async def _join(self) -> None:
        assert self._nodes is not None
        sent = self._rt.clock.now()
        try:
            self._revision = await self._nodes.create(self.node, self._record())
        except SequenceConflict:
            # The node id is this process's own: an earlier create landed and its answer
            # was lost (the join failed then); it is ours to renew.
            entry = await self._nodes.get(self.node)
            if entry is None:
                raise
            self._revision = entry.revision
        self._joined = True
        self._valid_until = sent + self.lease_time * _VALID
        log.info("keyed agents: node %s joined tenant %s (lease %gs)",
                 self.node, self._rt.tenant, self.lease_time)  # fmt: skip

    async def _renewing(self) -> None:
        with self._renewer:
            while True:
                await self._rt.clock.sleep(self.lease_time * _RENEW)
                await self.renew()
                await self.refresh()

    async def renew(self) -> None:
        """Renew the node lease now; after a lost one, drop everything and join again."""
        assert self._nodes is not None
        async with self._renewal:
            if not self._joined:  # lost, and the join again failed: try it now
                await self._rejoin()
                return
            sent = self._rt.clock.now()
            try:
                self._revision = await self._nodes.update(self.node, self._record(), self._revision)
            except SequenceConflict:
                await self._lose()
            except ActorsError as exc:
                level = logging.WARNING if not self.valid() else logging.DEBUG
                log.log(level, "keyed agents: node %s could not renew: %r", self.node, exc)
            else:
                self._valid_until = sent + self.lease_time * _VALID

    async def _lose(self) -> None:
        self.lost += 1
        log.error(
            "keyed agents: node %s lost its lease (paused or cut off past %gs); its "
            "activations are dropped unsaved and it joins again", self.node, self.lease_time,
        )  # fmt: skip
        self._valid_until = 0.0
        for callback in self._on_lost:
            await callback()
        self.node = _new_node(self._rt.client_id)
        self._joined = False
        self._owners.clear()
        self._seen_alive.clear()
        await self._rejoin()

    async def _rejoin(self) -> None:
        """Join under the new node id; a server away now is tried again at the next renewal."""
        try:
            await self._join()
        except ActorsError as exc:
            log.warning("keyed agents: node %s could not join again yet: %r", self.node, exc)

    def valid(self) -> bool:
        """Whether this node may handle messages of the keys it holds now."""
        return self._rt.clock.now() < self._valid_until

    async def confirm(self) -> bool:
        """Whether the lease is valid, renewing first when it may have lapsed."""
        if not self.valid():
            await self.renew()
        return self.valid()

    async def alive(self, node: str) -> bool:
        """Whether ``node`` holds a node lease (believed for a quarter lease)."""
        if node == self.node:
            return True
        now = self._rt.clock.now()
        seen = self._seen_alive.get(node)
        if seen is not None and now - seen < self.lease_time * _RENEW:
            return True
        assert self._nodes is not None
        if await self._nodes.get(node) is None:
            self._seen_alive.pop(node, None)
            return False
        if len(self._seen_alive) > 10_000:
            self._seen_alive.clear()
        self._seen_alive[node] = now
        return True

    async def held_elsewhere(self, record: str) -> bool:
        """Whether a live node other than this one was seen holding ``record`` lately.

        Believed for a quarter lease (then :meth:`acquire` reads the record again): a key
        its holder gave up would otherwise stay with it for as long as that node lives,
        and the node it is placed on now would drop its messages.
        """
        known = self._owners.get(record)
        if known is None:
            return False
        owner, seen = known
        if owner == self.node or self._rt.clock.now() - seen >= self.lease_time * _RENEW:
            del self._owners[record]
            return False
        return await self.alive(owner)

    async def acquire(self, record: str) -> int | None:
        """Take ``record`` (``<kind>.<key>``) for this node: its fencing token, or None.

        None when a live node holds it (remembered for :meth:`held_elsewhere`) or another
        process won the race.
        """
        records = self._records
        assert records is not None
        node = self.node
        try:  # most keys are new, or were released: one round trip
            return await self._won(record, await records.create(record, node.encode()))
        except SequenceConflict:
            pass
        for _ in range(3):
            entry = await records.get(record)
            try:
                if entry is None:
                    return await self._won(record, await records.create(record, node.encode()))
                owner = entry.value.decode(errors="replace")
                if owner != node and await self.alive(owner):
                    self._remember(record, owner)
                    return None
                # ours from before (an activation that ended without releasing), or its
                # holder's lease expired: take it over, fenced by its revision
                return await self._won(
                    record, await records.update(record, node.encode(), entry.revision)
                )
            except SequenceConflict:
                continue  # somebody moved first: read who
        return None

    async def _won(self, record: str, token: int) -> int:
        self._owners.pop(record, None)
        return token

    def _remember(self, record: str, owner: str) -> None:
        if len(self._owners) >= _OWNERS_MAX:
            self._owners.clear()
        self._owners[record] = (owner, self._rt.clock.now())

    async def release(self, record: str, token: int, *, at_exit: bool = False) -> None:
        """Give ``record`` up (only if ``token`` still holds it).

        ``at_exit``: the system is stopping; a release the server does not answer within
        a second is left to expire with this node's lease.
        """
        assert self._records is not None
        # Taken over meanwhile, or the server is away: either way no longer ours.
        await _delete(self._records, record, token, _AT_EXIT if at_exit else math.inf)

    async def close(self) -> None:
        """Stop renewing and leave (the node key is removed; its records are released)."""
        if not self._started:
            return
        self._started = False
        self._renewer.cancel()
        assert self._nodes is not None
        await _delete(self._nodes, self.node, None, _AT_EXIT)  # else it expires with the lease


async def _delete(bucket: KeyValueStore, key: str, last: int | None, within: float) -> None:
    """Delete ``key`` (at revision ``last``), waiting ``within`` seconds at most; best effort."""
    with anyio.move_on_after(within) as waited:
        try:
            await bucket.delete(key, last)
        except ActorsError as exc:
            log.debug("keyed agents: %s not deleted from %s: %r", key, bucket.name, exc)
    if waited.cancelled_caught:
        log.debug("keyed agents: %s not deleted from %s: no answer", key, bucket.name)
