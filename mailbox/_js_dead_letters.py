"""The JetStream dead-letter store: a tenant's dead letters kept in ``SDK_DLQ_<tenant>``.

The stream captures ``sdk.dlq.*.<tenant>``, so dead letters from any client are kept even
when nobody listens. While connected, :meth:`JetStreamDeadLetters.put` waits for the
stream's acknowledgement (a letter is listed as soon as dead-lettering returned); while
reconnecting it publishes plainly (buffered, stored once it reaches the server). The
in-process transport's store is :class:`~motadata_actors.mailbox._dead_letters.MemoryDeadLetters`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import final

import attrs

from motadata_actors._errors import ConfigError, ConnectionLost

from ._js_names import dead_letter_stream, dead_letter_subjects
from ._js_values import NoAnswer, NoJetStream, NoStream, NotFound, Refused, StreamSpec
from ._natspy import JetStream
from ._transport import DeadLetter

__all__ = ("JetStreamDeadLetters",)


@final
class JetStreamDeadLetters:
    """A tenant's dead letters in the stream ``SDK_DLQ_<tenant>`` over ``sdk.dlq.*.<tenant>``.

    A :class:`~motadata_actors.mailbox.DeadLetterStore`.

    Args:
        js: JetStream on the connection.
        where: the server, for error messages.
    """

    def __init__(self, js: JetStream, where: Callable[[], str]) -> None:
        self._js = js
        self._where = where
        self._kept = False

    async def keep(
        self, tenant: str, *, max_messages: int, max_age: float, replicas: int = 1
    ) -> bool:
        """Create (or bring up to date) the tenant's dead-letter stream.

        ``replicas`` applies when the stream is made; an existing stream keeps its own.
        Returns False when the server has no JetStream.

        Raises:
            ConfigError: JetStream refused the stream (more replicas than servers, say).
            ConnectionLost: the server did not answer, three times (it is gone, say).
        """
        name = dead_letter_stream(tenant)
        spec = StreamSpec(
            name, (dead_letter_subjects(tenant),),
            description=f"motadata-actors dead letters of tenant {tenant}",
            max_msgs=max_messages, max_age=max_age, replicas=replicas,
        )  # fmt: skip
        try:
            for attempt in range(5):
                try:
                    made = await self._make(spec)
                except NoAnswer:
                    # Asked again twice (a cluster busy electing its leaders, say); then a
                    # ConnectionLost: no answer is no sign of a server without JetStream,
                    # and the system would keep no dead letter for its whole life.
                    if attempt >= 2:
                        raise
                    continue
                if made:
                    break
                if attempt == 4:
                    raise NotFound(f"cannot read stream {name}: not found")
                await asyncio.sleep(0.2 * (attempt + 1))
        except NoJetStream:
            return False
        except (Refused, NotFound) as exc:
            why = exc.description if isinstance(exc, Refused) else "made, and then not there"
            raise ConfigError(
                f"JetStream refused the dead-letter stream {name}: {why} (check "
                "SDK_DURABLE_REPLICAS against the cluster's size, and SDK_DLQ_MAX_MESSAGES / "
                "SDK_DLQ_MAX_AGE)"
            ) from None
        self._kept = True
        return True

    async def _make(self, spec: StreamSpec) -> bool:
        """Make the stream, or bring one with other limits up to ours.

        False: neither made nor there (a cluster still settling its leaders: ask again).
        """
        try:
            await self._js.add_stream(spec)
            return True
        except Refused as exc:
            if not exc.bad_request:
                raise
        # It exists with other limits: ours, with the replicas it has.
        try:
            info = await self._js.stream_info(spec.name)
        except NotFound:
            return False
        await self._js.update_stream(attrs.evolve(spec, replicas=info.replicas))
        return True

    async def put(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Dead-letter one message; stored with an acknowledgement while connected.

        No ``Nats-Msg-Id``: two dead letters of one message (a retry's, a redelivery's) are
        both kept.

        Raises:
            ConnectionLost: it could not be sent or stored.
        """
        if self._kept and self._js.connected:
            await self._stored(subject, data, headers, or_published=False)
        else:  # reconnecting: buffered like any message, not held up waiting for an ack
            await self._plain(subject, data, headers)

    async def store(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Dead-letter one message, acknowledged if any stream captures it, else published.

        Whichever process made the stream, it is waited for; with none it goes out plainly.

        Raises:
            ConnectionLost: it could not be sent or stored.
        """
        await self._stored(subject, data, headers, or_published=True)

    async def _stored(
        self, subject: str, data: bytes, headers: dict[str, str], *, or_published: bool
    ) -> None:
        try:
            await self._js.publish(subject, data, headers)
        except NoStream as exc:
            if not or_published:
                raise ConnectionLost(f"dead letter on {subject!r} not stored: {exc}") from exc
            await self._plain(subject, data, headers)
        except (ConnectionLost, Refused, NoJetStream, NotFound) as exc:
            raise ConnectionLost(f"dead letter on {subject!r} not stored: {exc}") from exc

    async def _plain(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            await self._js.publish_plain(subject, data, headers)
        except ConnectionLost as exc:
            raise ConnectionLost(f"dead letter on {subject!r} not sent: {exc}") from exc

    async def read(self, tenant: str, *, limit: int = 100) -> list[DeadLetter]:
        """The tenant's kept dead letters, oldest first, read from its stream.

        Raises:
            ConfigError: the server has no JetStream.
            ConnectionLost: the server cannot be reached.
        """
        stream, subjects = dead_letter_stream(tenant), dead_letter_subjects(tenant)
        out: list[DeadLetter] = []
        seq = 1
        try:
            while len(out) < limit:
                m = await self._js.get_msg(stream, seq, subject=subjects, next=True)
                out.append(DeadLetter(m.seq, m.subject, m.headers, m.data, m.time))
                seq = m.seq + 1
        except NotFound:
            pass  # no (more) messages, or no stream
        except NoJetStream:
            raise self._no_jetstream() from None
        except Refused as exc:
            raise ConnectionLost(f"cannot read dead letters of {tenant!r}: {exc}") from exc
        return out

    async def drop(self, tenant: str, seq: int) -> None:
        """Delete one message from the tenant's dead-letter stream.

        Raises:
            ConfigError: the server has no JetStream.
            ConnectionLost: the server cannot be reached.
        """
        try:
            await self._js.delete_msg(dead_letter_stream(tenant), seq)
        except NotFound:
            pass
        except NoJetStream:
            raise self._no_jetstream() from None
        except Refused as exc:
            raise ConnectionLost(f"cannot delete dead letter {seq} of {tenant!r}: {exc}") from exc

    def _no_jetstream(self) -> ConfigError:
        return ConfigError(
            f"the NATS server at {self._where()} has no JetStream, which keeps dead letters: "
            "start it with JetStream on (nats-server -js, or `jetstream {}` in its "
            "configuration; the embedded server and `python -m motadata_actors server` have it)"
        )
