"""The one exception hierarchy of motadata-actors.

This module imports nothing from the package, so every layer (codecs, telemetry,
mailbox, actors) can raise these without breaking the dependency direction.
"""

from __future__ import annotations

__all__ = (
    "ActorsError",
    "AskTimeout",
    "CodecError",
    "ConfigError",
    "ConnectionLost",
    "DecodeError",
    "EncodeError",
    "MailboxFull",
    "MessageExpired",
    "MessageTooLarge",
    "NoResponders",
    "QuotaExceeded",
    "RemoteError",
    "ReplayError",
    "SealError",
    "SequenceConflict",
    "StateConflict",
    "StreamError",
    "SubjectError",
    "SupervisionError",
    "TenantError",
    "TransportClosed",
)


class ActorsError(Exception):
    """Base class of every error motadata-actors raises across its public API."""


class ConfigError(ActorsError):
    """A setting (environment variable or argument) has a value that cannot be used.

    The message names the variable and says what would be accepted.
    """


class SubjectError(ActorsError, ValueError):
    """A subject or one of its tokens (agent, tenant, event type, workflow id) is invalid."""


class CodecError(ActorsError):
    """A value could not be encoded, or bytes could not be decoded into a message.

    Raised at the sender for values the codec cannot carry, and at the receiver for
    malformed bytes, unknown message types or fields of the wrong type.
    """


class _BodyError(CodecError):
    """A body that could not be encoded or decoded (the shape the two below share)."""

    _verb = ""
    _untyped = ""

    def __init__(self, codec: str, wire_name: str | None, reason: str) -> None:
        what = f"{wire_name!r}" if wire_name else self._untyped
        super().__init__(f"{codec} cannot {self._verb} {what}: {reason}")
        self.codec = codec
        self.wire_name = wire_name
        self.reason = reason


class EncodeError(_BodyError):
    """A value could not be encoded: it is outside the value model or a typed field is wrong.

    Attributes:
        codec: the codec's name (``json``, ``msgpack``, ``cbor``, ``protobuf``).
        wire_name: the typed message's wire name, or None for an untyped value.
        reason: what was wrong, with the path to the offending value.
    """

    _verb = "encode"
    _untyped = "an untyped value"


class DecodeError(_BodyError):
    """Bytes could not be decoded: malformed, over a limit, or not matching the message type.

    Attributes:
        codec: the codec's name.
        wire_name: the message type named by ``Sdk-Message-Type``, or None.
        reason: what was wrong, with the path to the offending value.
    """

    _verb = "decode"
    _untyped = "an untyped message"


class MessageTooLarge(CodecError):
    """A message exceeds a size limit.

    The limit is on its body (``SDK_MAX_MESSAGE_SIZE``), its headers
    (``SDK_MAX_HEADER_SIZE``), or headers and body together (``SDK_MAX_MESSAGE_SIZE`` and
    the server's ``max_payload``). Raised before anything is sent: nats-server drops the
    whole connection on an oversized message, so it must never reach the wire.

    Attributes:
        size: the bytes counted.
        limit: the limit they exceed.
    """

    def __init__(self, size: int, limit: int, *, part: str = "message") -> None:
        what = "message" if part == "message" else part
        detail = " (headers and body)" if part == "message" else ""
        hint = (
            "; for larger bodies set SDK_CLAIM_ABOVE (they travel through the object store)"
            if part != "headers"
            else ""
        )
        super().__init__(f"{what} of {size} bytes{detail} exceeds the limit of {limit} bytes{hint}")
        self.size = size
        self.limit = limit


class MessageExpired(ActorsError):
    """A message's time to live (``tell(..., ttl=)``) ran out before it was handled.

    The receiver drops it unhandled and dead-letters it as expired; a durable one is also
    removed by its stream once the time is up (the server's per-message TTL).
    """


