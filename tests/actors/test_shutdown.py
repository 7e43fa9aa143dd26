"""Graceful shutdown under load: every accepted message is handled or dead-lettered, once."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any, ClassVar

import anyio
import pytest

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.mailbox import (
    DEAD_REASON,
    Incoming,
    InProcessTransport,
    Mailbox,
    NatsServer,
    Transport,
)

from ..conftest import connect, stop_child

pytestmark = pytest.mark.anyio


class Slow(Actor):
    handled: ClassVar[list[int]] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        await anyio.sleep(0.01)
        Slow.handled.append(msg)


@pytest.mark.parametrize("kind", ["inprocess", "nats"])
async def test_messages_in_flight_at_shutdown_are_handled_or_dead_lettered(
    kind: str, nats_server: NatsServer, tenant: str
) -> None:
    Slow.handled = []
    transport: Transport = (
        InProcessTransport() if kind == "inprocess" else await connect(nats_server)
    )
    tap: Mailbox[Incoming] = Mailbox(10_000)
    sent = list(range(300))
    async with ActorSystem(
        tenant, transport=transport, settings=Settings(shutdown_grace=0.5)
    ) as system:
        await transport.subscribe(f"sdk.dlq.*.{tenant}", mailbox=tap)
        ref = await system.spawn(Slow, name="slow", concurrency=2)
        for i in sent:
            await ref.tell(i)
    # The system is closed; its transport too. What the tap caught is all there is.
    letters = []
    while tap.statistics().queued:
        letters.append(await tap.receive())
    dead = []
    for letter in letters:
        assert letter.headers is not None
        assert letter.headers[DEAD_REASON].startswith("shutdown:")
        dead.append(int(letter.data))
    assert Slow.handled, "some were handled within the grace"
    assert dead, (
        "the grace (0.5 s for 300 x 10 ms on two workers) ran out: the rest were dead-lettered"
    )
    assert not set(Slow.handled) & set(dead)
    assert sorted(Slow.handled + dead) == sent


# A program written like the README's tour: asyncio.run(main()) around the system.
PROGRAM = """
import asyncio, logging, os, signal, sys
from motadata_actors import Actor, ActorSystem

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

class Slow(Actor):
    async def on_message(self, msg, ctx):
        print("handling", msg, flush=True)
        await asyncio.sleep(0.3)
        print("handled", msg, flush=True)

    async def on_stop(self):
        print("on_stop", flush=True)

async def main(own_handler):
    if own_handler == "signal":
        # os.write, not print: a signal.signal handler runs between any two bytecodes, and
        # a print inside one of the handler's own prints is a reentrant-call error.
        signal.signal(signal.SIGTERM, lambda *_: os.write(1, b"mine\\n"))
    elif own_handler == "loop":
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, lambda: print("mine", flush=True))
    async with ActorSystem(sys.argv[1]) as system:
        ref = await system.spawn(Slow, name="slow")
        for i in range(6):
            await ref.tell(i)
        while True:  # awake now and then: a handler from signal.signal runs between steps
            await asyncio.sleep(0.1)
    print("after the block", flush=True)

asyncio.run(main(sys.argv[2]))
"""


def run_program(
    server: NatsServer, tenant: str, own_handler: str = "none"
) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "NATS_URL": server.url, "SDK_SHUTDOWN_GRACE": "0.5"}
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, tenant, own_handler],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "handling 0\n", line + (proc.stderr.read() if proc.stderr else "")
    return proc


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_signal_stops_a_plain_program_gracefully_without_a_traceback(
    nats_server: NatsServer, tenant: str, sig: int, code: int
) -> None:
    proc = run_program(nats_server, tenant)
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        stop_child(proc)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    assert f"received {signal.Signals(sig).name}: stopping gracefully" in err
    lines = out.splitlines()
    assert "handled 0" in lines, "the message in flight was drained"
    assert lines[-1] == "on_stop", lines
    assert "after the block" not in lines, "the program ended as the signal asks"
    handled = {int(x.split()[1]) for x in lines if x.startswith("handled ")}
    # What the grace did not cover was dead-lettered: nothing accepted is lost.
    async with ActorSystem(tenant, settings=Settings(nats_urls=(nats_server.url,))) as system:
        letters = await system.dead_letters()
    dead = {int(letter.data) for letter in letters}
    assert dead, "six 0.3 s messages do not fit a 0.5 s grace"
    assert all(letter.reason.startswith("shutdown:") for letter in letters)
    assert handled | dead == set(range(6)) and not handled & dead


@pytest.mark.parametrize("how", ["signal", "loop"])
def test_a_signal_handler_the_program_installed_is_left_alone(
    nats_server: NatsServer, tenant: str, how: str
) -> None:
    proc = run_program(nats_server, tenant, own_handler=how)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line == "mine\n":
                break
        else:
            raise AssertionError("the program's own handler did not run")
        assert proc.poll() is None, "the program still runs: its handler decides"
    finally:
        stop_child(proc)
