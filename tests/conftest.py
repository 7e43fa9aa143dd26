"""Shared fixtures: real nats-servers on free loopback ports, and both transports.

Every server is started with ``-p -1`` (the server picks a free port and reports it
in a ports file) and a unique ``server_name``; clients check they reached that very
server, so a stray server on the machine can never answer for it. Servers are
stopped by pid when the fixture ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from motadata_actors import ActorSystem, Settings
from motadata_actors.mailbox import InProcessTransport, NatsServer, NatsTransport, Transport


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once when the editable install predates a module (strict mode links files)."""
    import motadata_actors

    installed = Path(motadata_actors.__file__).parent
    root = Path(__file__).resolve().parents[1]
    for folder, package in PACKAGE_FOLDERS.items():
        for source in (root / folder).glob("*.py"):
            if not (installed / package / source.name).exists():
                pytest.exit(
                    f"{folder}/{source.name} is not in the installed package: the editable "
                    "install links files, so a new module needs `.venv/bin/pip install -e "
                    "'.[dev]'` again",
                    returncode=4,
                )


PACKAGE_FOLDERS = {
    "motadata_actors": "",
    "actors": "actors",
    "mailbox": "mailbox",
    "codecs": "codecs",
    "telemetry": "telemetry",
    "benchmarks": "benchmarks",
}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server (JetStream on) shared by the session; tests use unique tenants."""
    with NatsServer(server_name=f"test-{uuid.uuid4().hex[:10]}") as server:
        yield server


@pytest.fixture
def fresh_nats_server() -> Iterator[NatsServer]:
    """A nats-server of the test's own, for tests that stop or restart it."""
    with NatsServer(server_name=f"test-{uuid.uuid4().hex[:10]}") as server:
        yield server


async def connect(server: NatsServer, **kwargs: object) -> NatsTransport:
    """Connect a NatsTransport and check it reached ``server`` (by its server_name)."""
    transport = NatsTransport([server.url], **kwargs)  # type: ignore[arg-type]
    await transport.start()
    assert transport.server_name == server.server_name, "connected to a stray server"
    return transport


@pytest.fixture(params=["inprocess", "nats"])
async def transport(
    request: pytest.FixtureRequest, nats_server: NatsServer
) -> AsyncIterator[Transport]:
    """Each transport in turn: the contract suite runs unchanged against both."""
    t: Transport
    if request.param == "nats":
        t = await connect(nats_server)
    else:
        t = InProcessTransport()
        await t.start()
    try:
        yield t
    finally:
        await t.aclose()


@contextlib.asynccontextmanager
async def system_on(
    transport: str, server: NatsServer, tenant: str, **kwargs: Any
) -> AsyncIterator[ActorSystem]:
    """An ActorSystem on ``transport`` (``inprocess`` or ``nats``: ``server``), no signals."""
    if transport == "nats":
        bus: Transport = await connect(server)
        settings = Settings()
    else:
        bus, settings = InProcessTransport(), Settings(enable_nats=False)
    async with ActorSystem(
        tenant, transport=bus, settings=settings, handle_signals=False, **kwargs
    ) as system:
        yield system


@pytest.fixture
def tenant() -> str:
    """A tenant id no other test uses, so tests can share one server."""
    return f"t{uuid.uuid4().hex[:10]}"


def start_child(script: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Run ``python -c script args...`` and wait for it to print ``ready``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def durable_agent_script(actor_class: str, name: str) -> str:
    """A child program that runs ``actor_class`` (its source, a class ``Agent``) as a
    durable agent ``name`` of tenant ``argv[1]`` until its stdin closes; says ``ready``."""
    return (
        "import asyncio, os, sys\n"
        "from motadata_actors import Actor, ActorSystem\n\n"
        + textwrap.dedent(actor_class)
        + "\n\nasync def main():\n"
        "    async with ActorSystem(sys.argv[1]) as system:\n"
        f"        await system.spawn(Agent, name={name!r}, mailbox='durable')\n"
        "        print('ready', flush=True)\n"
        "        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)\n\n"
        "asyncio.run(main())\n"
    )


def stop_child(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` (by its pid) if it still runs; close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def freeze(pid: int) -> None:
    """Stop ``pid`` (SIGSTOP) and return once it is stopped, not merely signalled."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not stop within 10 s of SIGSTOP")
        time.sleep(0.001)


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of the test's own, and the exporter keeping what it ended."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()
