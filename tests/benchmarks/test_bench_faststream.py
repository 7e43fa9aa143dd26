"""The FastStream peer sides answer every message once, on a real nats-server (small n)."""

from __future__ import annotations

import pytest

from motadata_actors.benchmarks import sides, suite
from motadata_actors.benchmarks.ledger import Ledger, MeasurementError, Tally, Target
from motadata_actors.mailbox import NatsServer

pytestmark = pytest.mark.anyio

PAYLOAD = "x" * 126


async def test_faststream_tell_counts_each_message_once(
    nats_server: NatsServer, tenant: str
) -> None:
    tally = Tally("FastStream subscriber")
    async with sides.faststream_tell(nats_server.url, f"bench.{tenant}", PAYLOAD, tally) as batch:
        first = await batch(50)
        second = await batch(200)
    assert (first.sent, second.sent) == (50, 200)
    assert tally.count == 250


@pytest.mark.parametrize("in_flight", [1, 20])
async def test_faststream_ask_answers_each_request_once_with_its_input(
    nats_server: NatsServer, tenant: str, in_flight: int
) -> None:
    tally = Tally("FastStream responder")
    subject = f"bench.{tenant}"
    async with sides.faststream_ask(nats_server.url, subject, PAYLOAD, in_flight, tally) as batch:
        timing = await batch(45)
    assert timing.sent == 45 and tally.count == 45
    # Sequential asks time each one (the p50 rows); waves of asks do not.
    assert len(timing.latencies) == (45 if in_flight == 1 else 0)


async def test_faststream_echo_replies_with_what_it_got(
    nats_server: NatsServer, tenant: str
) -> None:
    from faststream.nats import NatsBroker

    tally = Tally("FastStream responder")
    subject = f"bench.{tenant}"
    async with (
        sides.faststream_ask(nats_server.url, subject, PAYLOAD, 1, tally),
        NatsBroker(nats_server.url, logger=None) as client,
    ):
        reply = await client.request("hello", subject, timeout=5)
        assert await reply.decode() == "hello"
    assert tally.count == 1


async def test_the_ledger_catches_a_raw_subscriber_sharing_the_peers_subject(
    nats_server: NatsServer, tenant: str
) -> None:
    subject = f"bench.{tenant}"
    peer, raw = Tally("FastStream subscriber"), Tally("raw subscriber")
    ledger = Ledger()
    target = Target("FastStream", frozenset({peer.name}))
    with ledger.serving(peer, raw), pytest.raises(MeasurementError) as caught:
        async with (
            sides.raw_tell(nats_server.url, subject, b'""', None, raw),
            sides.faststream_tell(nats_server.url, subject, PAYLOAD, peer) as batch,
            ledger.scenario("shared subject", [target]),
        ):
            target.sent += (await batch(30)).sent
    assert "'raw subscriber' handled 30 messages meant for another responder" in str(caught.value)


def test_every_scenario_gives_the_peer_a_subject_of_its_own() -> None:
    plan = suite.scenario_plan("r1", suite.Config.for_run(quick=False, loops=("asyncio",)))
    for names in plan.values():
        assert names.peer in names.subjects
        assert names.peer not in (names.raw_headers, names.raw_bare)
