"""Kept logs: a tenant's events and workflow steps appended to and read from JetStream.

The streams (``SDK_EVENTS_<tenant>``, ``SDK_WORKFLOWS_<tenant>``, :mod:`._js_admin`) are
made on first use and made again, once, when a publish finds them deleted. Reading walks
a subject's messages by stream sequence (JetStream's direct ``next_by_subj`` lookups);
reading them as they come is a feed (:mod:`._js_pull`).
"""

from __future__ import annotations

from typing import final

from motadata_actors._errors import ActorsError, ConnectionLost, NoResponders

from ._js_admin import StreamAdmin
from ._js_names import log_stream
from ._js_publish import DurablePublisher
from ._js_values import NotFound
from ._natspy import JetStream
from ._transport import DurableConfig, LogKind, StoredMessage

__all__ = ("KeptLogs",)


@final
class KeptLogs:
    """Appends to and reads a connection's tenant events and workflows."""

    def __init__(self, js: JetStream, admin: StreamAdmin, publisher: DurablePublisher) -> None:
        self._js = js
        self._admin = admin
        self._publisher = publisher

    async def append(
        self,
        kind: LogKind,
        tenant: str,
        config: DurableConfig,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str],
        expect_last_seq: int | None = None,
    ) -> int:
        """Store a message in the tenant's ``kind`` stream (made on first use); its sequence.

        Raises:
            SequenceConflict: ``expect_last_seq`` was given and is not the last one.
            ConfigError: the server has no JetStream, or refused the stream.
            NoResponders: the stream, made again, still does not capture ``subject``.
            ConnectionLost: no acknowledgement (the message may or may not be stored).
        """
        publish = self._publisher.publish
        await self._admin.ensure_log(kind, tenant, config)
        try:
            return await publish(subject, data, headers=headers, expect_last_seq=expect_last_seq)
        except NoResponders:  # the stream was deleted under us: make it again, once
            self._admin.forget_log(kind, tenant)
            await self._admin.ensure_log(kind, tenant, config)
        try:
            return await publish(subject, data, headers=headers, expect_last_seq=expect_last_seq)
        except NoResponders:
            raise NoResponders(
                f"stream {log_stream(kind, tenant)} does not capture {subject!r} (deleted "
                "again, or changed by hand?)"
            ) from None

    async def read(
        self, kind: LogKind, tenant: str, subject: str, *, after: int = 0, limit: int = 10_000
    ) -> list[StoredMessage]:
        """The kept messages on ``subject`` with a stream sequence above ``after``, in order.

        Raises:
            ConnectionLost: the server cannot be reached.
        """
        stream = log_stream(kind, tenant)
        out: list[StoredMessage] = []
        seq = after + 1
        try:
            while len(out) < limit:
                try:
                    message = await self._js.get_msg(stream, seq, subject=subject, next=True)
                except NotFound:
                    break
                out.append(message)
                seq = message.seq + 1
        except ActorsError as exc:
            if isinstance(exc, ConnectionLost):
                raise
            raise ConnectionLost(f"cannot read {subject!r} from {stream}: {exc}") from exc
        return out
