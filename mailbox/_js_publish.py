"""Durable publishing and requests: a message counts as sent once a stream stored it.

Rules:

* ``Sdk-Message-Id`` travels as ``Nats-Msg-Id`` too (the envelope's :func:`stored`), so a
  resend within the stream's duplicate window is stored once.
* No stream answering a publish means one of two things, told apart by asking JetStream's
  API which stream captures the subject: none (:class:`NoResponders`: spawn the durable
  agent), or one whose leader is being elected after a node was lost
  (:class:`ConnectionLost`, worth a retry). Either way nothing was stored.
* A request to a durable mailbox names this process's reply inbox in ``Sdk-Reply-To``
  (JetStream does not keep a request's reply subject) and waits for the first reply on
  it. It never resends: a redelivered request is answered by whichever delivery succeeds.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import final

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    ConnectionLost,
    NoResponders,
    SequenceConflict,
)

from ._envelope import Sealed, check_size, stored
from ._js_values import NoAnswer, NoJetStream, NoStream, NotFound, Refused
from ._natspy import JetStream
from ._subjects import check_publish_subject
from ._transport import Incoming

__all__ = ("DurablePublisher",)

_WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for Nats-Expected-Last-Subject-Sequence
_PROBE_TIMEOUT = 1.0  # seconds to ask JetStream's API why no stream answered


@final
class DurablePublisher:
    """Stores messages in JetStream and asks durable mailboxes, on one connection."""

    def __init__(self, js: JetStream, timeout: float) -> None:
        self._js = js
        self._timeout = timeout  # JetStream's, for the error message
        self._replies: dict[str, asyncio.Future[Incoming]] = {}
        self._reply_prefix: str | None = None
        self._reply_sub: object = None
        self._reply_ids = itertools.count(1)
        self._reply_lock = asyncio.Lock()

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str],
        expect_last_seq: int | None = None,
    ) -> int:
        """Store a message; return its stream sequence once the stream acknowledged it.

        Raises:
            NoResponders: no stream captures ``subject``.
            SequenceConflict: ``expect_last_seq`` was given and is not the last one.
            ConnectionLost: no acknowledgement (it may or may not be stored), or the
                stream's leader is being elected (nothing was stored).
        """
        check_publish_subject(subject)
        js_headers = stored(headers, expect_last_seq=expect_last_seq)
        check_size(data, js_headers, self._js.max_payload)
        try:
            return await self._js.publish(subject, data, js_headers)
        except Refused as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise SequenceConflict(
                    f"{subject!r} moved past sequence {expect_last_seq}: another publisher "
                    f"went first ({exc.description})"
                ) from None
            raise ConnectionLost(f"JetStream refused a message on {subject!r}: {exc}") from exc
        except NoStream:
            raise await self._why_no_stream(subject) from None
        except NoAnswer:
            raise ConnectionLost(
                f"no acknowledgement from JetStream for {subject!r} within {self._timeout}s: "
                "it may or may not be stored (a resend with the same id is stored once)"
            ) from None
        except (NoJetStream, NotFound) as exc:  # no JetStream answered: nothing was stored
            raise ConnectionLost(f"cannot store a message on {subject!r}: {exc}") from exc

    async def _why_no_stream(self, subject: str) -> ActorsError:
        """Why no stream answered a publish on ``subject``; nothing was stored either way."""
        try:
            stream = await self._js.find_stream(subject, _PROBE_TIMEOUT)
        except NotFound:
            return NoResponders(
                f"no durable mailbox captures {subject!r}: spawn that agent with "
                "mailbox='durable' (once, anywhere) so its messages are kept"
            )
        except ActorsError as exc:
            return ConnectionLost(
                f"JetStream did not store the message on {subject!r} and its API does not "
                f"answer ({type(exc).__name__}): a leader election in the cluster? Nothing "
                "was stored; retry"
            )
        return ConnectionLost(
            f"stream {stream} captures {subject!r} but did not answer: its leader is being "
            "elected (a node of the cluster was lost?). Nothing was stored; retry"
        )

    async def request(
        self, subject: str, data: bytes, *, headers: dict[str, str], timeout: float
    ) -> Incoming:
        """Store a request naming our inbox in ``Sdk-Reply-To``; wait for the first reply.

        Raises:
            NoResponders: no durable mailbox captures ``subject``.
            AskTimeout: no reply within ``timeout``.
        """
        prefix = await self._reply_inbox()
        token = f"{prefix}.{next(self._reply_ids)}"
        future: asyncio.Future[Incoming] = asyncio.get_running_loop().create_future()
        self._replies[token] = future
        try:
            async with asyncio.timeout(timeout):
                await self.publish(subject, data, headers=Sealed(data, headers).replying_to(token))
                return await future
        except TimeoutError:
            raise AskTimeout(f"no reply on {subject!r} within {timeout:.3g}s") from None
        finally:
            self._replies.pop(token, None)

    async def _reply_inbox(self) -> str:
        if self._reply_prefix is None:
            async with self._reply_lock:
                if self._reply_prefix is None:
                    prefix = self._js.new_inbox()
                    self._reply_sub = await self._js.subscribe_callback(
                        f"{prefix}.*", self._on_reply
                    )
                    self._reply_prefix = prefix
        return self._reply_prefix

    async def _on_reply(self, msg: Incoming) -> None:
        # nats-py's callback: it only hands the reply to the asker waiting for it.
        future = self._replies.get(msg.subject)
        if future is not None and not future.done():
            future.set_result(msg)

    async def aclose(self) -> None:
        """Stop listening for replies (what still waits times out)."""
        sub, self._reply_sub = self._reply_sub, None
        if sub is not None:
            await self._js.unsubscribe(sub)
