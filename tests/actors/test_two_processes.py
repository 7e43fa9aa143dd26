"""An actor in one OS process asks an actor in another, through a nats-server the test starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from motadata_actors import ActorSystem, RemoteError, Settings
from motadata_actors.mailbox import NatsServer

pytestmark = pytest.mark.anyio

RESPONDER = textwrap.dedent(
    """
    import asyncio, os, sys
    from motadata_actors import Actor, ActorSystem

    class Echo(Actor):
        async def on_message(self, msg, ctx):
            if msg == "fail":
                raise ValueError("refused in pid %d" % os.getpid())
            return {"echo": msg, "pid": os.getpid(), "from": ctx.sender}

    async def main():
        async with ActorSystem(sys.argv[1]) as system:
            await system.spawn(Echo, name="echo")
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


async def test_ask_across_processes(
    fresh_nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    env = {"NATS_URL": fresh_nats_server.url, "PATH": "/usr/bin:/bin"}
    with subprocess.Popen(
        [sys.executable, "-c", RESPONDER, tenant],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    ) as other:
        await _ask_the_other(other, fresh_nats_server, tenant)


async def _ask_the_other(other: subprocess.Popen[str], server: NatsServer, tenant: str) -> None:
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "ready"
        settings = Settings(nats_urls=(server.url,))
        async with ActorSystem(tenant, settings=settings) as system:
            assert system.embedded_server is None
            reply = await system.ref("echo").ask("hello", timeout=5)
            assert reply == {"echo": "hello", "pid": other.pid, "from": "client"}
            with pytest.raises(RemoteError, match=f"refused in pid {other.pid}"):
                await system.ref("echo").ask("fail", timeout=5)
        other.stdin.close()
        assert other.wait(15) == 0
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
