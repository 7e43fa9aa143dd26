"""Dead-letter stores: where ``sdk.dlq.<to>.<tenant>`` messages are kept, listed and dropped.

Two ship: :class:`MemoryDeadLetters` (the in-process transport's, a bounded list per
tenant) and the JetStream one of the NATS transport (a stream ``SDK_DLQ_<tenant>``, in
:mod:`._jetstream`).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import final

from ._transport import DeadLetter

__all__ = ("MemoryDeadLetters",)


@final
class MemoryDeadLetters:
    """A tenant's dead letters in a bounded list (oldest dropped first), in this process.

    Args:
        publish: the transport's publish: a dead letter reaches subscribers of its subject
            too, and is kept on the way (:meth:`capture`), as a stream captures it.
    """

    def __init__(self, publish: Callable[..., Awaitable[None]]) -> None:
        self._publish = publish
        self._kept: dict[str, tuple[deque[DeadLetter], float]] = {}
        self._seq = itertools.count(1)

    @property
    def keeping(self) -> bool:
        """Whether any tenant's dead letters are kept."""
        return bool(self._kept)

    async def keep(
        self, tenant: str, *, max_messages: int, max_age: float, replicas: int = 1
    ) -> bool:
        """Keep the tenant's dead letters, at most ``max_messages``, for ``max_age`` seconds."""
        if tenant not in self._kept:
            self._kept[tenant] = (deque(maxlen=max_messages), max_age)
        return True

    async def put(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Publish one dead letter; it is kept on the way (its tenant: the last token)."""
        await self._publish(subject, data, headers=headers)

    def capture(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> None:
        """Keep what was published on a dead-letter subject of a kept tenant."""
        kept = self._kept.get(subject.rpartition(".")[2])  # the tenant: the last token
        if kept is None:
            return
        letters, max_age = kept
        now = time.time()
        while letters and letters[0].time < now - max_age:
            letters.popleft()
        letters.append(DeadLetter(next(self._seq), subject, dict(headers or {}), data, now))

    async def read(self, tenant: str, *, limit: int = 100) -> list[DeadLetter]:
        """The tenant's kept dead letters, oldest first."""
        kept = self._kept.get(tenant)
        return list(kept[0])[:limit] if kept else []

    async def drop(self, tenant: str, seq: int) -> None:
        """Remove one kept dead letter."""
        kept = self._kept.get(tenant)
        if kept:
            letters = kept[0]
            for letter in list(letters):
                if letter.seq == seq:
                    letters.remove(letter)
