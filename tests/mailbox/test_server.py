"""The nats-server process: started on a free loopback port, stopped by pid, never orphaned."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from motadata_actors import ActorSystem, ConnectionLost, Settings
from motadata_actors.mailbox import NatsCluster, NatsServer, _server, find_nats_server

NATS_DEFAULT_PORT = 4222  # the port a test must never take


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers signal 0; look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_binary_comes_from_the_wheel() -> None:
    path = find_nats_server()
    assert os.access(path, os.X_OK)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("nats-server: v")


def test_server_listens_on_loopback_and_is_stopped_by_pid() -> None:
    server = NatsServer(server_name="lifecycle-check")
    server.start()
    pid, tmp = server.pid, server.tmp_dir
    assert pid is not None and tmp is not None
    try:
        assert server.url.startswith("nats://127.0.0.1:")
        assert int(server.url.rpartition(":")[2]) != NATS_DEFAULT_PORT
        assert tmp.is_dir()
    finally:
        server.stop()
    assert wait_gone(pid)
    assert not tmp.exists()
    with pytest.raises(ConnectionLost):
        server.url  # noqa: B018


def test_two_servers_get_different_ports() -> None:
    with NatsServer() as a, NatsServer() as b:
        assert a.url != b.url


def test_bad_arguments_fail_with_the_servers_own_words() -> None:
    server = NatsServer(args=["--no-such-flag"])
    with pytest.raises(ConnectionLost, match="exited with code"):
        server.start()
    assert server.pid is None


pytestmark_anyio = pytest.mark.anyio


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["normal", "exception", "cancelled"])
async def test_embedded_server_is_gone_after_the_system_exits(how: str, tenant: str) -> None:
    seen: dict[str, object] = {}
    running = anyio.Event()

    async def run() -> None:
        async with ActorSystem(tenant, settings=Settings()) as system:
            server = system.embedded_server
            assert server is not None
            seen["pid"], seen["dir"] = server.pid, server.tmp_dir
            assert Path(str(seen["dir"])).is_dir()
            if how == "exception":
                raise LookupError("the program failed")
            if how == "cancelled":
                running.set()
                await anyio.sleep(30)  # cancelled from outside, once running

    if how == "exception":
        with pytest.raises(LookupError):
            await run()
    elif how == "cancelled":
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(30):
                await running.wait()
            tg.cancel_scope.cancel()
    else:
        await run()
    pid = seen["pid"]
    assert isinstance(pid, int)
    assert wait_gone(pid)
    assert not Path(str(seen["dir"])).exists()


def test_embedded_server_dies_with_its_owner_on_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from motadata_actors import ActorSystem, Settings

        async def main():
            async with ActorSystem("owner", settings=Settings()) as system:
                print(system.embedded_server.tmp_dir, flush=True)
                print(system.embedded_server.pid, flush=True)
                await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    ) as owner:
        assert owner.stdout is not None
        left = Path(owner.stdout.readline().strip())
        _kill_owner_and_check(owner)
    # SIGKILL ran no cleanup: the directory stays until the next server starts.
    assert left.name.startswith("motadata-nats-") and left.is_dir()
    with NatsServer() as server:
        assert server.tmp_dir is not None and server.tmp_dir.is_dir()
        assert not left.exists(), "the next start did not remove the dead owner's directory"


def _kill_owner_and_check(owner: subprocess.Popen[str]) -> None:
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line.strip().isdigit(), f"owner printed {line!r}"
        server_pid = int(line)
        assert alive(server_pid)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        assert wait_gone(server_pid), "nats-server outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_route_ports_are_distinct_free_and_never_the_kernels_pick() -> None:
    low, _ = _server._ephemeral_range()
    ports = _server._route_ports(50)
    assert len(set(ports)) == 50
    assert all(1024 <= p < low and p != NATS_DEFAULT_PORT for p in ports)


def test_a_cluster_whose_route_port_is_taken_starts_on_new_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = _server._route_ports
    picks = [[taken.getsockname()[1], *real(2)]]

    def first_taken(count: int) -> list[int]:
        return picks.pop() if picks else real(count)

    monkeypatch.setattr(_server, "_route_ports", first_taken)
    try:
        with NatsCluster(3) as cluster:
            assert not picks  # the taken port was offered, and refused by the server
            assert taken.getsockname()[1] not in cluster._route_ports
            assert len(cluster.urls) == 3
    finally:
        taken.close()
