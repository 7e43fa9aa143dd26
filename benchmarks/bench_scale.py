"""Ask throughput with one, two and three responder processes, on one server and a cluster.

The asker sends 100 asks in flight to ``echo``; the responders are ``ours`` children
(:mod:`~motadata_actors.benchmarks.responder`) sharing the agent name (a queue group). On
the three-node cluster each responder connects to its own node and the asker to the first.
Two cores bound this machine: with the asker, the servers and the responders all on them,
more replicas mostly show the cost of sharing them, which is the honest figure here.
"""

from __future__ import annotations

import contextlib
from typing import Any

from motadata_actors import Settings
from motadata_actors.mailbox import NatsCluster

__all__ = ("scale_rates",)


async def _rates(asker_url: str, responder_urls: list[str], n: int) -> dict[int, float]:
    from .suite import our_ask, responder_process

    rates: dict[int, float] = {}
    settings = Settings(nats_urls=(asker_url,), mailbox_capacity=n + 10)
    for replicas in (1, 2, 3):
        async with contextlib.AsyncExitStack() as stack:
            for i in range(replicas):
                url = responder_urls[i % len(responder_urls)]
                await stack.enter_async_context(responder_process(url, "ours"))
            rates[replicas] = (await our_ask(settings, n, "x" * 126, 100, local=False))[0]
    return rates


async def scale_rates(server_url: str, n: int) -> dict[str, Any]:
    """Asks per second by number of responder processes: one server, then a cluster."""
    single = await _rates(server_url, [server_url], n)
    with NatsCluster(3) as cluster:
        clustered = await _rates(cluster.urls[0], cluster.urls, n)
    return {"one server": single, "three-node cluster": clustered}
