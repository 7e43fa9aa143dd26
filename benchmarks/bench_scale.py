"""Ask throughput with one, two and three responder processes, on one server and a cluster.

The asker sends 100 asks in flight to ``echo``; the responders are ``ours`` children
(:class:`~motadata_actors.benchmarks.responder.ResponderProcess`) sharing the agent name
(a queue group). Each replica count is a side of its own, with a tenant of its own, and
all children run for the whole scenario, so the sides can take turns like any other. The
check after the scenario is that each side's replicas together answered every ask once.
On the three-node cluster each responder connects to its own node and the asker to the
first. Two cores bound this machine: with the asker, the servers and the responders all on
them, more replicas mostly show the cost of sharing them, which is the honest figure here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from .ledger import Ledger, ScenarioNames, Target
from .measure import Samples, Side, measure
from .responder import ResponderProcess
from .sides import our_ask

__all__ = ("REPLICAS", "scale_samples")

REPLICAS = (1, 2, 3)


async def scale_samples(
    ledger: Ledger,
    scenario: str,
    asker_url: str,
    responder_urls: Sequence[str],
    names: dict[int, ScenarioNames],
    *,
    repeats: int,
    min_seconds: float,
    progress: Callable[[str], None] | None = None,
) -> dict[int, Samples]:
    """Asks per second by number of responder processes (``names``: one per count)."""
    async with contextlib.AsyncExitStack() as stack:
        groups: dict[int, list[str]] = {}
        for replicas in REPLICAS:
            tenant = names[replicas].tenant
            for i in range(replicas):
                url = responder_urls[i % len(responder_urls)]
                child = await stack.enter_async_context(
                    ResponderProcess.start(url, "ours", [tenant])
                )
                counter = child.counters[tenant]
                stack.enter_context(ledger.serving(counter))
                groups.setdefault(replicas, []).append(counter.name)
        sides = []
        for replicas in REPLICAS:
            batch = await stack.enter_async_context(
                our_ask(asker_url, names[replicas].tenant, "x" * 126, 100, None)
            )
            label = f"{replicas} responder process{'es' if replicas > 1 else ''}"
            target = Target(label, frozenset(groups[replicas]))
            sides.append(Side(str(replicas), batch, target, start=100))
        async with ledger.scenario(scenario, [s.target for s in sides]):
            samples = await measure(
                sides, repeats=repeats, min_seconds=min_seconds, progress=progress
            )
    return {int(key): value for key, value in samples.items()}
