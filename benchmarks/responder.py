"""A responder in its own OS process, for the suite's cross-process ask scenarios.

    python -m motadata_actors.benchmarks.responder NATS_URL raw|ours

``raw`` answers ``bench.raw.ask`` with plain nats-py; ``ours`` runs an ``ActorSystem``
(tenant ``bench``) with an echo actor named ``echo``. It prints ``ready`` once it serves,
and exits when its standard input closes (so it never outlives the suite) or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import CONTENT_TYPE

__all__ = ("RAW_SUBJECT", "main")

RAW_SUBJECT = "bench.raw.ask"


class Echo(Actor):
    """Answers every ask with what it got."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


async def serve(url: str, kind: str) -> None:
    """Serve asks until standard input closes."""
    if kind == "raw":
        import nats

        nc = await nats.connect(url)

        async def reply(msg: Any) -> None:
            await nc.publish(msg.reply, msg.data, headers={CONTENT_TYPE: "application/json"})

        await nc.subscribe(RAW_SUBJECT, cb=reply)
        await nc.flush()
        print("ready", flush=True)
        await _stdin_closed()
        await nc.close()
        return
    async with ActorSystem("bench", settings=Settings(nats_urls=(url,))) as system:
        await system.spawn(Echo, name="echo")
        print("ready", flush=True)
        await _stdin_closed()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``responder NATS_URL raw|ours``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[1] not in ("raw", "ours"):
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(args[0], args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
