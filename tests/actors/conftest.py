"""Fixtures of the actor tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from motadata_actors import ActorSystem, Settings
from motadata_actors.mailbox import InProcessTransport


@pytest.fixture
async def system(tenant: str) -> AsyncIterator[ActorSystem]:
    """An actor system on the in-process transport (tests that need no server)."""
    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=Settings(enable_nats=False)
    ) as system:
        yield system
