"""``dlq list | replay | drop``: a letter leaves the store only once a live mailbox took it."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import msgpack
import pytest

from motadata_actors import Actor, ActorSystem, ConfigError, Context, NoResponders, Settings
from motadata_actors.__main__ import main
from motadata_actors._dlq import drop_dead_letters, list_dead_letters, replay_dead_letters
from motadata_actors.mailbox import CONTENT_TYPE, KeepsDeadLetters, NatsServer, dlq_subject

from ..conftest import wait_for

pytestmark = pytest.mark.anyio


class Recorder(Actor):
    """Records what a handler knows of each message it gets; fails on "bad"."""

    seen: ClassVar[list[dict[str, Any]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Recorder.seen.append(
            {"msg": msg, "deadline": ctx.deadline, "ask": ctx.is_ask, "attempt": ctx.attempt}
        )
        if msg == "bad":
            raise ValueError("still cannot do it")
        return "done"


@pytest.fixture
def server() -> Any:
    # A server of its own: a subscriber of another test on sdk.> would answer for nobody.
    with NatsServer() as s:
        yield s


async def dead_letter(system: ActorSystem, to: str, body: Any) -> None:
    """Dead-letter ``body`` for ``to`` as an ask nobody served would be."""
    with pytest.raises(NoResponders):
        await system.ref(to).ask(body, timeout=0.3)


async def test_a_replayed_ask_is_answered_with_a_fresh_deadline_then_removed(
    server: NatsServer, tenant: str
) -> None:
    Recorder.seen = []
    settings = Settings(nats_urls=(server.url,), ask_attempts=2)
    async with ActorSystem(tenant, settings=settings) as system:
        # Nobody serves "later" yet: both attempts of the ask fail, and it is dead-lettered
        # with its Sdk-Timeout-Ms and Sdk-Attempt.
        await dead_letter(system, "later", "do it")
        letters = await system.dead_letters()  # stored before the ask raised
        assert [letter.to for letter in letters] == ["later"]
        assert {"Sdk-Timeout-Ms", "Sdk-Attempt"} <= set(letters[0].headers)
        await system.spawn(Recorder, name="later")
        out = io.StringIO()
        assert await replay_dead_letters(settings, tenant, [], keep=False, out=out) == (1, 0)
        [seen] = Recorder.seen
        # The old deadline and attempt are gone; the replay's own deadline applies.
        assert seen["msg"] == "do it" and seen["ask"] and seen["attempt"] == 1
        assert seen["deadline"] is not None
        assert await system.dead_letters() == []
        assert f"replayed {letters[0].seq} to later" in out.getvalue()


async def test_a_letter_nobody_takes_is_kept_and_said_so(server: NatsServer, tenant: str) -> None:
    """Before: 'replayed 1 to flaky' and the only copy deleted."""
    Recorder.seen = []
    settings = Settings(nats_urls=(server.url,))
    async with ActorSystem(tenant, settings=settings) as system:
        await dead_letter(system, "flaky", "one")
        await dead_letter(system, "flaky", "two")
        await dead_letter(system, "later", "three")
        await dead_letter(system, "later", "bad")
        await system.spawn(Recorder, name="later")
        before = await system.dead_letters()
        out = io.StringIO()
        replayed, kept = await replay_dead_letters(
            settings, tenant, [], keep=False, timeout=2.0, out=out
        )
        text = out.getvalue()
        assert (replayed, kept) == (1, 3), text
        left = await system.dead_letters()
        assert [(d.seq, d.to) for d in left] == [
            (d.seq, d.to) for d in before if d.to == "flaky" or d.data == b'"bad"'
        ]
        for letter in left:
            assert f"kept {letter.seq} (to {letter.to}):" in text
        assert "NoResponders" in text
        assert "the handler failed in 'later': ValueError: still cannot do it" in text
        assert "1 dead letter(s) replayed, 3 failed" in text
        # The command line says so with its exit code.
        assert await replay_dead_letters(settings, tenant, [999], keep=False, out=out) == (0, 1)


def test_the_replay_command_exits_non_zero_when_a_letter_stays(
    server: NatsServer, tenant: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import anyio

    async def prepare() -> None:
        async with ActorSystem(tenant, settings=Settings(nats_urls=(server.url,))) as system:
            await dead_letter(system, "nobody", "x")

    anyio.run(prepare)
    monkeypatch.setenv("NATS_URL", server.url)
    assert main(["dlq", "replay", "--tenant", tenant, "--timeout", "1"]) == 1
    assert "kept 1 (to nobody): NoResponders" in capsys.readouterr().out
    assert main(["dlq", "drop", "--tenant", tenant, "--seq", "1"]) == 0
    assert main(["dlq", "replay", "--tenant", tenant]) == 0  # nothing left to fail


async def test_a_letter_to_a_durable_agent_goes_once_stored(
    server: NatsServer, tenant: str
) -> None:
    Recorder.seen = []
    settings = Settings(nats_urls=(server.url,))
    async with ActorSystem(tenant, settings=settings) as system:
        await system.spawn(Recorder, name="keeper", mailbox="durable")
        await system.stop("keeper")  # nobody runs it: the stream keeps what comes
        transport = system.transport
        assert isinstance(transport, KeepsDeadLetters)
        await transport.dead_letters.put(
            dlq_subject("keeper", tenant), b'"kept for later"', {CONTENT_TYPE: "application/json"}
        )
        assert len(await system.dead_letters()) == 1
        out = io.StringIO()
        assert await replay_dead_letters(settings, tenant, [], keep=False, out=out) == (1, 0)
        assert await system.dead_letters() == []
        await system.spawn(Recorder, name="keeper", mailbox="durable")
        await wait_for(lambda: len(Recorder.seen) == 1, 10, "the stored replay")
        assert Recorder.seen[0]["msg"] == "kept for later" and not Recorder.seen[0]["ask"]


async def test_list_shows_bodies_decoded_by_content_type(server: NatsServer, tenant: str) -> None:
    settings = Settings(nats_urls=(server.url,))
    async with ActorSystem(tenant, settings=settings) as system:
        body = msgpack.packb({"order": 7, "items": ["tea"]})
        transport = system.transport
        assert isinstance(transport, KeepsDeadLetters)
        await transport.dead_letters.put(
            dlq_subject("shop", tenant), body, {CONTENT_TYPE: "application/msgpack"}
        )
        out = io.StringIO()
        assert await list_dead_letters(settings, tenant, 10, out=out) == 1
        assert "{'order': 7, 'items': ['tea']}" in out.getvalue()
        assert await drop_dead_letters(settings, tenant, [1], out=out) == 1
        assert await system.dead_letters() == []


async def test_dead_letters_on_a_server_without_jetstream_is_a_config_error(tenant: str) -> None:
    with NatsServer(jetstream=False) as plain:
        async with ActorSystem(tenant, settings=Settings(nats_urls=(plain.url,))) as system:
            with pytest.raises(ConfigError, match="has no JetStream"):
                await system.dead_letters()
