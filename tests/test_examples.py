"""Every program in examples/ runs, exits 0 and prints what it promises.

Each example runs as a user would run it, ``python examples/<name>.py``, in a fresh
process, from an empty folder, without the variables that would point it elsewhere
(``NATS_URL``, ``CODEC_TYPE``, ``OTEL_*``, ...): on the embedded nats-server it starts
itself. A few key lines of its output must appear, in order. A new example without
expected lines here fails :func:`test_every_example_is_checked`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# For each example, fragments of its output, in the order they must appear. A tuple is a
# group whose fragments may come in any order (they race: an agent's own print and the
# wiretap's copy of the same message, say), all after the entry before it. An example in
# RELAYED prints other processes' lines as they come, so their order against its own is
# not fixed: its own lines (starting with "main |") and theirs are each checked in order,
# apart.
Expected = str | tuple[str, ...]
RELAYED = {"chat_sessions.py"}
EXPECTED: dict[str, list[Expected]] = {
    "gateway_clients.py": [
        "main | gateway on http://127.0.0.1:",
        "a2a | card: writer: Writes a short answer, one word at a time.",
        # Parts that came while an update was made share the next one: how many lines
        # come before the whole answer depends on timing.
        "a2a | streamed so far: a short answer about NATS",
        "a2a | planner answered: {'goal': 'ship it', 'plan': ['step 1', 'step 2']}",
        "mcp | tool planner: Plans the steps toward a goal.",
        "mcp | planner takes: ['goal', 'steps']",
        "mcp | planner answered: {'goal': 'write the docs', 'plan': ['step 1']}",
        "main | done",
    ],
    "chat_sessions.py": [
        "main | two workers:",
        "session 'ada' activated with 0 remembered turn(s)",
        "main | turn 1; you said: hello",
        "main | turn 2; you said: hello / I'd like a window seat",
        "main | killed worker",
        "session 'ada' activated with 2 remembered turn(s)",
        "main | turn 3; you said: hello / I'd like a window seat / and a vegetarian meal",
        "main | turn 4; you said:",
        "main | the conversation went on in the other worker, memory intact",
        "reminder 'seat-check' for 'ada': is the window seat confirmed?",
        "main | memory now: hello / I'd like a window seat / and a vegetarian meal / thanks! / "
        "(reminder: is the window seat confirmed?)",
    ],
    "agents_over_nats.py": [
        "1. The client asks triage; triage asks kb and tells notifier",
        (
            "sdk.agent.client.triage.acme       ask (3000 ms)        support.ticket.v1",
            "'password' ticket from 'client' on sdk.agent.client.triage.acme",
            "sdk.agent.triage.kb.acme           ask (1000 ms)        kb.lookup.v1",
            "sdk.agent.triage.notifier.acme     tell                 notify.customer.v1",
            "notifier | to ada: we are on it",
        ),
        "client | answer: 2 article(s) should help.",
        "2. A lookup slower than its asker's timeout",
        (  # all three happen at the ask's deadline
            "kb | handler cancelled: the asker's deadline passed",
            "client | AskTimeout after",
            "sdk.dlq.kb.acme                    dead letter (ask failed after 1 attempt(s)",
        ),
        "3. An ask to an agent nobody runs",
        "triage | no billing agent runs (NoResponders): answering myself",
        "client | answer: Billing is offline",
        "to 'kb' on sdk.dlq.kb.acme: ask failed after 1 attempt(s): AskTimeout",
        "to 'billing' on sdk.dlq.billing.acme: ask failed after 1 attempt(s): NoResponders",
        "1 timeout(s), 1 handler(s) cancelled at their deadline, 2 dead letter(s)",
    ],
    "distributed_tracing.py": [
        "child | inventory is up on nats://127.0.0.1:",
        "main | child process",
        "concierge | trip to lisbon from 'client': asking inventory",
        "inventory | found 'Hotel Lisbon Central' for 'concierge': asking pricing",
        "pricing | pricing 3 nights at 'Hotel Lisbon Central' for 'inventory'",
        "main | Offer: Hotel Lisbon Central, 3 nights, 360 EUR",
        "child | SIGTERM: stopping",
        "exited with status 0",
        "10 spans: 7 in this process, 3 in the child",
        "(1 trace for the whole conversation)",
        "book trip  (INTERNAL",
        "client -> concierge on sdk.agent.client.concierge.acme",
        "inventory-service",
        "concierge -> inventory on sdk.agent.concierge.inventory.acme",
        "inventory -> pricing on sdk.agent.inventory.pricing.acme",
        "reply of pricing to its asker's inbox",
    ],
    "encoding.py": [
        "json     Content-Type: (none: JSON)",
        "msgpack  Content-Type: application/msgpack",
        "cbor     Content-Type: application/cbor",
        "protobuf Content-Type: application/x-protobuf",
        "message FindingV2 {",
        "research.finding.v1 arrives as Finding(",
        "malformed JSON    DecodeError(codec='json'): malformed body",
        "missing field     DecodeError(codec='json'): missing required field 'question'",
        "unknown type      CodecError: unknown message type 'research.verdict.v1'",
        "no field numbers  EncodeError: protobuf cannot encode",
        "archive <- msgpack-client  application/msgpack    research.finding.v2 as Finding",
        "archive <- protobuf-client application/x-protobuf research.finding.v2 as Finding",
        "archive <- old-client      application/cbor       research.finding.v1 as Finding",
        "newer-client: CodecError: rejected by 'archive': unknown message type",
        "foreign client: error reply Sdk-Error=DecodeError",
        "archive still answers: 'stored (it came as application/json)'",
        "dead letter #1 on sdk.dlq.archive.acme: CodecError",
        "dead letter #2 on sdk.dlq.archive.acme: DecodeError",
    ],
    "research_pipeline.py": [
        "planner | 4 sub-questions",
        (
            "started by the supervisor after a crash (ValueError(",
            "planner | sub-question 3 failed: ValueError in actor 'researcher'",
        ),
        "planner | 3 of 4 findings: asking the writer",
        "report | How do actor frameworks help multi-agent AI systems? In short:",
        "main | the report is complete: 36 words",
        "planner       plan     4 sub-questions",
        "planner       failed   #3: ValueError",
        "writer        report   36 words streamed",
        "to 'researcher': SubQuestion(run_id='run-1', number=3,",
        "reason: handler failed on its last delivery (2): ValueError",
        "Supervision: 2 crashes, 2 restarts of a researcher",
        "spans in 1 trace",
        "3 spans with an error status",
    ],
}


def _clean_env() -> dict[str, str]:
    """The environment without what would send an example elsewhere than its own server."""
    prefixes = ("NATS_", "SDK_", "OTEL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    for name in ("ENABLE_NATS", "ENABLE_OTEL", "CODEC_TYPE"):
        env.pop(name, None)
    return env


def test_every_example_is_checked() -> None:
    found = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert found, "no example found in examples/"
    assert found == sorted(EXPECTED), (
        "every example needs its expected output lines in EXPECTED (and every entry an "
        f"example): examples/ has {found}, EXPECTED has {sorted(EXPECTED)}"
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path) -> None:
    path = EXAMPLES / name
    assert path.is_file(), f"examples/{name} is missing"
    run = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=90,
    )
    assert run.returncode == 0, (
        f"examples/{name} exited with {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )
    assert "Traceback" not in run.stderr, f"examples/{name} printed a traceback:\n{run.stderr}"
    lines = run.stdout.splitlines(keepends=True)
    streams = {"all": run.stdout}  # the output, or its own lines and the relayed apart
    if name in RELAYED:
        streams = {
            "own": "".join(line for line in lines if line.startswith("main |")),
            "relayed": "".join(line for line in lines if not line.startswith("main |")),
        }
    position = dict.fromkeys(streams, 0)
    for entry in EXPECTED[name]:
        group = (entry,) if isinstance(entry, str) else entry
        stream = "all"
        if name in RELAYED:
            stream = "own" if group[0].startswith("main |") else "relayed"
        text, ends = streams[stream], []
        for expected in group:
            found = text.find(expected, position[stream])
            assert found >= 0, (
                f"examples/{name}: {expected!r} not in its output (after position "
                f"{position[stream]} of {stream!r}):\n{text}"
            )
            ends.append(found + len(expected))
        position[stream] = max(ends)
