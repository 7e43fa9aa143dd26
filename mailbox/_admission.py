"""Admission: what an actor's mailbox takes, refuses, or answers from memory (sans-io).

Rules, in the order they apply to one received message:

* Its headers are read once (:meth:`Letter.open`); one name twice in different cases is
  refused (``CodecError``).
* ``Sdk-Tenant-Id``, when present, must equal the system's tenant (``TenantError``): the
  subject's tenant is what the server checked, a header can only be a forgery.
* Headers and body together at most ``max_size`` (the server's ``max_payload``), headers
  at most ``max_header_size`` (``MessageTooLarge``).
* ``Sdk-Message-Id``: known with another body is a replay (``ReplayError``); so is an id
  made longer than ``replay_window`` seconds before the message was sent (stored, for a
  durable one). Known with the same body: a core tell is a *duplicate* (dropped), a
  retried ask is *answered* from the reply cache when its reply was sent (else handled
  again), a durable redelivery is handled again.
* The body decodes by ``Content-Type`` and ``Sdk-Message-Type`` (the codec's error;
  anything a message class's own validator raises becomes a ``CodecError``).

Memory is bounded: the newest ids are remembered (two generations of plain dicts, so
each message costs O(1) and no eviction order is kept), and the replies to the latest
asks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, final

from motadata_actors._errors import (
    ActorsError,
    CodecError,
    MessageExpired,
    MessageTooLarge,
    ReplayError,
    TenantError,
)
from motadata_actors.codecs import Codecs

from ._envelope import Letter, Sealed, SharedMessage, message_id_time, message_size
from ._transport import DurableMessage, Incoming

__all__ = ("Accept", "Admission", "Answered", "Duplicate", "Refuse")

_SEEN: Final = 4096  # message ids remembered, at least (two generations)
_REPLIES: Final = 1024  # replies kept for retried asks


@final
class Accept:
    """Take the message: ``letter`` as read, ``payload`` its decoded body."""

    __slots__ = ("letter", "payload")

    def __init__(self, letter: Letter, payload: Any) -> None:
        self.letter = letter
        self.payload = payload


@final
class Refuse:
    """Refuse the message with ``error``: an asker is told, the message dead-lettered."""

    __slots__ = ("error", "letter")

    def __init__(self, letter: Letter, error: ActorsError) -> None:
        self.letter = letter
        self.error = error


@final
class Duplicate:
    """Drop the message: a core tell already handled (a resend by its sender)."""

    __slots__ = ("message_id",)

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id


@final
class Answered:
    """Send ``reply`` again: a retried ask whose first attempt was already answered."""

    __slots__ = ("letter", "reply")

    def __init__(self, letter: Letter, reply: Sealed) -> None:
        self.letter = letter
        self.reply = reply


Decision = Accept | Refuse | Duplicate | Answered


@final
class Admission:
    """The admission rules of one actor, with its memory of ids and replies.

    Args:
        tenant: the system's tenant.
        codecs: the codecs bodies are decoded with.
        max_size: bytes of headers and body together (the server's ``max_payload``).
        max_header_size: bytes of headers (``SDK_MAX_HEADER_SIZE``).
        replay_window: seconds an id may be older than its message (``SDK_REPLAY_WINDOW``).
        wall_clock: the time, in seconds since the epoch (message ids carry their second).
    """

    __slots__ = (
        "_codecs",
        "_json",
        "_max_header_size",
        "_max_size",
        "_replay_window",
        "_replies",
        "_seen",
        "_seen_before",
        "_tenant",
        "_wall_clock",
    )

    def __init__(
        self,
        tenant: str,
        codecs: Codecs,
        *,
        max_size: int,
        max_header_size: int,
        replay_window: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._tenant = tenant
        self._codecs = codecs
        self._json = codecs.for_content_type(None)  # a body without Content-Type
        self._max_size = max_size
        self._max_header_size = max_header_size
        self._replay_window = replay_window
        self._wall_clock = wall_clock
        # Message id -> hash of the body.
        self._seen: dict[str, int] = {}
        self._seen_before: dict[str, int] = {}
        self._replies: OrderedDict[str, Sealed] = OrderedDict()

    def admit(self, message: Incoming) -> Decision:
        """Decide what becomes of ``message``."""
        if not message.headers:
            return self._admit_plain(message)
        try:
            letter = Letter.open(message)
        except CodecError as exc:
            return Refuse(Letter(message, message.headers), exc)
        try:
            tenant = letter.tenant
            if tenant is not None and tenant != self._tenant:
                raise TenantError(
                    f"Sdk-Tenant-Id {tenant!r} does not match the subject's tenant {self._tenant!r}"
                )
            expires = letter.expires
            if expires is not None and expires < self._wall_clock():
                raise MessageExpired(
                    f"its time to live ended {self._wall_clock() - expires:.3f}s before it "
                    "could be handled"
                )
            if type(message) is SharedMessage:  # in process, unencoded: its size is bounded
                header_size = message_size(b"", letter.headers)
                size = header_size + message.bound
                if size > self._max_size:
                    size = letter.size()  # the bound is loose: measure the bytes
            else:
                size = letter.size()
                header_size = size - len(letter.data)
            if size > self._max_size:
                raise MessageTooLarge(size, self._max_size)
            if header_size > self._max_header_size:
                raise MessageTooLarge(header_size, self._max_header_size, part="headers")
            message_id = letter.message_id
            if message_id is not None:
                repeated = self._repeated(letter, message_id)
                if repeated is not None:
                    return repeated
            payload = letter.body(self._codecs, claims=True)
        except (CodecError, TenantError, ReplayError, MessageExpired) as exc:
            return Refuse(letter, exc)
        except Exception as exc:  # a message class's own validator, say
            return Refuse(letter, CodecError(f"cannot build the message: {exc!r}"))
        return Accept(letter, payload)

    def _admit_plain(self, message: Incoming) -> Decision:
        """:meth:`admit` for a message without headers (a plain JSON tell, most often).

        The same rules, with only those left that can apply: no tenant, time to live or id
        to check, no headers to count; its size, then its body as JSON.
        """
        letter = Letter(message, None)
        try:
            if type(message) is SharedMessage:
                if message.bound > self._max_size and len(message.data) > self._max_size:
                    raise MessageTooLarge(len(message.data), self._max_size)
                return Accept(letter, message.value)
            data = message.data
            if len(data) > self._max_size:
                raise MessageTooLarge(len(data), self._max_size)
            return Accept(letter, self._json.decode(data))
        except CodecError as exc:
            return Refuse(letter, exc)
        except Exception as exc:  # a message class's own validator, say
            return Refuse(letter, CodecError(f"cannot build the message: {exc!r}"))

    def _repeated(self, letter: Letter, message_id: str) -> Duplicate | Answered | None:
        """Remember ``message_id``; say what to do when it was seen before.

        Raises:
            ReplayError: known with another body, or made too long before it was sent.
        """
        message = letter.message
        # A shared value is its own identity: an ask's retries hand over the same object.
        digest = id(message.value) if type(message) is SharedMessage else hash(letter.data)
        seen = self._seen.get(message_id)
        if seen is None:
            seen = self._seen_before.get(message_id)
        durable = type(message) is DurableMessage
        if seen is not None:
            if seen != digest:
                raise ReplayError(f"message id {message_id!r} was seen before with another body")
            if durable:
                return None  # a redelivery: handled again
            if letter.reply:
                reply = self._replies.get(message_id)
                return Answered(letter, reply) if reply is not None else None
            return Duplicate(message_id)
        born = message_id_time(message_id)
        if born is not None:
            sent = message.stored_at if durable else self._wall_clock()  # type: ignore[attr-defined]
            age = sent - born
            if age > self._replay_window:
                raise ReplayError(
                    f"message id {message_id!r} was made {age:.0f}s before the message was "
                    f"sent: outside the replay window ({self._replay_window:g}s, "
                    "SDK_REPLAY_WINDOW)"
                )
        seen_now = self._seen
        if len(seen_now) >= _SEEN:
            self._seen_before = seen_now
            seen_now = self._seen = {}
        seen_now[message_id] = digest
        return None

    def answered(self, message_id: str | None, reply: Sealed) -> None:
        """Remember the reply to the ask ``message_id``, for its retries."""
        if message_id is None:
            return
        replies = self._replies
        replies[message_id] = reply
        if len(replies) > _REPLIES:
            replies.popitem(last=False)
