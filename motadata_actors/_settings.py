"""Settings, read once from the environment into one frozen object.

A foundation module like ``_errors``: it imports nothing else from the package, so
every layer may take a :class:`Settings`. A bad value is a :class:`ConfigError`
that names the variable and says what is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, final
from urllib.parse import urlsplit

import attrs

from motadata_actors._errors import ConfigError

__all__ = ("CodecName", "Settings", "redact_url", "secret_repr", "valid_url")

CodecName = Literal["json", "msgpack", "cbor", "protobuf"]
Retention = Literal["workqueue", "interest", "limits"]
_RETENTIONS: tuple[Retention, ...] = ("workqueue", "interest", "limits")
T = TypeVar("T")
_CODECS: tuple[CodecName, ...] = ("json", "msgpack", "cbor", "protobuf")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_CAPACITY = 1000
_MAX_SIZE = 1024 * 1024 - 4096  # below nats-server's default max_payload of 1 MiB
_MAX_DEPTH = 32
_MAX_LENGTH = 100_000


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false")


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a positive number")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be a positive whole number")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[T, ...], default: T) -> T:
    raw = env.get(name)
    if raw is None:
        return default
    for choice in choices:
        if raw.strip().lower() == str(choice):
            return choice
    raise ConfigError(f"{name}={raw!r} is not one of {', '.join(map(str, choices))}")


def _bytes_limit(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name)
    if raw is None:
        return -1
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value != -1 and value < 1:
        raise ConfigError(f"{name}={raw!r} must be a positive number of bytes, or -1 for none")
    return value


def secret_repr(value: object) -> str:
    """How a secret shows in ``repr``: whether it is set, never what it is."""
    return "None" if value is None else "'***'"


def redact_url(url: str) -> str:
    """``url`` without a password or token in it (``nats://user:***@host:port``).

    Plain string work, no URL parser: it must mask what a parser rejects too (a port that
    is not a number, a broken IPv6 host, a password with ``/`` or ``@`` in it), and never
    raise. Everything before the last ``@`` is credentials; the user name stays readable.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        scheme, sep, rest = "", "", url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}{sep}{shown}@{host}"


def _urls_repr(urls: tuple[str, ...]) -> str:
    return repr(tuple(redact_url(u) for u in urls))


def _text(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() or None if raw is not None else None


def _file(env: Mapping[str, str], name: str) -> str | None:
    path = _text(env, name)
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"{name}={path!r} is not a readable file")
    return path


def valid_url(url: str) -> bool:
    """Whether ``url`` is a server URL nats-py can use: a known scheme, a host, a port."""
    try:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        return (
            parts.scheme in _SCHEMES
            and bool(parts.hostname)
            and not any(c.isspace() or not c.isprintable() for c in url)
            and parts.port != 0
        )
    except ValueError:  # a port that is not a number in range, a broken IPv6 host
        return False


