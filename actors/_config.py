"""From :class:`Settings` to what the mailbox layer takes: the one place the two meet.

The mailbox layer takes only the values it uses (servers, credentials, durable limits);
the actor system, the command line and the seed API read them from the settings here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings
from motadata_actors.codecs import Limits
from motadata_actors.mailbox import DurableConfig, NatsAuth, NatsTransport, inbox_prefix

__all__ = ("codec_limits", "durable_config", "nats_auth", "nats_transport", "require_nats")


def durable_config(settings: Settings) -> DurableConfig:
    """The ``SDK_DURABLE_*`` settings (each field is the setting ``durable_<field>``)."""
    return DurableConfig(**_prefixed(settings, "durable_", DurableConfig))


def nats_auth(settings: Settings) -> NatsAuth:
    """The ``NATS_TOKEN``, ``NATS_USER``, ``NATS_NKEY_SEED``, ``NATS_TLS_*`` ... settings."""
    return NatsAuth(**_prefixed(settings, "nats_", NatsAuth))


def _prefixed(settings: Settings, prefix: str, target: type) -> dict[str, Any]:
    return {f.name: getattr(settings, prefix + f.name) for f in attrs.fields(target)}


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


def require_nats(settings: Settings, who: str) -> None:
    """Refuse a tool that asks the processes over NATS when the settings name no server.

    ``who`` names the tool in the message: ``status``, ``the dashboard``...

    Raises:
        ConfigError: ``ENABLE_NATS`` is false or ``NATS_URL`` is not set.
    """
    if not settings.enable_nats or not settings.nats_urls:
        raise ConfigError(f"{who} asks the processes over NATS: set NATS_URL to their server")


def codec_limits(settings: Settings) -> Limits:
    """The body size, depth and length bounds of every codec.

    ``SDK_MAX_MESSAGE_SIZE`` (``SDK_CLAIM_MAX_SIZE`` while claims are on: a body over
    ``SDK_CLAIM_ABOVE`` travels through the object store), ``SDK_MAX_DEPTH`` and
    ``SDK_MAX_LENGTH``.
    """
    claims = settings.claim_above > 0
    return Limits(
        max_size=settings.claim_max_size if claims else settings.max_message_size,
        max_depth=settings.max_depth,
        max_length=settings.max_length,
    )
