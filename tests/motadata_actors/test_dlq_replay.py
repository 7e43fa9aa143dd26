"""Replaying a dead-lettered ask: a tell, without the asker's long-past deadline."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import pytest

from motadata_actors import Actor, ActorSystem, Context, NoResponders, Settings
from motadata_actors._dlq import replay_dead_letters
from motadata_actors.mailbox import NatsServer

from ..conftest import wait_for

pytestmark = pytest.mark.anyio


class Recorder(Actor):
    """Records what a handler knows of each message it gets."""

    seen: ClassVar[list[dict[str, Any]]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        Recorder.seen.append(
            {"msg": msg, "deadline": ctx.deadline, "ask": ctx.is_ask, "attempt": ctx.attempt}
        )


async def test_a_replayed_ask_is_a_tell_with_no_deadline(
    fresh_nats_server: NatsServer, tenant: str
) -> None:
    # A server of its own: a subscriber of another test on sdk.> would answer for nobody.
    settings = Settings(nats_urls=(fresh_nats_server.url,), ask_attempts=2)
    async with ActorSystem(tenant, settings=settings) as system:
        # Nobody serves "later" yet: both attempts of the ask fail, and it is dead-lettered
        # with its Sdk-Timeout-Ms and Sdk-Attempt.
        with pytest.raises(NoResponders):
            await system.ref("later").ask("do it", timeout=0.3)
        letters = await system.dead_letters()  # stored before the ask raised
        assert [letter.to for letter in letters] == ["later"]
        assert {"Sdk-Timeout-Ms", "Sdk-Attempt"} <= set(letters[0].headers)
        await system.spawn(Recorder, name="later")
        out = io.StringIO()
        assert await replay_dead_letters(settings, tenant, [], keep=False, out=out) == 1
        await wait_for(lambda: len(Recorder.seen) == 1, 5, "the replayed message")
        assert Recorder.seen == [{"msg": "do it", "deadline": None, "ask": False, "attempt": 1}]
        assert await system.dead_letters() == []
