"""Keyed agents across real processes: one killed, one paused past its lease.

Each child process hosts the kind ``acct``; every instance keeps the ids of the deposits
it handled in its state, and every process logs its activations, deactivations and
handled messages (with its pid and the fencing token) to a file of its own. The parent
sends deposits with unique ids from concurrent senders, retrying by the ask policy.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from motadata_actors import ActorSystem, AskPolicy, AskTimeout, RemoteError
from motadata_actors.mailbox import NatsServer

from ..conftest import connect, start_child, stop_child, wait_for

pytestmark = pytest.mark.anyio

LEASE = 2.0

CHILD = """
import asyncio, os, sys, time
from motadata_actors import Actor, ActorSystem

log = open(sys.argv[2], "a", buffering=1)

def note(*words):
    log.write(" ".join(str(w) for w in (time.time(), os.getpid(), *words)) + "\\n")

class Account(Actor):
    state = {"ids": []}

    async def on_start(self):
        note("activated", self.key, self._sdk_state.revision)

    async def on_stop(self):
        note("deactivated", self.key)

    async def on_message(self, msg, ctx):
        if msg != "read":
            if msg not in self.state["ids"]:
                self.state["ids"].append(msg)
            note("handled", self.key, msg)
        return self.state["ids"]

async def watch(system):
    while not any(e.kind == "lease_lost" for e in system.events()):
        await asyncio.sleep(0.05)
    note("lease_lost", "-")

async def main():
    async with ActorSystem(sys.argv[1], lease_time=float(sys.argv[3])) as system:
        await system.spawn_keyed(Account, kind="acct", idle_after=60)
        watcher = asyncio.ensure_future(watch(system))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        watcher.cancel()

