"""The package as users see it: public API, layout pitfalls, the command line."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
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
    ):
        assert subject in text, subject
    assert "planner replied: On actor systems:" in text
    assert "monitor saw: researching, writing, completed actor systems" in text


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
