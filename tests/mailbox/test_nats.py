"""Connecting the NATS transport: malformed URLs.

Every attempt here must end, typed, within a bound: each test runs under an asyncio
timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from motadata_actors import ConfigError
from motadata_actors.integrations import create_nats_client
from motadata_actors.mailbox import NatsTransport

pytestmark = pytest.mark.anyio

BOUND = 20.0  # seconds any failed start may take here, all retries included


SECRET = f"s3cret-{uuid.uuid4().hex}"
MALFORMED = [
    f"nats://user:{SECRET}@127.0.0.1:notaport",
    f"nats://user:{SECRET}@127.0.0.1:99999",
    f"nats://user:{SECRET}@:4222",
    f"{SECRET}@",
    f"nats://{SECRET}@[::1",
    f"nats://user:{SECRET}/x@127.0.0.1:4222",
]


@pytest.mark.parametrize("url", MALFORMED)
async def test_a_malformed_server_url_is_a_config_error_without_its_secret(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = NatsTransport([url], reconnect=False)
    async with asyncio.timeout(BOUND):
        with pytest.raises(ConfigError) as info:
            await transport.start()
        client = create_nats_client(url=url)
        with pytest.raises(ConfigError) as seed_api:
            await client.connect()
    for text in (str(info.value), str(seed_api.value), transport.description, caplog.text):
        assert SECRET not in text
    assert "***" in str(info.value)
