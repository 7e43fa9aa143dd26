"""Responders in their own OS process, for the scenarios answered from another process.

    python -m motadata_actors.benchmarks.responder NATS_URL raw|ours NAME [NAME ...]

``raw`` answers requests on each subject NAME with plain nats-py (:func:`raw_reply`);
``ours`` runs one ``ActorSystem`` per tenant NAME, each with an echo actor named
``echo``. Each NAME is one scenario's, and its answers are counted apart. The child
prints ``ready`` once it serves; each ``count`` line on its standard input is answered
with one JSON line, the answers per NAME so far. It exits when its standard input
closes (so it never outlives the suite) or on SIGTERM.

:class:`ResponderProcess` is the parent's side: it starts the child, reads its counts for
the :class:`~motadata_actors.benchmarks.ledger.Ledger`, and stops it by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, final

from motadata_actors import Actor, ActorSystem, Context, Settings

from .ledger import Tally

__all__ = ("CountingEcho", "ResponderProcess", "main", "raw_reply")


class CountingEcho(Actor):
    """Answers every ask with what it got, counting them in ``tally``."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.tally.count += 1
        return msg


async def raw_reply(nc: Any, msg: Any, tally: Tally) -> None:
    """Answer ``msg`` with its body, counting it in ``tally``.

    The reply has no header, as ours (a JSON reply names no ``Content-Type``).
    """
    tally.count += 1
    await nc.publish(msg.reply, msg.data)


async def _serve_raw(url: str, subjects: Sequence[str], tallies: dict[str, Tally]) -> Any:
    import nats

    nc = await nats.connect(url)
    for subject in subjects:

        async def reply(msg: Any, tally: Tally = tallies[subject]) -> None:
            await raw_reply(nc, msg, tally)

        await nc.subscribe(subject, cb=reply)
    await nc.flush()
    return nc


async def serve(url: str, kind: str, names: Sequence[str]) -> None:
    """Serve asks on ``names`` until standard input closes; report counts when asked."""
    tallies = {name: Tally(name) for name in names}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with contextlib.AsyncExitStack() as stack:
        nc = None
        if kind == "raw":
            nc = await _serve_raw(url, names, tallies)
            stack.push_async_callback(nc.close)
        else:
            settings = Settings(nats_urls=(url,))
            for name in names:
                system = await stack.enter_async_context(ActorSystem(name, settings=settings))
                await system.spawn(functools.partial(CountingEcho, tallies[name]), name="echo")
        print("ready", flush=True)
        while line := await reader.readline():
            if line.strip() == b"count":
                if nc is not None:
                    await nc.flush()  # what the server sent us before now is in our queues
                counts = {name: tally.count for name, tally in tallies.items()}
                print(json.dumps(counts), flush=True)


@final
class _RemoteTally:
    """One NAME of a responder process, as a ledger counter."""

    def __init__(self, process: ResponderProcess, slot: str) -> None:
        self.process = process
        self.slot = slot
        self.name = f"{process.kind} responder in process {process.pid} ({slot})"

    async def handled(self) -> int:
        return (await self.process.counts())[self.slot]


@final
class ResponderProcess:
    """A responder child process: its counters for the ledger, its counts on demand."""

    def __init__(self, proc: asyncio.subprocess.Process, kind: str, names: Sequence[str]):
        self._proc = proc
        self._lock = asyncio.Lock()
        self.kind = kind
        self.pid = proc.pid
        self.counters = {name: _RemoteTally(self, name) for name in names}
        """One ledger counter per NAME the child serves."""

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, url: str, kind: str, names: Sequence[str]
    ) -> AsyncIterator[ResponderProcess]:
        """Run a ``raw`` or ``ours`` responder serving ``names``; stop it by its pid."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "motadata_actors.benchmarks.responder", url, kind, *names,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"the {kind} responder did not start (exit {proc.returncode})")
            yield cls(proc, kind, names)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()  # it exits when its stdin closes
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def counts(self) -> dict[str, int]:
        """Answers per NAME so far, as the child counted them."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        async with self._lock:
            self._proc.stdin.write(b"count\n")
            await self._proc.stdin.drain()
            line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"the {self.kind} responder {self.pid} exited")
        counts: dict[str, int] = json.loads(line)
        return counts


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``responder NATS_URL raw|ours NAME [NAME ...]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] not in ("raw", "ours"):
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(args[0], args[1], args[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