asyncio.run(main())
"""


def _start(tenant: str, log: Path, server: NatsServer) -> subprocess.Popen[str]:
    env = {"NATS_URL": server.url, "PYTHONPATH": os.getcwd()}
    return start_child(CHILD, tenant, str(log), str(LEASE), env=env)


def _events(logs: list[Path]) -> list[tuple[float, int, str, str, str]]:
    out = []
    for path in logs:
        for line in path.read_text().splitlines():
            at, pid, what, key, *rest = line.split()
            out.append((float(at), int(pid), what, key, rest[0] if rest else ""))
    return sorted(out)


async def _deposit(
    system: ActorSystem, key: str, dep: str, policy: AskPolicy, acked: set[str]
) -> None:
    try:
        await system.ref("acct", key=key, ask=policy).ask(dep)
    except (AskTimeout, RemoteError):
        return  # not acknowledged: may or may not be kept
    acked.add(dep)


async def _final_state(system: ActorSystem, keys: list[str]) -> dict[str, list[str]]:
    policy = AskPolicy(timeout=10.0, attempt_timeout=0.5, attempts=20)
    out = {}
    for key in keys:
        out[key] = await system.ref("acct", key=key, ask=policy).ask("read")
    return out


def _assert_one_live_activation(events: list[tuple[float, int, str, str, str]], dead: int) -> None:
    """Per key: a later activation starts only after the earlier one ended (or its process
    died), and nothing handles a key while another process holds it."""
    holder: dict[str, tuple[int, float]] = {}  # key -> (pid, since)
    died_at = {e[1]: e[0] for e in events if e[2] == "died"}
    for at, pid, what, key, _ in events:
        if what == "activated":
            held = holder.get(key)
            if held is not None and held[0] != pid:
                assert held[0] == dead and at >= died_at[dead], f"two live activations of {key}"
            holder[key] = (pid, at)
        elif what == "deactivated" and holder.get(key, (0, 0))[0] == pid:
            del holder[key]
        elif what == "handled":
            assert holder.get(key, (pid, 0))[0] == pid, f"{key} handled outside its owner"


async def test_a_killed_process_keys_move_elsewhere_and_nothing_acked_is_lost(
    fresh_nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    logs = [tmp_path / f"p{i}.log" for i in range(3)]
    procs = [_start(tenant, log, fresh_nats_server) for log in logs]
    keys = [f"u{i}" for i in range(200)]
    acked: set[str] = set()
    policy = AskPolicy(timeout=6.0, attempt_timeout=0.5, attempts=12)
    try:
        async with ActorSystem(
            tenant, transport=await connect(fresh_nats_server), handle_signals=False
        ) as system:

            async def sender(n: int, rounds: range) -> None:
                for r in rounds:
                    for key in keys[n::8]:
                        await _deposit(system, key, f"{key}-{r}", policy, acked)

            await asyncio.gather(*(sender(n, range(0, 2)) for n in range(8)))
            victim = procs[0]
            hosts = {e[1] for e in _events(logs) if e[2] == "activated"}
            assert hosts == {p.pid for p in procs}, "keys were not spread over the processes"
            owned = {e[3] for e in _events(logs) if e[1] == victim.pid and e[2] == "activated"}
            assert owned, "the victim held no key"
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = time.time()
            with logs[0].open("a") as f:
                f.write(f"{killed_at} {victim.pid} died - -\n")
            await asyncio.gather(*(sender(n, range(2, 4)) for n in range(8)))
            state = await _final_state(system, keys)
        events = _events(logs)
        lost = [dep for dep in acked if dep not in state[dep.split("-")[0]]]
        assert lost == [], f"{len(lost)} acknowledged deposits lost"
        assert len(acked) >= 0.9 * len(keys) * 4
        moved = {e[3] for e in events if e[2] == "activated" and e[1] != victim.pid}
        assert owned <= moved, "a dead process's key never came back elsewhere"
        first_after = min(e[0] for e in events if e[2] == "activated" and e[3] in owned
                          and e[1] != victim.pid and e[0] > killed_at)  # fmt: skip
        print(f"first takeover {first_after - killed_at:.2f}s after the kill (lease {LEASE}s)")
        _assert_one_live_activation(events, victim.pid)
    finally:
        for proc in procs:
            stop_child(proc)


async def test_a_paused_process_past_its_lease_never_overwrites_newer_state(
    fresh_nats_server: NatsServer, tenant: str, tmp_path: Path
) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = _start(tenant, logs[0], fresh_nats_server)
    policy = AskPolicy(timeout=8.0, attempt_timeout=0.5, attempts=16)
    acked: set[str] = set()
    second = None
    try:
        async with ActorSystem(
            tenant, transport=await connect(fresh_nats_server), handle_signals=False
        ) as system:
            await _deposit(system, "k", "k-0", policy, acked)  # activated in the first
            second = _start(tenant, logs[1], fresh_nats_server)
            first.send_signal(signal.SIGSTOP)
            paused_at = time.time()
            for r in range(1, 4):  # the second takes the key over once the lease expired
                await _deposit(system, "k", f"k-{r}", policy, acked)
            first.send_signal(signal.SIGCONT)
            resumed_at = time.time()
            await wait_for(
                lambda: "lease_lost" in logs[0].read_text(),
                15,
                "the paused process to find it lost its lease",
            )
            for r in range(4, 6):
                await _deposit(system, "k", f"k-{r}", policy, acked)
            state = await _final_state(system, ["k"])
        assert acked == {f"k-{r}" for r in range(6)}
        assert state["k"] == [f"k-{r}" for r in range(6)]  # nothing overwritten or lost
        events = _events(logs)
        late = [e for e in events if e[1] == first.pid and e[2] == "handled" and e[0] > paused_at]
        assert late == [], f"the paused process handled {late} after it lost the key"
        assert second is not None
        takeover = [e for e in events if e[1] == second.pid and e[2] == "activated"]
        # The second took the key while the first was stopped: its lease had expired.
        assert len(takeover) == 1 and paused_at < takeover[0][0] < resumed_at
    finally:
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                stop_child(proc)
