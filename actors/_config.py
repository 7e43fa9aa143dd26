"""From :class:`Settings` to what the mailbox layer takes: the one place the two meet.

The mailbox layer takes only the values it uses (servers, credentials, durable limits);
the actor system, the command line and the seed API read them from the settings here.
"""

from __future__ import annotations

from collections.abc import Sequence

from motadata_actors._settings import Settings
from motadata_actors.codecs import Limits
from motadata_actors.mailbox import DurableConfig, NatsAuth, NatsTransport, inbox_prefix

__all__ = ("codec_limits", "durable_config", "nats_auth", "nats_transport")


def durable_config(settings: Settings) -> DurableConfig:
    """The ``SDK_DURABLE_*`` settings."""
    return DurableConfig(
        max_deliver=settings.durable_max_deliver,
        ack_wait=settings.durable_ack_wait,
        backoff=settings.durable_backoff,
        backoff_max=settings.durable_backoff_max,
        prefetch=settings.durable_prefetch,
        retention=settings.durable_retention,
        max_age=settings.durable_max_age,
        max_bytes=settings.durable_max_bytes,
        replicas=settings.durable_replicas,
        duplicate_window=settings.durable_duplicate_window,
    )


def nats_auth(settings: Settings) -> NatsAuth:
    """The ``NATS_TOKEN``, ``NATS_USER``, ``NATS_NKEY_SEED``, ``NATS_TLS_*`` ... settings."""
    return NatsAuth(
        token=settings.nats_token,
        user=settings.nats_user,
        password=settings.nats_password,
        nkey_seed=settings.nats_nkey_seed,
        creds=settings.nats_creds,
        tls_ca=settings.nats_tls_ca,
        tls_cert=settings.nats_tls_cert,
        tls_key=settings.nats_tls_key,
    )


def nats_transport(
    settings: Settings, tenant: str, *, name: str, servers: Sequence[str] | None = None
) -> NatsTransport:
    """A transport for ``tenant`` as the settings say.

    ``NATS_URL`` (unless ``servers`` is given), the tenant's inbox prefix, credentials, TLS
    and the reconnect buffer.
    """
    return NatsTransport(
        servers if servers is not None else settings.nats_urls,
        name=name,
        inbox_prefix=inbox_prefix(tenant),
        reconnect_buffer=settings.reconnect_buffer,
        auth=nats_auth(settings),
    )


def codec_limits(settings: Settings) -> Limits:
    """``SDK_MAX_MESSAGE_SIZE``, ``SDK_MAX_DEPTH`` and ``SDK_MAX_LENGTH``."""
    return Limits(
        max_size=settings.max_message_size,
        max_depth=settings.max_depth,
        max_length=settings.max_length,
    )
