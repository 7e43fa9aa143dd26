"""Settings, read once from the environment into one frozen object.

A foundation module like ``_errors``: it imports nothing else from the package, so
every layer may take a :class:`Settings`. A bad value is a :class:`ConfigError`
that names the variable and says what is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, final
from urllib.parse import urlsplit

import attrs

from motadata_actors._errors import CodecError, ConfigError

__all__ = ("CodecName", "Settings", "redact_url", "secret_repr", "valid_url")

CodecName = str
"""A codec's name: ``json``, ``msgpack``, ``cbor``, ``protobuf``, or a plug-in's (``avro``)."""
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
_WEEK = 7 * 24 * 3600.0
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
_LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")


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


def _size_or_off(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must be a whole number of bytes (0: off)")
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


def _port_or_off(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name}={raw!r} must be a port number, 0 to 65535 (0: any free port)")
    return value


def _level_or_none(env: Mapping[str, str], name: str) -> LogLevel | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    return _choice(env, name, _LOG_LEVELS, "warning")


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


def _codec(env: Mapping[str, str]) -> CodecName:
    raw = env.get("CODEC_TYPE", "json")
    name = raw.strip().lower()
    if name in _CODECS:
        return name
    # A plug-in's name: only then is the codecs layer asked (it reads the entry points),
    # so this module stays importable alone and the built-in names load nothing.
    from motadata_actors.codecs._plugins import find_plugin

    try:
        return find_plugin(name).name
    except CodecError as exc:  # unknown (the message lists the names), or broken
        raise ConfigError(f"CODEC_TYPE={raw!r}: {exc}") from None


# How each setting is read from an environment: one place for names and defaults.
_READERS: dict[str, Callable[[Mapping[str, str]], Any]] = {
    "nats_urls": lambda env: _urls(env.get("NATS_URL", "")),
    "enable_nats": lambda env: _flag(env, "ENABLE_NATS", True),
    "codec": _codec,
    "enable_codec": lambda env: _flag(env, "ENABLE_CODEC", True),
    "enable_otel": lambda env: _flag(env, "ENABLE_OTEL", False),
    "log_export_level": lambda env: _level_or_none(env, "SDK_LOG_EXPORT_LEVEL"),
    "log_export_root": lambda env: _flag(env, "SDK_LOG_EXPORT_ROOT", False),
    "prometheus_port": lambda env: _port_or_off(env, "SDK_PROMETHEUS_PORT"),
    "prometheus_host": lambda env: _text(env, "SDK_PROMETHEUS_HOST") or "127.0.0.1",
    "codec_metrics": lambda env: _flag(env, "SDK_CODEC_METRICS", True),
    "ask_timeout": lambda env: _positive(env, "SDK_ASK_TIMEOUT", 5.0),
    "mailbox_capacity": lambda env: _count(env, "SDK_MAILBOX_CAPACITY", _CAPACITY),
    "max_message_size": lambda env: _count(env, "SDK_MAX_MESSAGE_SIZE", _MAX_SIZE),
    "max_depth": lambda env: _count(env, "SDK_MAX_DEPTH", _MAX_DEPTH),
    "max_length": lambda env: _count(env, "SDK_MAX_LENGTH", _MAX_LENGTH),
    "ask_attempts": lambda env: _count(env, "SDK_ASK_ATTEMPTS", 1),
    "shutdown_grace": lambda env: _positive(env, "SDK_SHUTDOWN_GRACE", 10.0),
    "root_max_restarts": lambda env: _count(env, "SDK_ROOT_MAX_RESTARTS", 10),
    "root_within": lambda env: _positive(env, "SDK_ROOT_WITHIN", 5.0),
    "dlq_max_messages": lambda env: _count(env, "SDK_DLQ_MAX_MESSAGES", 10_000),
    "dlq_max_age": lambda env: _positive(env, "SDK_DLQ_MAX_AGE", _WEEK),
    "durable_max_deliver": lambda env: _count(env, "SDK_DURABLE_MAX_DELIVER", 5),
    "durable_ack_wait": lambda env: _positive(env, "SDK_DURABLE_ACK_WAIT", 30.0),
    "durable_backoff": lambda env: _positive(env, "SDK_DURABLE_BACKOFF", 0.5),
    "durable_backoff_max": lambda env: _positive(env, "SDK_DURABLE_BACKOFF_MAX", 30.0),
    "durable_prefetch": lambda env: _count(env, "SDK_DURABLE_PREFETCH", 64),
    "durable_retention": lambda env: _choice(
        env, "SDK_DURABLE_RETENTION", _RETENTIONS, "workqueue"
    ),
    "durable_max_age": lambda env: _positive(env, "SDK_DURABLE_MAX_AGE", _WEEK),
    "durable_max_bytes": lambda env: _bytes_limit(env, "SDK_DURABLE_MAX_BYTES"),
    "durable_replicas": lambda env: _choice(env, "SDK_DURABLE_REPLICAS", (1, 3, 5), 1),
    "durable_duplicate_window": lambda env: _positive(env, "SDK_DURABLE_DUPLICATE_WINDOW", 120.0),
    "reconnect_buffer": lambda env: _count(env, "SDK_RECONNECT_BUFFER", 2 * 1024 * 1024),
    "max_header_size": lambda env: _count(env, "SDK_MAX_HEADER_SIZE", 16 * 1024),
    "replay_window": lambda env: _positive(env, "SDK_REPLAY_WINDOW", 300.0),
    "stream_window": lambda env: _count(env, "SDK_STREAM_WINDOW", 256),
    "stream_window_bytes": lambda env: _count(env, "SDK_STREAM_WINDOW_BYTES", 1024 * 1024),
    "compress_above": lambda env: _size_or_off(env, "SDK_COMPRESS_ABOVE"),
    "seal_keys": lambda env: _text(env, "SDK_SEAL_KEYS"),
    "claim_above": lambda env: _size_or_off(env, "SDK_CLAIM_ABOVE"),
    "claim_max_size": lambda env: _count(env, "SDK_CLAIM_MAX_SIZE", 1024**3),
    "claim_ttl": lambda env: _positive(env, "SDK_CLAIM_TTL", 3600.0),
    "status_events": lambda env: _flag(env, "SDK_STATUS_EVENTS", True),
    "nats_token": lambda env: _text(env, "NATS_TOKEN"),
    "nats_user": lambda env: _text(env, "NATS_USER"),
    "nats_password": lambda env: _text(env, "NATS_PASSWORD"),
    "nats_nkey_seed": lambda env: _text(env, "NATS_NKEY_SEED"),
    "nats_creds": lambda env: _file(env, "NATS_CREDS"),
    "nats_tls_ca": lambda env: _file(env, "NATS_TLS_CA"),
    "nats_tls_cert": lambda env: _file(env, "NATS_TLS_CERT"),
    "nats_tls_key": lambda env: _file(env, "NATS_TLS_KEY"),
}


def _from_env(name: str, **kwargs: Any) -> Any:
    """A field whose default is read from ``os.environ`` when the settings are made."""
    read = _READERS[name]
    return attrs.field(factory=lambda: read(os.environ), **kwargs)


@final
@attrs.frozen(slots=True)
class Settings:
    """Everything the SDK reads from the environment.

    ``Settings()`` reads the environment; ``Settings(codec="cbor")`` is the environment
    with that one setting overridden (``NATS_URL`` and the rest still apply). For the
    built-in defaults alone, whatever the environment says: ``Settings.from_env({})``.

    Attributes:
        nats_urls: servers to connect to (``NATS_URL``, comma-separated); empty means
            start an embedded nats-server.
        enable_nats: ``ENABLE_NATS``; false runs on the in-process transport.
        codec: ``CODEC_TYPE``, the codec for messages this process sends: a built-in's
            name or a codec plug-in's (``avro``, ``pip install 'motadata-actors[avro]'``).
        enable_codec: ``ENABLE_CODEC``, the seed API's switch: false makes the seed
            :class:`~motadata_actors.integrations.NatsClient` send payloads as the bytes
            they are and refuse other values (actors always encode).
        enable_otel: ``ENABLE_OTEL``.
        log_export_level: ``SDK_LOG_EXPORT_LEVEL``, ``debug``, ``info``, ``warning``,
            ``error`` or ``critical``: the lowest level of log records exported with
            OpenTelemetry (when telemetry is on and logs are exported); it also lowers the
            library's ``motadata_actors`` logger to that level when it has none of its own.
            Unset: what the logging configuration lets through.
        log_export_root: ``SDK_LOG_EXPORT_ROOT``, export the root logger's records (the
            application's and every library's), not only those of ``motadata_actors``.
        prometheus_port: ``SDK_PROMETHEUS_PORT``, serve a Prometheus scrape endpoint
            (``/metrics``) on this port when telemetry is on (needs
            ``pip install 'motadata-actors[prometheus]'``); 0: any free port; unset: none.
        prometheus_host: ``SDK_PROMETHEUS_HOST``, the address it listens on
            (``127.0.0.1`` by default: loopback only).
        codec_metrics: ``SDK_CODEC_METRICS``, with telemetry on, time every encode and
            decode and record the sizes, per codec (``sdk.codec.*``: four data points per
            ask and reply); ``false`` saves their cost.
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
        compress_above: ``SDK_COMPRESS_ABOVE``, bytes above which a body (tells, asks,
            replies, streamed parts, events, workflow steps) is sent zstd-compressed
            (``Content-Encoding: zstd``; needs ``pip install 'motadata-actors[compress]'``
            on both ends); 0 (the default): off.
        seal_keys: ``SDK_SEAL_KEYS``, ``id:base64key[,id:base64key...]``: bodies are
            sealed (AES-GCM) with the first key and opened with any (never shown; needs
            ``pip install 'motadata-actors[seal]'``).
        claim_above: ``SDK_CLAIM_ABOVE``, bytes above which the body of a tell, an ask or
            a reply travels through the tenant's object store (a claim check) instead of
            in the message; 0 (the default): off, and a body is at most
            ``SDK_MAX_MESSAGE_SIZE``.
        claim_max_size: ``SDK_CLAIM_MAX_SIZE``, the largest body sent through the object
            store (1 GiB by default); it replaces ``SDK_MAX_MESSAGE_SIZE`` while claims are on.
        claim_ttl: ``SDK_CLAIM_TTL``, seconds an object is kept at most (one hour by
            default): what a crashed sender or receiver leaves is gone after it.
        status_events: ``SDK_STATUS_EVENTS``, publish the tenant's status events: each
            agent's life-cycle changes on ``sdk.status.lifecycle.<tenant>`` and handlers'
            ``ctx.progress`` on ``sdk.status.progress.<tenant>`` (one core publish each;
            nobody listening costs nothing more). ``false`` turns both off; progress still
            reaches an asker that asked for it.
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

    nats_urls: tuple[str, ...] = _from_env("nats_urls", repr=_urls_repr)
    enable_nats: bool = _from_env("enable_nats")
    codec: CodecName = _from_env("codec")  # noqa: RUF009 (an attrs field, not a call per instance)
    enable_codec: bool = _from_env("enable_codec")
    enable_otel: bool = _from_env("enable_otel")
    log_export_level: LogLevel | None = _from_env("log_export_level")  # noqa: RUF009
    log_export_root: bool = _from_env("log_export_root")
    prometheus_port: int | None = _from_env("prometheus_port")
    prometheus_host: str = _from_env("prometheus_host")
    codec_metrics: bool = _from_env("codec_metrics")
    ask_timeout: float = _from_env("ask_timeout")
    mailbox_capacity: int = _from_env("mailbox_capacity")
    max_message_size: int = _from_env("max_message_size")
    max_depth: int = _from_env("max_depth")
    max_length: int = _from_env("max_length")
    ask_attempts: int = _from_env("ask_attempts")
    shutdown_grace: float = _from_env("shutdown_grace")
    root_max_restarts: int = _from_env("root_max_restarts")
    root_within: float = _from_env("root_within")
    dlq_max_messages: int = _from_env("dlq_max_messages")
    dlq_max_age: float = _from_env("dlq_max_age")
    durable_max_deliver: int = _from_env("durable_max_deliver")
    durable_ack_wait: float = _from_env("durable_ack_wait")
    durable_backoff: float = _from_env("durable_backoff")
    durable_backoff_max: float = _from_env("durable_backoff_max")
    durable_prefetch: int = _from_env("durable_prefetch")
    durable_retention: Retention = _from_env("durable_retention")  # noqa: RUF009
    durable_max_age: float = _from_env("durable_max_age")
    durable_max_bytes: int = _from_env("durable_max_bytes")
    durable_replicas: int = _from_env("durable_replicas")
    durable_duplicate_window: float = _from_env("durable_duplicate_window")
    reconnect_buffer: int = _from_env("reconnect_buffer")
    max_header_size: int = _from_env("max_header_size")
    replay_window: float = _from_env("replay_window")
    stream_window: int = _from_env("stream_window")
    stream_window_bytes: int = _from_env("stream_window_bytes")
    compress_above: int = _from_env("compress_above")
    seal_keys: str | None = _from_env("seal_keys", repr=secret_repr)
    claim_above: int = _from_env("claim_above")
    claim_max_size: int = _from_env("claim_max_size")
    claim_ttl: float = _from_env("claim_ttl")
    status_events: bool = _from_env("status_events")
    nats_token: str | None = _from_env("nats_token", repr=secret_repr)
    nats_user: str | None = _from_env("nats_user")
    nats_password: str | None = _from_env("nats_password", repr=secret_repr)
    nats_nkey_seed: str | None = _from_env("nats_nkey_seed", repr=secret_repr)
    nats_creds: str | None = _from_env("nats_creds")
    nats_tls_ca: str | None = _from_env("nats_tls_ca")
    nats_tls_cert: str | None = _from_env("nats_tls_cert")
    nats_tls_key: str | None = _from_env("nats_tls_key")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (``os.environ`` when omitted), then ``overrides``.

        Overrides are field names: ``Settings.from_env(durable_max_deliver=2)`` is the same
        as ``Settings(durable_max_deliver=2)``; ``Settings.from_env({})`` gives the
        built-in defaults.

        Raises:
            ConfigError: a variable has a value that cannot be used (the message names
                it), or an override names no setting.
        """
        unknown = sorted(set(overrides) - set(_READERS))
        if unknown:
            raise ConfigError(f"no such setting: {', '.join(unknown)}")
        env = os.environ if environ is None else environ
        values = {
            name: overrides[name] if name in overrides else read(env)
            for name, read in _READERS.items()
        }
        return cls(**values)
