"""The package as users see it: public API, layout pitfalls, the command line."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import motadata_actors

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_module_declares_all_and_exports_exist() -> None:
    for info in pkgutil.walk_packages(motadata_actors.__path__, "motadata_actors."):
        if info.name.rsplit(".", 1)[-1].startswith("_") and not info.ispkg:
            continue
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        assert isinstance(getattr(module, "__all__", None), tuple), (
            f"{info.name} has no tuple __all__"
        )
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name} is in __all__ but missing"


def test_public_names_have_docstrings() -> None:
    for name in motadata_actors.__all__:
        obj = getattr(motadata_actors, name)
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_all_errors_share_one_root() -> None:
    errors = [
        getattr(motadata_actors, n)
        for n in motadata_actors.__all__
        if n.endswith("Error")
        or n
        in {"AskTimeout", "NoResponders", "ConnectionLost", "TransportClosed", "MessageTooLarge"}
    ]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, motadata_actors.ActorsError), error


def test_py_typed_ships() -> None:
    assert (Path(motadata_actors.__file__).parent / "py.typed").is_file()


def test_stdlib_codecs_and_mailbox_are_not_shadowed() -> None:
    import codecs
    import mailbox

    # pytest runs from the clone's root in importlib mode: the root is not on
    # sys.path, so these are the standard library's, not our folders.
    assert hasattr(codecs, "lookup")
    assert hasattr(mailbox, "Maildir")
    assert str(ROOT) not in [str(Path(p).resolve()) for p in sys.path if p]


def test_demo_runs_in_process_without_the_workflow(tmp_path: Path) -> None:
    """ENABLE_NATS=false: what needs no JetStream runs, and it says what is left out."""
    env = {k: v for k, v in os.environ.items() if k not in {"NATS_URL", "CODEC_TYPE"}}
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "ENABLE_NATS": "false"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "on the in-process transport (ENABLE_NATS=false)" in out.stdout
    assert "no workflow steps: JetStream keeps them (set ENABLE_NATS=true)" in out.stdout
    assert "planner replied: On actor systems: fact 1" in out.stdout
    assert "monitor saw: researching, writing, completed actor systems (18 words)" in out.stdout


@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_demo_runs_from_the_clone_and_from_elsewhere(where: str, tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in {"NATS_URL", "ENABLE_NATS", "CODEC_TYPE"}
    }
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "demo"],
        cwd=ROOT if where == "root" else tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "embedded nats-server at nats://127.0.0.1:" in text
    for subject in (
        "sdk.agent.client.planner.acme",
        "sdk.agent.planner.researcher.acme",
        "sdk.agent.planner.writer.acme",
        "sdk.agent.planner.monitor.acme",
        "sdk.events.demo_task_completed_v1.acme",
        "sdk.workflow.goal-1.acme",
    ):
        assert subject in text, subject
    assert "stream part 1 " in text and "stream part 19 (end)" in text
    assert "jetstream.api" not in text  # the wiretap leaves JetStream's own traffic out
    assert "planner replied: On actor systems: fact 1" in text
    assert "monitor saw: researching, writing, completed actor systems (18 words)" in text
    assert (
        "tracker followed workflow goal-1: 1. research (3 facts); 2. write (18 words "
        "streamed); 3. publish (task_completed sent)"
    ) in text
    # Where to look next: nothing is exported, and the dashboard is one flag away.
    assert "where to look:\n  telemetry: off (ENABLE_OTEL=true with OTEL_EXPORTER_OTLP" in text
    assert "dashboard: `python -m motadata_actors demo --dashboard`" in text


def test_demo_names_the_metrics_endpoint_it_serves(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "OTEL_"))}
    env.update(ENABLE_OTEL="true", SDK_PROMETHEUS_PORT="0", OTEL_TRACES_EXPORTER="none")
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "demo"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    [line] = [x for x in out.stdout.splitlines() if x.startswith("  telemetry:")]
    assert re.fullmatch(r"  telemetry: Prometheus metrics at http://127\.0\.0\.1:\d+/metrics", line)


def test_demo_with_the_dashboard_keeps_the_agents_on_a_live_page_until_interrupted() -> None:
    import signal

    import httpx

    env = {k: v for k, v in os.environ.items() if k not in {"NATS_URL", "ENABLE_NATS"}}
    with subprocess.Popen(
        [sys.executable, "-m", "motadata_actors", "demo", "--dashboard"],
        stdout=subprocess.PIPE, text=True, env=env,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            lines = iter(proc.stdout.readline, "")
            line = next(x for x in lines if x.startswith("  dashboard: http://127.0.0.1:"))
            url = line.split()[1]
            agents = {"planner", "researcher", "writer", "monitor", "tracker"}
            deadline = time.monotonic() + 15
            while True:  # the page polls the processes every second
                snapshot = httpx.get(f"{url}/api/tenants/acme", timeout=10).json()
                names = {agent["name"] for agent in snapshot["agents"]}
                if agents <= names or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert agents <= names
            assert proc.poll() is None  # the agents stay up behind the page
            proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop, 128 + SIGINT
            assert proc.wait(30) == 130
        finally:
            if proc.poll() is None:
                proc.kill()


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "demo" in out.stdout and "server" in out.stdout


def test_bad_configuration_is_one_clear_line() -> None:
    env = dict(os.environ, CODEC_TYPE="yaml")
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: CODEC_TYPE='yaml'")
    assert "Traceback" not in out.stderr


def test_server_command_prints_the_url_and_stops_on_sigterm() -> None:
    import signal

    with subprocess.Popen(
        [sys.executable, "-m", "motadata_actors", "server"], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("nats-server running (pid ")
            server_pid = int(first.split("pid ")[1].split(")")[0])
            export = proc.stdout.readline().strip()
            assert export.startswith("export NATS_URL=nats://127.0.0.1:")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert "nats-server stopped" in proc.stdout.read()
            with pytest.raises(ProcessLookupError):
                os.kill(server_pid, 0)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_dlq_list_and_replay_against_a_shared_server(tmp_path: Path) -> None:
    """Dead letters outlive the process that made them; the CLI lists and replays them."""
    from motadata_actors.mailbox import NatsServer

    script = """