def _urls(raw: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    for url in urls:
        if not valid_url(url):
            raise ConfigError(
                f"NATS_URL has an invalid server {redact_url(url)!r}: use nats://host:port "
                "(or tls://), several separated by commas; credentials are better set in "
                "NATS_USER/NATS_PASSWORD or NATS_TOKEN than in the URL"
            )
    return urls


@final
@attrs.frozen(slots=True)
class Settings:
    """Everything the SDK reads from the environment.

    Attributes:
        nats_urls: servers to connect to (``NATS_URL``, comma-separated); empty means
            start an embedded nats-server.
        enable_nats: ``ENABLE_NATS``; false runs on the in-process transport.
        codec: ``CODEC_TYPE``, the codec for messages this process sends.
        enable_otel: ``ENABLE_OTEL``.
        ask_timeout: ``SDK_ASK_TIMEOUT``, default seconds for an ask.
        mailbox_capacity: ``SDK_MAILBOX_CAPACITY``, messages an actor's mailbox holds.
        max_message_size: ``SDK_MAX_MESSAGE_SIZE``, bytes of one message's body, checked
            by sender and receiver alike (headers are bounded by ``SDK_MAX_HEADER_SIZE``,
            and headers and body together by the server's ``max_payload``).
        max_depth: ``SDK_MAX_DEPTH``, deepest nesting of lists, maps and messages.
        max_length: ``SDK_MAX_LENGTH``, most items in one list or map.
        ask_attempts: ``SDK_ASK_ATTEMPTS``, how many times an ask is sent by default.
        shutdown_grace: ``SDK_SHUTDOWN_GRACE``, seconds handlers get to finish on exit.
        root_max_restarts: ``SDK_ROOT_MAX_RESTARTS``, restarts the root supervisor allows
            within ``root_within`` before the system stops.
        root_within: ``SDK_ROOT_WITHIN``, the root's intensity window in seconds.
        dlq_max_messages: ``SDK_DLQ_MAX_MESSAGES``, dead letters kept per tenant.
        dlq_max_age: ``SDK_DLQ_MAX_AGE``, seconds a dead letter is kept.
        durable_max_deliver: ``SDK_DURABLE_MAX_DELIVER``, deliveries of a durable message
            before it is dead-lettered.
        durable_ack_wait: ``SDK_DURABLE_ACK_WAIT``, seconds before an unsettled durable
            message is redelivered (running handlers extend it).
        durable_backoff: ``SDK_DURABLE_BACKOFF``, seconds before the first redelivery
            after a failure; doubles each time, up to ``SDK_DURABLE_BACKOFF_MAX``.
        durable_backoff_max: ``SDK_DURABLE_BACKOFF_MAX``.
        durable_prefetch: ``SDK_DURABLE_PREFETCH``, durable messages pulled ahead per actor.
        durable_retention: ``SDK_DURABLE_RETENTION``, ``workqueue`` (default), ``interest``
            or ``limits``: the tenant stream's retention, used when the stream is created.
        durable_max_age: ``SDK_DURABLE_MAX_AGE``, seconds the stream keeps a message.
        durable_max_bytes: ``SDK_DURABLE_MAX_BYTES``, bytes it keeps (-1: no limit).
        durable_replicas: ``SDK_DURABLE_REPLICAS``, stream copies in a cluster (1, 3, 5).
        durable_duplicate_window: ``SDK_DURABLE_DUPLICATE_WINDOW``, seconds a repeated
            message id is recognised and stored once.
        reconnect_buffer: ``SDK_RECONNECT_BUFFER``, bytes of messages nats-py holds while
            it reconnects; past it, sends fail with ``ConnectionLost``.
        max_header_size: ``SDK_MAX_HEADER_SIZE``, bytes of headers one received message may
            carry (names and values); more is refused and dead-lettered.
        replay_window: ``SDK_REPLAY_WINDOW``, seconds between making a message id and
            sending the message (stored, for durable mailboxes) past which it is a replay.
        stream_window: ``SDK_STREAM_WINDOW``, parts of a streaming reply a producer may
            send ahead of what its consumer has taken (the flow-control window).
        stream_window_bytes: ``SDK_STREAM_WINDOW_BYTES``, the same bound in bytes of
            bodies (one part is always allowed).
        nats_token: ``NATS_TOKEN``, a token to authenticate with (never shown).
        nats_user: ``NATS_USER``, a user name (with ``NATS_PASSWORD``).
        nats_password: ``NATS_PASSWORD`` (never shown).
        nats_nkey_seed: ``NATS_NKEY_SEED``, an nkey seed (``SU...``) or a file holding one
            (never shown).
        nats_creds: ``NATS_CREDS``, a ``.creds`` file (user JWT and nkey seed).
        nats_tls_ca: ``NATS_TLS_CA``, a CA bundle to verify the server with.
        nats_tls_cert: ``NATS_TLS_CERT``, a client certificate (with ``NATS_TLS_KEY``).
        nats_tls_key: ``NATS_TLS_KEY``, the client certificate's key file.
    """

    nats_urls: tuple[str, ...] = attrs.field(default=(), repr=_urls_repr)
    enable_nats: bool = True
    codec: CodecName = "json"
    enable_otel: bool = False
    ask_timeout: float = 5.0
    mailbox_capacity: int = _CAPACITY
    max_message_size: int = _MAX_SIZE
    max_depth: int = _MAX_DEPTH
    max_length: int = _MAX_LENGTH
    ask_attempts: int = 1
    shutdown_grace: float = 10.0
    root_max_restarts: int = 10
    root_within: float = 5.0
    dlq_max_messages: int = 10_000
    dlq_max_age: float = 7 * 24 * 3600.0
    durable_max_deliver: int = 5
    durable_ack_wait: float = 30.0
    durable_backoff: float = 0.5
    durable_backoff_max: float = 30.0
    durable_prefetch: int = 64
    durable_retention: Retention = "workqueue"
    durable_max_age: float = 7 * 24 * 3600.0
    durable_max_bytes: int = -1
    durable_replicas: int = 1
    durable_duplicate_window: float = 120.0
    reconnect_buffer: int = 2 * 1024 * 1024
    max_header_size: int = 16 * 1024
    replay_window: float = 300.0
    stream_window: int = 256
    stream_window_bytes: int = 1024 * 1024
    nats_token: str | None = attrs.field(default=None, repr=secret_repr)
    nats_user: str | None = None
    nats_password: str | None = attrs.field(default=None, repr=secret_repr)
    nats_nkey_seed: str | None = attrs.field(default=None, repr=secret_repr)
    nats_creds: str | None = None
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (``os.environ`` when omitted), then ``overrides``.

        Overrides are field names: ``Settings.from_env(durable_max_deliver=2)`` keeps
        the rest of the environment (``Settings(...)`` alone would not read it).

        Raises:
            ConfigError: a variable has a value that cannot be used (the message names
                it), or an override names no setting.
        """
        if overrides:
            unknown = sorted(set(overrides) - {a.name for a in attrs.fields(cls)})
            if unknown:
                raise ConfigError(f"no such setting: {', '.join(unknown)}")
            return attrs.evolve(cls.from_env(environ), **overrides)
        env = os.environ if environ is None else environ
        codec = env.get("CODEC_TYPE", "json").strip().lower()
        if codec not in _CODECS:
            raise ConfigError(f"CODEC_TYPE={codec!r} is not one of {', '.join(_CODECS)}")
        return cls(
            nats_urls=_urls(env.get("NATS_URL", "")),
            enable_nats=_flag(env, "ENABLE_NATS", True),
            codec=codec,
            enable_otel=_flag(env, "ENABLE_OTEL", False),
            ask_timeout=_positive(env, "SDK_ASK_TIMEOUT", 5.0),
            mailbox_capacity=_count(env, "SDK_MAILBOX_CAPACITY", _CAPACITY),
            max_message_size=_count(env, "SDK_MAX_MESSAGE_SIZE", _MAX_SIZE),
            max_depth=_count(env, "SDK_MAX_DEPTH", _MAX_DEPTH),
            max_length=_count(env, "SDK_MAX_LENGTH", _MAX_LENGTH),
            ask_attempts=_count(env, "SDK_ASK_ATTEMPTS", 1),
            shutdown_grace=_positive(env, "SDK_SHUTDOWN_GRACE", 10.0),
            root_max_restarts=_count(env, "SDK_ROOT_MAX_RESTARTS", 10),
            root_within=_positive(env, "SDK_ROOT_WITHIN", 5.0),
            dlq_max_messages=_count(env, "SDK_DLQ_MAX_MESSAGES", 10_000),
            dlq_max_age=_positive(env, "SDK_DLQ_MAX_AGE", 7 * 24 * 3600.0),
            durable_max_deliver=_count(env, "SDK_DURABLE_MAX_DELIVER", 5),
            durable_ack_wait=_positive(env, "SDK_DURABLE_ACK_WAIT", 30.0),
            durable_backoff=_positive(env, "SDK_DURABLE_BACKOFF", 0.5),
            durable_backoff_max=_positive(env, "SDK_DURABLE_BACKOFF_MAX", 30.0),
            durable_prefetch=_count(env, "SDK_DURABLE_PREFETCH", 64),
            durable_retention=_choice(env, "SDK_DURABLE_RETENTION", _RETENTIONS, "workqueue"),
            durable_max_age=_positive(env, "SDK_DURABLE_MAX_AGE", 7 * 24 * 3600.0),
            durable_max_bytes=_bytes_limit(env, "SDK_DURABLE_MAX_BYTES"),
            durable_replicas=_choice(env, "SDK_DURABLE_REPLICAS", (1, 3, 5), 1),
            durable_duplicate_window=_positive(env, "SDK_DURABLE_DUPLICATE_WINDOW", 120.0),
            reconnect_buffer=_count(env, "SDK_RECONNECT_BUFFER", 2 * 1024 * 1024),
            max_header_size=_count(env, "SDK_MAX_HEADER_SIZE", 16 * 1024),
            replay_window=_positive(env, "SDK_REPLAY_WINDOW", 300.0),
            stream_window=_count(env, "SDK_STREAM_WINDOW", 256),
            stream_window_bytes=_count(env, "SDK_STREAM_WINDOW_BYTES", 1024 * 1024),
            nats_token=_text(env, "NATS_TOKEN"),
            nats_user=_text(env, "NATS_USER"),
            nats_password=_text(env, "NATS_PASSWORD"),
            nats_nkey_seed=_text(env, "NATS_NKEY_SEED"),
            nats_creds=_file(env, "NATS_CREDS"),
            nats_tls_ca=_file(env, "NATS_TLS_CA"),
            nats_tls_cert=_file(env, "NATS_TLS_CERT"),
            nats_tls_key=_file(env, "NATS_TLS_KEY"),
        )
