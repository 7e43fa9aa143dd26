"""``python -m motadata_actors streams show | apply``: a tenant's JetStream streams.

``show`` lists the durable mailboxes' stream and, when they exist, the kept events and
workflows; ``apply`` brings the durable mailboxes' stream and consumers to the settings.
"""

from __future__ import annotations

import sys
from typing import TextIO

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings
from motadata_actors.actors._config import durable_config, nats_transport
from motadata_actors.mailbox import (
    NatsTransport,
    check_id,
)

__all__ = ("apply_streams", "show_streams")


def _transport(settings: Settings, tenant: str) -> NatsTransport:
    if not settings.enable_nats or not settings.nats_urls:
        raise ConfigError(
            "durable mailboxes live on the NATS server the actors use: set NATS_URL to it "
            "(and ENABLE_NATS=true)"
        )
    return nats_transport(settings, tenant, name="motadata-actors/streams")


async def show_streams(settings: Settings, tenant: str, out: TextIO = sys.stdout) -> int:
    """Print the tenant's stream and consumers; return how many lines were printed."""
    check_id(tenant, "tenant")
    transport = _transport(settings, tenant)
    await transport.start()
    try:
        lines = await transport.durable.describe(tenant)
    finally:
        await transport.aclose()
    for line in lines or [f"tenant {tenant!r} has no durable mailboxes, events or workflows yet"]:
        print(line, file=out)
    return len(lines)


async def apply_streams(settings: Settings, tenant: str, out: TextIO = sys.stdout) -> int:
    """Set the tenant's stream and consumers to the ``SDK_DURABLE_*`` settings.

    Returns how many changes were made or reported.
    """
    check_id(tenant, "tenant")
    transport = _transport(settings, tenant)
    await transport.start()
    try:
        changes = await transport.durable.apply(
            tenant, durable_config(settings), settings.mailbox_capacity
        )
    finally:
        await transport.aclose()
    for change in changes or ["nothing to change: the stream matches the settings"]:
        print(change, file=out)
    return len(changes)