class SealError(CodecError):
    """A sealed body could not be opened: an unknown key id, a wrong key, or altered bytes.

    Also raised when a tenant that seals receives a body sealed with a key it does not
    have: add the key to the ring (``SDK_SEAL_KEYS`` or the ring's provider).
    """


class AskTimeout(ActorsError, TimeoutError):
    """An ask got no reply within its timeout."""


class NoResponders(ActorsError):
    """An ask was sent to a subject that no actor serves."""


class RemoteError(ActorsError):
    """The actor that handled an ask raised; carries the remote type name and message.

    Attributes:
        type_name: the name of the exception's class on the remote side.
        message: the exception's message as the remote side formatted it.
        actor: the name of the actor that raised, when known.
    """

    def __init__(self, type_name: str, message: str, actor: str | None = None) -> None:
        where = f" in actor {actor!r}" if actor else ""
        super().__init__(f"{type_name}{where}: {message}")
        self.type_name = type_name
        self.message = message
        self.actor = actor


class TenantError(ActorsError):
    """A message or operation names a tenant other than the one it is bound to."""


class SupervisionError(ActorsError):
    """A failure escalated to the root of the supervision tree; the system stopped."""


class ConnectionLost(ActorsError):
    """The connection to NATS broke (server gone, network failure) and the operation failed.

    Also raised when connecting fails: no server answered, the login was refused, the
    server's certificate is not trusted, or TLS is required and the server does not offer
    it. The message says which, and which setting to check.
    """


class QuotaExceeded(ActorsError):
    """A quota of the tenant's NATS account is used up, and the server refused.

    Raised where the refusal meets our code: a connection the account has no room for
    (``connections``), a subscription past the per-connection bound (``subscriptions``),
    a message or stream past a JetStream limit (``jetstream storage``, ``jetstream
    memory``, ``jetstream streams``, ``jetstream consumers``). A message over the
    ``payload`` quota is refused before it is sent, as :class:`MessageTooLarge`. The
    message says how to raise the quota.

    Attributes:
        quota: which quota: ``connections``, ``subscriptions``, ``payload``, ``jetstream
            storage``, ``jetstream memory``, ``jetstream streams``, ``jetstream consumers``.
        tenant: the tenant whose account it is, when known.
        limit: the quota's value, when the server tells it (it does for JetStream).
    """

    def __init__(
        self, quota: str, message: str, *, tenant: str | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.quota = quota
        self.tenant = tenant
        self.limit = limit


class ReplayError(ActorsError):
    """A replayed message, refused and dead-lettered.

    Either a known ``Sdk-Message-Id`` with a different body, or an id made longer ago
    than the replay window (``SDK_REPLAY_WINDOW``) before the message was sent.
    """


class MailboxFull(ActorsError):
    """A mailbox had no room.

    Raised by ``send_nowait`` on a full mailbox, and by an ask that a slow actor's NATS
    subscription dropped (the asker hears at once instead of timing out).
    """


class SequenceConflict(ActorsError):
    """A conditional publish found its subject moved on: another publisher went first.

    Raised by :meth:`Workflow.publish <motadata_actors.Workflow.publish>` with
    ``expect_seq``; read the history again and decide.
    """


class StateConflict(SequenceConflict):
    """An agent's state was not saved: a newer activation owns it now.

    Saves are fenced: each is conditional on the revision the activation loaded or last
    saved, and a new activation claims the state when it loads it. A process that lost its
    lease (it was paused, or cut off, past the lease time) but still runs gets this error
    instead of overwriting newer state; its activation is dropped without saving.
    """


class StreamError(ActorsError):
    """A streaming reply broke: a part missing or out of order, or streamed to a plain ask.

    A stream's parts carry ``Sdk-Stream-Seq`` from 1; the consumer checks each one, so a
    lost or reordered part ends the stream with this error instead of passing unnoticed.
    """


class TransportClosed(ActorsError):
    """The transport or actor system was closed by its owner; no further operations."""
