"""JetStream in our own terms: the values and errors :mod:`._natspy` speaks (sans-io).

The JetStream modules make and read streams and consumers through these, never through
nats-py's types; the adapter converts. A :class:`StreamInfo` or :class:`ConsumerInfo`
carries the server's whole configuration along (opaque), so an edit changes only what it
names and keeps the settings an operator may have added.
"""

from __future__ import annotations

from typing import Literal, final

import attrs

from motadata_actors._errors import ActorsError, ConfigError, ConnectionLost, NoResponders

from ._transport import StartAt

__all__ = (
    "ConsumerInfo",
    "ConsumerSpec",
    "NoAnswer",
    "NoJetStream",
    "NoStream",
    "NotFound",
    "Refused",
    "Retention",
    "StreamInfo",
    "StreamSpec",
)

Retention = Literal["workqueue", "interest", "limits"]


class NotFound(ActorsError):
    """JetStream has no such stream, consumer or message."""


class Refused(ConfigError):
    """JetStream's API refused a request; ``err_code`` is its own error code."""

    def __init__(self, what: str, code: int | None, err_code: int | None, description: str) -> None:
        super().__init__(f"JetStream refused to {what}: {description}")
        self.code = code
        self.err_code = err_code
        self.description = description

    @property
    def bad_request(self) -> bool:
        """The request itself was refused (a stream that exists with other settings, say)."""
        return self.code == 400


class NoJetStream(ConfigError):
    """The server has JetStream off, or nothing answers its API."""


class NoStream(NoResponders):
    """No stream answered a JetStream publish.

    None captures the subject, or its leader is being elected.
    """


class NoAnswer(ConnectionLost):
    """JetStream did not answer in time."""


@final
@attrs.frozen(slots=True)
class StreamSpec:
    """A stream as we make it.

    File storage, old messages discarded first; every other setting JetStream's default.

    Attributes:
        name: the stream.
        subjects: what it captures.
        description: for operators.
        retention: ``workqueue``, ``interest`` or ``limits``.
        max_age: seconds a message is kept (0: no limit).
        max_bytes: bytes kept (-1: no limit).
        max_msgs: messages kept (-1: no limit).
        replicas: copies in a cluster.
        duplicate_window: seconds a repeated ``Nats-Msg-Id`` is dropped (0: the server's).
        schedules: the stream runs message schedules (``Nats-Schedule``) and per-message
            TTLs (``Nats-TTL``).
        message_ttl: the stream honours per-message TTLs (``Nats-TTL``).
    """

    name: str
    subjects: tuple[str, ...]
    description: str = ""
    retention: Retention = "limits"
    max_age: float = 0.0
    max_bytes: int = -1
    max_msgs: int = -1
    replicas: int = 1
    duplicate_window: float = 0.0
    schedules: bool = False
    message_ttl: bool = False


@final
@attrs.frozen(slots=True)
class StreamInfo:
    """A stream as the server has it: the settings we read and its state.

    Attributes:
        name: the stream.
        subjects: what it captures.
        retention: ``workqueue``, ``interest`` or ``limits``.
        max_age: seconds a message is kept.
        max_bytes: bytes kept (-1: no limit).
        replicas: copies in a cluster.
        duplicate_window: seconds a repeated ``Nats-Msg-Id`` is dropped.
        messages: messages it holds now.
        bytes: bytes it holds now.
        raw: the server's whole configuration (the adapter's, opaque here).
        message_ttl: it honours per-message TTLs (``Nats-TTL``).
    """

    name: str
    subjects: tuple[str, ...]
    retention: str
    max_age: float
    max_bytes: int
    replicas: int
    duplicate_window: float
    messages: int
    bytes: int
    raw: object = attrs.field(repr=False, eq=False)
    message_ttl: bool = False


@final
@attrs.frozen(slots=True)
class ConsumerSpec:
    """A durable pull consumer with explicit acks, as we make it.

    Attributes:
        name: its durable name.
        filter_subject: what it reads of the stream.
        ack_wait: seconds before an unsettled message is redelivered.
        max_deliver: deliveries of one message at most.
        max_ack_pending: unsettled messages handed out at most.
        description: for operators.
        start: where a new consumer starts.
        inactive_threshold: seconds unread before the server deletes it (None: never).
    """

    name: str
    filter_subject: str
    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    description: str = ""
    start: StartAt = "all"
    inactive_threshold: float | None = None


@final
@attrs.frozen(slots=True)
class ConsumerInfo:
    """A consumer as the server has it.

    Attributes:
        name: its name.
        filter_subject: what it reads of the stream.
        ack_wait: seconds before an unsettled message is redelivered.
        max_deliver: deliveries of one message at most.
        max_ack_pending: unsettled messages handed out at most.
        num_pending: messages not yet delivered.
        num_ack_pending: messages delivered and not yet settled.
        num_redelivered: messages delivered more than once.
        raw: the server's whole configuration (the adapter's, opaque here).
    """

    name: str
    filter_subject: str
    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    raw: object = attrs.field(repr=False, eq=False)