import asyncio, sys
from motadata_actors import Actor, ActorSystem

class Picky(Actor):
    async def on_message(self, msg, ctx):
        if msg == "bad" and sys.argv[1] == "fail":
            raise ValueError("refused")
        print("handled", msg, ctx.sender, flush=True)

async def main():
    async with ActorSystem("shop") as system:
        ref = await system.spawn(Picky, name="picky")
        print("ready", flush=True)
        if sys.argv[1] == "fail":
            await ref.tell("bad")
            await ref.tell("bad")
            for _ in range(200):  # until both crashes are dead-lettered (10 s at most)
                if len(await system.dead_letters()) >= 2:
                    break
                await asyncio.sleep(0.05)
        else:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""
    with NatsServer() as server:
        env = {k: v for k, v in os.environ.items() if k not in {"ENABLE_NATS", "CODEC_TYPE"}}
        env["NATS_URL"] = server.url
        run = lambda *args: subprocess.run(  # noqa: E731
            [sys.executable, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert run("-c", script, "fail").returncode == 0
        listed = run("-m", "motadata_actors", "dlq", "list", "--tenant", "shop")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("2 dead letter(s) of tenant 'shop'")
        assert "handler crashed: ValueError: refused" in listed.stdout
        first_seq = listed.stdout.splitlines()[2].split()[0]
        # Replay one to a process whose actor (fixed now) accepts it.
        with subprocess.Popen(
            [sys.executable, "-c", script, "serve"], cwd=tmp_path, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        ) as fixed:  # fmt: skip
            try:
                assert fixed.stdout is not None and fixed.stdin is not None
                assert fixed.stdout.readline().strip() == "ready"
                replayed = run(
                    "-m", "motadata_actors", "dlq", "replay", "--tenant", "shop", "--seq", first_seq
                )
                assert replayed.returncode == 0, replayed.stderr
                assert f"replayed {first_seq} to picky" in replayed.stdout
                assert fixed.stdout.readline().strip() == "handled bad dlq"
                fixed.stdin.close()
                assert fixed.wait(15) == 0
            finally:
                if fixed.poll() is None:
                    fixed.kill()
        left = run("-m", "motadata_actors", "dlq", "list", "--tenant", "shop")
        assert left.stdout.startswith("1 dead letter(s)")


def test_dlq_without_nats_url_says_how_to_fix_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "dlq", "list", "--tenant", "shop"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1
    assert "NATS_URL is not set" in out.stderr


def test_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "apidoc", "--out", str(tmp_path / "api")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "API reference: 9 pages" in out.stdout
    actors = (tmp_path / "api" / "motadata_actors" / "actors.html").read_text()
    for documented in ("ask_stream", "Subscribe", "Workflow", "Supervisor", "AskPolicy"):
        assert documented in actors, documented
    assert "create_nats_client" in (tmp_path / "api/motadata_actors/integrations.html").read_text()
    assert "system_document" in (tmp_path / "api/motadata_actors/asyncapi.html").read_text()


@pytest.mark.parametrize(
    "module", ["motadata_actors", "motadata_actors.codecs", "motadata_actors.telemetry"]
)
def test_leaves_load_no_higher_layer(module: str) -> None:
    """The layers are real: a leaf (or the facade itself) loads neither nats-py nor the
    mailbox and actors layers until one of their names is used."""
    probe = (
        f"import sys, {module}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nats'"
        " or m.startswith(('motadata_actors.actors', 'motadata_actors.mailbox'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_facade_loads_a_layer_when_one_of_its_names_is_used() -> None:
    probe = (
        "import sys, motadata_actors\n"
        "assert 'motadata_actors.actors' not in sys.modules\n"
        "motadata_actors.ActorSystem\n"
        "assert 'motadata_actors.actors' in sys.modules\n"
        "from motadata_actors import message, NatsServer\n"
        "assert set(motadata_actors.__all__) <= set(dir(motadata_actors))\n"
        "try:\n    motadata_actors.Nope\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    )
    assert "has no attribute 'Nope'" in out.stdout
