"""Chat sessions: one agent per user, its memory kept across a killed process.

Two worker processes register the keyed agent kind ``chat``
(``system.spawn_keyed(ChatSession, kind="chat")``). The first message to
``system.ref("chat", key="ada")`` activates exactly one ``ChatSession`` for Ada, in one
of the workers; it keeps the conversation in ``self.state`` (a ``@message`` class),
which the system saves after every message, in the tenant's key-value bucket.

On the second turn the session sets a durable reminder (``self.remind``, kept by the
server) to check on Ada's seat a few seconds later. Then this process kills the worker
holding Ada's session (SIGKILL: no goodbye, nothing flushed). Its lease runs out, the next
message activates Ada's session in the other worker, which loads the saved memory and
goes on where the conversation was; and the reminder the dead worker set fires there.

Run it with ``python examples/chat_sessions.py`` (POSIX). It starts an embedded
nats-server on a free loopback port and the two workers
(``python examples/chat_sessions.py worker``), and stops them all at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

from motadata_actors import Actor, ActorSystem, AskPolicy, Context, Reminder, message

TENANT = "acme"
LEASE = 2.0  # seconds: a dead worker's sessions move within about this long


@message("chat.turn.v1")
class Turn:
    """What the user says."""

    text: str


@message("chat.memory.v1")
class Memory:
    """A session's memory: every turn so far."""

    turns: list[str]


class ChatSession(Actor):
    """One user's conversation (``self.key`` is the user)."""

    state = Memory(turns=[])  # the initial state: each new session starts from a copy

    async def on_start(self) -> None:
        """Say where the session lives and what it remembers."""
        print(f"worker {os.getpid()} | session {self.key!r} activated with "
              f"{len(self.state.turns)} remembered turn(s)", flush=True)  # fmt: skip

    async def on_message(self, msg: Any, ctx: Context) -> dict[str, Any]:
        """Remember the turn and answer with the whole conversation."""
        if isinstance(msg, Reminder):  # fired by the server, in whichever worker
            print(f"worker {os.getpid()} | reminder {msg.name!r} for {self.key!r}: "
                  f"{msg.payload}", flush=True)  # fmt: skip
            self.state.turns.append(f"(reminder: {msg.payload})")
            return {"pid": os.getpid(), "answer": "noted"}
        if msg.text == "anything new?":
            return {"pid": os.getpid(), "answer": " / ".join(self.state.turns)}
        self.state.turns.append(msg.text)  # saved after this message, before the reply
        if "seat" in msg.text:
            await self.remind("seat-check", "is the window seat confirmed?", after=4)
        return {
            "pid": os.getpid(),
            "answer": f"turn {len(self.state.turns)}; you said: " + " / ".join(self.state.turns),
        }


async def worker() -> None:
    """A worker process: host the chat kind until stdin closes."""
    async with ActorSystem(TENANT, lease_time=LEASE) as system:
        await system.spawn_keyed(ChatSession, kind="chat", idle_after=120)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def start_worker(url: str) -> subprocess.Popen[str]:
    """Start a worker on the server at ``url``; return once it is ready."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "NATS_URL": url},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def relay(proc: subprocess.Popen[str]) -> None:
    """Print a worker's lines as they come."""
    assert proc.stdout is not None
    while line := await asyncio.to_thread(proc.stdout.readline):
        print(line.rstrip(), flush=True)


async def main() -> None:
    """Talk to Ada's session, kill its worker halfway, and talk on."""
    async with ActorSystem(TENANT, lease_time=LEASE) as system:
        assert system.embedded_server is not None, "run without NATS_URL: this starts a server"
        url = system.embedded_server.url
        workers = {}
        for _ in range(2):
            proc = start_worker(url)
            workers[proc.pid] = proc
        relays = [asyncio.ensure_future(relay(p)) for p in workers.values()]
        print(f"main | two workers: {sorted(workers)}", flush=True)
        # Retry while a dead worker's lease runs out (one attempt a second).
        ada = system.ref(
            "chat", key="ada", ask=AskPolicy(timeout=15, attempt_timeout=1, attempts=15)
        )
        try:
            reply: dict[str, Any] = {}
            for text in ("hello", "I'd like a window seat"):
                reply = await ada.ask(Turn(text=text))
                print(f"main | {reply['answer']}  (worker {reply['pid']})", flush=True)
            holder = workers[reply["pid"]]
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            print(f"main | killed worker {holder.pid}, which held Ada's session", flush=True)
            for text in ("and a vegetarian meal", "thanks!"):
                reply = await ada.ask(Turn(text=text))
                print(f"main | {reply['answer']}  (worker {reply['pid']})", flush=True)
            assert reply["pid"] != holder.pid
            print("main | the conversation went on in the other worker, memory intact",
                  flush=True)  # fmt: skip
            deadline = asyncio.get_running_loop().time() + 30
            while "(reminder:" not in reply["answer"]:  # the reminder the dead worker set
                assert asyncio.get_running_loop().time() < deadline, "the reminder never fired"
                await asyncio.sleep(0.5)
                reply = await ada.ask(Turn(text="anything new?"))
            print(f"main | memory now: {reply['answer']}", flush=True)
        finally:
            for proc in workers.values():
                if proc.poll() is None:
                    assert proc.stdin is not None
                    proc.stdin.close()  # a clean stop
                    proc.wait(timeout=15)
            await asyncio.gather(*relays, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(worker() if sys.argv[1:] == ["worker"] else main())
