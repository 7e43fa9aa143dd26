"""Codecs across the wire: systems with different codecs talk; protoc-generated classes agree."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from motadata_actors import Actor, ActorSystem, Context, Settings
from motadata_actors.codecs import CODEC_NAMES, Codecs
from motadata_actors.mailbox import CONTENT_TYPE, Incoming, Mailbox, NatsServer

from ..conftest import connect
from .messages import Mood, Point, Task, registry


class Inspector(Actor):
    """Replies with the task it got, and what it saw of the wire."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        assert isinstance(msg, Task)
        return {"task": msg, "content_type": ctx.content_type}


async def speaking(codec: str, nats_server: NatsServer, tenant: str) -> ActorSystem:
    """A system of ``tenant`` that sends with ``codec``."""
    return ActorSystem(
        tenant,
        transport=await connect(nats_server),
        settings=Settings(codec=codec),  # type: ignore[arg-type]
        registry=registry,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("asker", "server"),
    [("msgpack", "json"), ("json", "cbor"), ("cbor", "protobuf"), ("protobuf", "msgpack")],
)
async def test_systems_with_different_codecs_talk_over_nats(
    nats_server: NatsServer, tenant: str, asker: str, server: str
) -> None:
    task = Task(
        title="t",
        priority=2,
        blob=b"\x00\xff",
        where=Point(1.0, 2.0),
        extra={"k": [1, None]},
        mood=Mood.BUSY,
    )
    serving = await speaking(server, nats_server, tenant)
    asking = await speaking(asker, nats_server, tenant)
    async with serving, asking:
        await serving.spawn(Inspector, name="inspector")
        wire: Mailbox[Incoming] = Mailbox(10)
        await asking.transport.subscribe(f"sdk.agent.*.inspector.{tenant}", mailbox=wire)
        reply = await asking.ref("inspector").ask(task, timeout=5)
        sent = await wire.receive()
    assert reply == {"task": task, "content_type": Codecs(asker).default.content_type}
    sent_type = (sent.headers or {}).get(CONTENT_TYPE)
    if asker == "json":  # the default goes without a Content-Type: its absence means JSON
        assert sent_type is None
    else:
        assert sent_type == Codecs(asker).default.content_type


def test_protoc_generated_classes_read_our_bytes_and_we_read_theirs(tmp_path: Path) -> None:
    codec = Codecs("protobuf", registry=registry).named("protobuf")
    files = codec.proto_files(Task)  # type: ignore[attr-defined]
    assert set(files) == {
        "sdk/tests/task_v1.proto",
        "sdk/tests/point_v1.proto",
        "motadata/sdk/value.proto",
    }
    for name, source in files.items():
        path = tmp_path / "proto" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    out = tmp_path / "gen"
    out.mkdir()
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path / 'proto'}"]
    subprocess.run([*protoc, f"--python_out={out}", *files], check=True, capture_output=True)
    sys.path.insert(0, str(out))
    try:
        task_pb2 = importlib.import_module("sdk.tests.task_v1_pb2")
        value_pb2 = importlib.import_module("motadata.sdk.value_pb2")
        task = Task(
            title="hello",
            priority=-7,
            tags=["a", "b"],
            scores={"x": 0.5},
            where=Point(1.5, -2.0),
            path=[Point(0.0, 1.0)],
            extra=[1, "two", None],
            note=None,
            dims=(3, 4),
        )
        theirs = task_pb2.TaskV1.FromString(codec.encode(task))
        assert (theirs.title, theirs.priority, list(theirs.tags), dict(theirs.scores)) == (
            "hello",
            -7,
            ["a", "b"],
            {"x": 0.5},
        )
        assert (theirs.where.x, theirs.where.y, theirs.path[0].y) == (1.5, -2.0, 1.0)
        assert not theirs.HasField("note")
        assert [v.WhichOneof("kind") for v in theirs.extra.list_value.items] == [
            "int_value",
            "string_value",
            "null_value",
        ]
        # And the other way: a message built by generated code decodes into our class.
        built = task_pb2.TaskV1(title="from protoc", priority=9, done=True, dims=[1, 2])
        built.where.x, built.where.y = 3.0, 4.0
        built.extra.CopyFrom(value_pb2.Value(string_value="free"))
        mine = codec.decode(built.SerializeToString(), Task)
        assert mine == Task(
            title="from protoc",
            priority=9,
            done=True,
            where=Point(3.0, 4.0),
            extra="free",
            dims=(1, 2),
        )
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "sdk" or m.startswith(("sdk.", "motadata."))]:
            del sys.modules[name]


def test_every_codec_name_has_a_distinct_content_type() -> None:
    types = {Codecs(name).default.content_type for name in CODEC_NAMES}
    assert len(types) == len(CODEC_NAMES)
