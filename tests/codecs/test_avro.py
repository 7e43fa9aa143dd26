"""The Avro codec: derived schemas, round trips, foreign readers, hostile bytes, no fastavro."""

from __future__ import annotations

import array
import contextlib
import enum
import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import fastavro
import numpy as np
import numpy.typing as npt
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motadata_actors import (
    Actor,
    ActorSystem,
    Context,
    DecodeError,
    EncodeError,
    MessageTooLarge,
    Settings,
)
from motadata_actors.codecs import AvroCodec, Codecs, Limits, field, message
from motadata_actors.mailbox import InProcessTransport, NatsServer, Transport

from ..conftest import connect
from .messages import (
    EvolvingNew,
    EvolvingOld,
    Mood,
    Point,
    Task,
    new_registry,
    old_registry,
    registry,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Label:  # a nested attrs class that is no registered message
    text: str
    weight: float = 1.0


@message("tests.avro_kinds.v1", registry=registry)
class Kinds:
    """Every annotation kind the schemas know."""

    text: str
    raw: bytes
    flag: bool
    count: int
    ratio: float
    maybe: int | None
    names: list[str]
    dims: tuple[int, ...]
    scores: dict[str, float]
    point: Point
    points: list[Point]
    by_name: dict[str, Point]
    colour: Colour
    level: Level
    colours: list[Colour]
    anything: Any
    either: int | str
    label: Label
    maybe_point: Point | None = None
    note: str | None = None
    steps: int = 3
    nothing: None = None
    children: list[Kinds] = field(factory=list)


KINDS = Kinds(
    text="ünïcode ✓",
    raw=b"\x00\xff",
    flag=True,
    count=-(2**63),
    ratio=-0.0,
    maybe=2**63 - 1,
    names=["a", ""],
    dims=(1, -2),
    scores={"x": 1.5, "": -2.0},
    point=Point(1.0, 2.0),
    points=[Point(3.0, 4.0)],
    by_name={"home": Point(0.0, 0.0)},
    colour=Colour.GREEN,
    level=Level.HIGH,
    colours=[Colour.RED, Colour.GREEN],
    anything={"k": [1, 2.5, None, True, b"x", "s", Point(5.0, 6.0), {"deep": []}]},
    either="text",
    label=Label("l"),
    maybe_point=Point(7.0, 8.0),
    children=[
        Kinds(
            text="child", raw=b"", flag=False, count=0, ratio=1, maybe=None, names=[], dims=(),
            scores={}, point=Point(0, 0), points=[], by_name={}, colour=Colour.RED,
            level=Level.LOW, colours=[], anything=None, either=7, label=Label("c", 0.5),
        )
    ],
)  # fmt: skip

AVRO = Codecs("avro", registry=registry).default


def header_of(schema: dict[str, Any]) -> bytes:
    """Avro single-object header, computed by fastavro from the schema alone."""
    return b"\xc3\x01" + bytes.fromhex(
        fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    )


def foreign_read(data: bytes, cls: type | None) -> Any:
    """Read our bytes as another Avro user would: fastavro and the published schema."""
    schema = AVRO.schema_of(cls)  # type: ignore[attr-defined]
    assert data[:10] == header_of(schema)
    return fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(schema), None)


# -- schemas ---------------------------------------------------------------------------


def test_the_schema_is_derived_from_the_class() -> None:
    schema = AVRO.schema_of(Kinds)  # type: ignore[attr-defined]
    assert (schema["type"], schema["namespace"], schema["name"]) == (
        "record",
        "sdk.tests",
        "Avro_kindsV1",
    )
    fields = {f["name"]: f for f in schema["fields"]}
    assert list(fields) == [a.name for a in attrs.fields(Kinds)]
    assert fields["text"]["type"] == "string"
    assert fields["raw"]["type"] == "bytes"
    assert fields["flag"]["type"] == "boolean"
    assert fields["count"]["type"] == "long"
    assert fields["ratio"]["type"] == "double"
    assert fields["maybe"] == {"name": "maybe", "type": ["null", "long"]}  # required
    assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
    assert fields["steps"] == {"name": "steps", "type": "long", "default": 3}
    assert fields["names"]["type"] == {"type": "array", "items": "string"}
    assert fields["dims"]["type"] == {"type": "array", "items": "long"}
    assert fields["scores"]["type"] == {"type": "map", "values": "double"}
    assert fields["point"]["type"]["name"] == "PointV1"  # defined once, then referred to
    assert fields["points"]["type"] == {"type": "array", "items": "sdk.tests.PointV1"}
    assert fields["maybe_point"]["type"] == ["null", "sdk.tests.PointV1"]
    assert fields["colour"]["type"] == {
        "type": "enum",
        "name": "Colour",
        "namespace": "sdk.tests",
        "symbols": ["RED", "GREEN"],
    }
    assert fields["colours"]["type"] == {"type": "array", "items": "sdk.tests.Colour"}
    assert fields["level"]["type"]["symbols"] == ["LOW", "HIGH"]
    assert fields["anything"]["type"]["name"] == "Value"  # Any and unions: motadata.sdk.Value
    assert fields["either"]["type"] == "motadata.sdk.Value"
    assert fields["label"]["type"]["namespace"].startswith("py.")
    assert fields["nothing"]["type"] == "null"
    assert fields["children"]["type"] == {"type": "array", "items": "sdk.tests.Avro_kindsV1"}
    fastavro.parse_schema(schema)  # a valid Avro schema
    assert AVRO.schema_of(Kinds) is not AVRO.schema_of(Kinds)  # type: ignore[attr-defined]
    untyped = AVRO.schema_of()  # type: ignore[attr-defined]
    assert untyped["name"] == "Value" and untyped["namespace"] == "motadata.sdk"
    union = untyped["fields"][0]["type"]
    assert union[:6] == ["null", "boolean", "long", "double", "string", "bytes"]


StatusA = enum.Enum("Status", {"ON": 1})
StatusB = enum.Enum("Status", {"OFF": 0})
Odd = enum.Enum("Odd", {"not-a-name": 1})


@message("tests.avro_pair.v1", registry=registry)
class Pair:  # two enums of one name
    a: StatusA  # type: ignore[valid-type]
    b: StatusB  # type: ignore[valid-type]


@message("tests.avro_odd.v1", registry=registry)
class HasOdd:
    odd: Odd  # type: ignore[valid-type]


def test_two_enums_of_one_name_get_two_avro_names() -> None:
    names = [f["type"]["name"] for f in AVRO.schema_of(Pair)["fields"]]  # type: ignore[attr-defined]
    assert names == ["Status", "Status_2"]
    value = Pair(StatusA.ON, StatusB.OFF)  # type: ignore[attr-defined]
    assert AVRO.decode(AVRO.encode(value), Pair) == value


def test_a_class_avro_cannot_name_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match=r"Odd has no Avro symbols .*not-a-name.* at \$\.odd"):
        AVRO.schema_of(HasOdd)  # type: ignore[attr-defined]
    with pytest.raises(EncodeError, match="no Avro symbols"):
        AVRO.encode(HasOdd(Odd(1)))


# -- round trips -----------------------------------------------------------------------


def test_every_annotation_kind_round_trips() -> None:
    data = AVRO.encode(KINDS)
    assert AVRO.decode(data, Kinds) == KINDS
    assert AVRO.decode(AVRO.encode_inline(KINDS)) == KINDS  # typed inside an untyped body


def test_fastavro_reads_our_bytes_with_the_published_schema() -> None:
    read = foreign_read(AVRO.encode(KINDS), Kinds)
    assert read["text"] == KINDS.text and read["count"] == -(2**63)
    assert read["maybe"] == 2**63 - 1 and read["note"] is None
    assert read["colour"] == "GREEN" and read["colours"] == ["RED", "GREEN"]
    assert read["point"] == {"x": 1.0, "y": 2.0} and read["dims"] == [1, -2]
    assert read["either"] == {"v": "text"}
    assert read["anything"]["v"]["k"]["v"][6] == {
        "v": {"$type": {"v": "tests.point.v1"}, "$value": {"v": {"x": {"v": 5.0}, "y": {"v": 6.0}}}}
    }
    assert read["children"][0]["label"] == {"text": "c", "weight": 0.5}
    assert foreign_read(AVRO.encode([1, "a", None]), None) == {
        "v": [{"v": 1}, {"v": "a"}, {"v": None}]
    }


def test_we_read_bytes_fastavro_wrote() -> None:
    schema = AVRO.schema_of(Point)  # type: ignore[attr-defined]
    buf = io.BytesIO()
    buf.write(header_of(schema))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"x": 1.5, "y": -2.0})
    assert AVRO.decode(buf.getvalue(), Point) == Point(1.5, -2.0)
    value_schema = AVRO.schema_of()  # type: ignore[attr-defined]
    buf = io.BytesIO()
    buf.write(header_of(value_schema))
    datum = {"v": ("map", {"a": {"v": ("array", [{"v": ("long", 1)}, {"v": ("bytes", b"b")}])}})}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(value_schema), datum)
    assert AVRO.decode(buf.getvalue()) == {"a": [1, b"b"]}


leaves = st.none() | st.booleans() | INT64 | FLOATS | st.text(max_size=20) | st.binary(max_size=20)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=8).filter(lambda k: not k.startswith("$")), children, max_size=5
        )
    ),
    max_leaves=25,
)
points = st.builds(Point, FLOATS, FLOATS)
tasks = st.builds(
    Task,
    title=st.text(max_size=20),
    priority=INT64,
    done=st.booleans(),
    blob=st.binary(max_size=10),
    tags=st.lists(st.text(max_size=5), max_size=3),
    scores=st.dictionaries(st.text(max_size=5), FLOATS, max_size=3),
    where=st.none() | points,
    path=st.lists(points, max_size=3),
    extra=values,
    note=st.none() | st.text(max_size=5),
    mood=st.sampled_from(Mood),
    dims=st.lists(INT64, max_size=3).map(tuple),
    subtasks=st.lists(st.builds(Task, title=st.text(max_size=5), extra=values), max_size=2),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_plain_values_round_trip(value: Any) -> None:
    assert AVRO.decode(AVRO.encode(value)) == value


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(tasks)
def test_typed_messages_round_trip_and_fastavro_reads_them(task: Task) -> None:
    data = AVRO.encode(task)
    assert AVRO.decode(data, Task) == task
    assert foreign_read(data, Task)["title"] == task.title


def test_an_empty_untyped_body_is_none_as_in_every_codec() -> None:
    assert AVRO.decode(b"") is None
    with pytest.raises(DecodeError, match="no C3 01 header"):
        AVRO.decode(b"", Point)


@message("tests.avro_vectors.v1", registry=registry)
class Embedded:
    embedding: npt.NDArray[np.float32]
    ids: array.array  # type: ignore[type-arg]
    anything: Any = None


def test_vectors_travel_as_the_array_record() -> None:
    sent = Embedded(
        np.arange(6, dtype=np.float32).reshape(2, 3),
        array.array("q", [7, -8]),
        anything=[np.array([1.5, float("nan")]), "x"],
    )
    got = AVRO.decode(AVRO.encode(sent), Embedded)
    assert got.embedding.dtype == np.float32 and got.embedding.shape == (2, 3)
    assert got.embedding.tobytes() == sent.embedding.tobytes()
    assert type(got.ids) is array.array and got.ids == sent.ids
    assert got.anything[0].tobytes() == sent.anything[0].tobytes()  # NaN too: bit for bit
    assert got.anything[1] == "x"
    fields = {f["name"]: f["type"] for f in AVRO.schema_of(Embedded)["fields"]}  # type: ignore[attr-defined]
    assert fields["embedding"]["name"] == "Array"
    assert fields["ids"] == "motadata.sdk.Array"
    assert fields["anything"]["fields"][0]["type"][-1] == "motadata.sdk.Array"
    read = foreign_read(AVRO.encode(sent), Embedded)
    assert read["embedding"] == {
        "dtype": "<f4",
        "shape": [2, 3],
        "data": sent.embedding.tobytes(),
    }
    untyped = AVRO.decode(AVRO.encode({"v": np.arange(3, dtype=np.int16)}))
    assert untyped["v"].tolist() == [0, 1, 2] and untyped["v"].dtype == np.int16


@pytest.mark.parametrize(
    ("vector", "reason"),
    [
        (b"\x06<f4\x02\x04\x00\x08" + b"\x00" * 4, "needs 8 bytes, has 4"),
        (b"\x06<x9\x02\x02\x00\x00", "unknown vector element type '<x9'"),
        (b"\x06<f4\x02\x03\x00\x00", r"vector size -2 is not an int in \[0, 2\*\*32\)"),
    ],
)
def test_malformed_vectors_are_decode_errors(vector: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        AVRO.decode(AVRO.encode(None)[:10] + b"\x10" + vector)


# -- the value model, limits and evolution ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"x": 2**63}, r"integer outside 64-bit range at \$\.x"),
        ([float("nan")], r"non-finite float nan at \$\[0\]"),
        ({"when": {1, 2}}, r"set is not in the value model at \$\.when"),
        ({1: "a"}, "map key 1 is not a str"),
        (Point(x="a", y=1.0), r"expected float, got str at \$\.x"),  # type: ignore[arg-type]
        (
            attrs.evolve(KINDS, anything={"n": float("inf")}),
            r"non-finite float inf at \$\.anything\.n",
        ),
        (attrs.evolve(KINDS, colours=[Colour.RED, "red"]), r"expected Colour, got str"),
    ],
)
def test_the_value_model_is_enforced_at_the_sender(value: Any, reason: str) -> None:
    with pytest.raises(EncodeError, match=reason):
        AVRO.encode(value)


def test_limits_bind_both_ways() -> None:
    small = Codecs("avro", limits=Limits(max_size=64, max_depth=3, max_length=3)).default
    with pytest.raises(MessageTooLarge):
        small.encode("x" * 100)
    with pytest.raises(DecodeError, match="exceed the limit of 64"):
        small.decode(AVRO.encode("x" * 100))
    with pytest.raises(EncodeError, match="nesting deeper than 3"):
        small.encode([[[[1]]]])
    with pytest.raises(DecodeError, match="nesting deeper than 3"):
        small.decode(AVRO.encode([[[[1]]]]))
    with pytest.raises(EncodeError, match="container of 4 items exceeds 3"):
        small.encode([1, 2, 3, 4])
    with pytest.raises(DecodeError, match="container of 4 items exceeds 3"):
        small.decode(AVRO.encode([1, 2, 3, 4]))
    assert small.decode(small.encode([[[1]]])) == [[[1]]]


def test_a_body_of_another_schema_is_refused_by_fingerprint() -> None:
    newer = Codecs("avro", registry=new_registry).default
    older = Codecs("avro", registry=old_registry).default
    data = newer.encode(EvolvingNew(name="n", count=2, label="x"))
    with pytest.raises(DecodeError, match=r"written with the schema of fingerprint [0-9a-f]{16}"):
        older.decode(data, EvolvingOld)
    with pytest.raises(DecodeError, match="fingerprint"):
        AVRO.decode(AVRO.encode(Point(1, 2)), Task)


# -- hostile bytes ------------------------------------------------------------------------


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return bytes(out + bytes([byte]))
        out.append(byte | 0x80)


VALUE = AVRO.encode(None)[:10]  # the header of untyped bodies


@message("tests.avro_empty.v1", registry=registry)
class Empty:
    pass


@message("tests.avro_holder.v1", registry=registry)
class Holder:
    grid: list[list[Empty]]


HOLDER = AVRO.encode(Holder(grid=[]))[:10]


@pytest.mark.parametrize(
    ("data", "cls", "reason"),
    [
        # Value arrays nested 100,000 deep in 200 KB: fastavro's C reader overflows the stack.
        (VALUE + b"\x0c\x02" * 100_000 + b"\x00" * 100_001, None, "nesting deeper than 32"),
        (VALUE + b"\x08" + zigzag(2**62) + b"ab", None, "a length of 4611686018427387904"),
        (VALUE + b"\x08" + zigzag(-3) + b"ab", None, "a length of -3"),
        (AVRO.encode(1) + b"\x00", None, "1 trailing byte after the value"),
        (AVRO.encode(KINDS) + b"\x00\x00", Kinds, "2 trailing bytes after the value"),
        (VALUE + b"\x02\x02", None, "boolean byte 2"),
        (VALUE + b"\x04" + b"\xff" * 10 + b"\x01", None, "a varint longer than 10 bytes"),
        (VALUE + b"\x04" + b"\xff" * 9 + b"\x7f", None, "integer outside 64-bit range"),
        (VALUE + b"\x20", None, "Value branch 16 of 9"),
        (VALUE + b"\x01", None, "Value branch -1 of 9"),
        (VALUE + b"\x0e\x04\x02a\x00\x02a\x00\x00", None, "duplicate map key 'a'"),
        (VALUE + b"\x08\x04\xff\xfe", None, "invalid UTF-8"),
        (VALUE + b"\x06" + b"\x00" * 6 + b"\xf8\x7f", None, "non-finite float nan"),
        (VALUE + b"\x06\x00\x00", None, "a double cut short"),
        (VALUE + b"\x0c" + zigzag(2**62), None, "container of 4611686018427387904 items"),
        (VALUE + b"\x0c" + zigzag(-1) + zigzag(-5), None, "a negative block size"),
        (AVRO.encode("hello")[:-1], None, "a length of 5 with 4 bytes left"),
        (AVRO.encode(2**40)[:-1], None, "cut short"),
        (b"\xc3\x01" + b"\x00" * 9, None, "fingerprint 0000000000000000"),
        (b"\x00" * 12, None, "no C3 01 header"),
        (b"\xc3", None, "no C3 01 header"),
        (b"{}", Point, "no C3 01 header"),
        # Items that take no bytes: 100,000 lists of 100,000 empty messages in 300 KB.
        (
            HOLDER + zigzag(100_000) + (zigzag(100_000) + b"\x00") * 100_000 + b"\x00",
            Holder,
            "more than 100000 items that take no bytes",
        ),
        (AVRO.encode(Point(1, 2))[:10] + b"\x00" * 15, Point, "a double cut short"),
        (AVRO.encode(Point(1, 2))[:10] + b"\x00" * 17, Point, "1 trailing byte"),
        (AVRO.encode(KINDS)[:-3], Kinds, "malformed body"),
    ],
)
def test_hostile_bytes_are_decode_errors_quickly(data: bytes, cls: Any, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(DecodeError, match=reason):
        AVRO.decode(data, cls)
    assert time.perf_counter() - started < 10.0  # a hang guard: no decode bomb runs away


HEADERS = {
    cls: AVRO.encode(sample)[:10]
    for cls, sample in [(None, None), (Task, Task("t")), (Kinds, KINDS), (Point, Point(0, 0))]
}


def decode_or_refuse(data: bytes, cls: Any) -> None:
    """Decoding gives a value of the model or a DecodeError: nothing else, ever."""
    with contextlib.suppress(DecodeError):
        AVRO.decode(data, cls)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.sampled_from([None, Task, Kinds, Point]))
def test_random_bytes_only_ever_give_decode_errors(data: bytes, cls: Any) -> None:
    decode_or_refuse(data, cls)
    decode_or_refuse(HEADERS[cls] + data, cls)  # past the header, into the reader


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["flip", "insert", "delete", "cut"]))
def test_mutated_bodies_only_ever_give_decode_errors(data: st.DataObject, how: str) -> None:
    cls = data.draw(st.sampled_from([None, Task]))
    body = bytearray(AVRO.encode(data.draw(values if cls is None else tasks)))
    at = data.draw(st.integers(10, len(body) - 1)) if len(body) > 10 else 10
    if how == "flip" and at < len(body):
        body[at] ^= data.draw(st.integers(1, 255))
    elif how == "insert":
        body[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    elif how == "delete":
        del body[at : at + data.draw(st.integers(1, 8))]
    else:
        del body[at:]
    decode_or_refuse(bytes(body), cls)


# -- in a system, on both transports; without fastavro ------------------------------------


class Mirror(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return [ctx.content_type, msg]


@contextlib.asynccontextmanager
async def avro_system(
    transport: str, server: NatsServer, tenant: str
) -> AsyncIterator[ActorSystem]:
    if transport == "nats":
        bus: Transport = await connect(server)
        settings = Settings(codec="avro")
    else:
        bus, settings = InProcessTransport(), Settings(codec="avro", enable_nats=False)
    async with ActorSystem(
        tenant, transport=bus, settings=settings, registry=registry, handle_signals=False
    ) as system:
        yield system


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["inprocess", "nats"])
async def test_avro_as_the_codec_of_a_system(
    transport: str, nats_server: NatsServer, tenant: str
) -> None:
    async with avro_system(transport, nats_server, tenant) as system:
        await system.spawn(Mirror, name="mirror")
        ref = system.ref("mirror")
        assert await ref.ask(KINDS, timeout=5) == ["application/avro", KINDS]
        assert await ref.ask({"plain": [1, None]}, timeout=5) == [
            "application/avro",
            {"plain": [1, None]},
        ]
        assert (await ref.ask(KINDS, codec="json", timeout=5))[0] == "application/json"


WITHOUT_FASTAVRO = """
import asyncio, sys
sys.modules["fastavro"] = None  # as if it were not installed
from motadata_actors import ActorSystem, CodecError, ConfigError, Settings
from motadata_actors.codecs import Codecs, codec_names

assert "avro" in codec_names()
print(Settings.from_env({"CODEC_TYPE": "avro"}).codec)
print(Codecs("json").default.decode(b"[1]"))  # everything else works
for attempt in (lambda: Codecs("avro"), lambda: Codecs().for_content_type("application/avro")):
    try:
        attempt()
    except CodecError as exc:
        print("CodecError:", exc)

async def main():
    settings = Settings(codec="avro", enable_nats=False)
    try:
        async with ActorSystem("acme", settings=settings, handle_signals=False):
            pass
    except ConfigError as exc:
        print("ConfigError:", exc)

asyncio.run(main())
"""


def test_without_fastavro_choosing_avro_says_what_to_install() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"CODEC_TYPE", "NATS_URL"}}
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_FASTAVRO],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:2] == ["avro", "[1]"]
    assert len(lines) == 5, run.stdout
    for line in lines[2:]:
        assert line.endswith("pip install 'motadata-actors[avro]'"), line
    assert lines[2].startswith("CodecError: the avro codec needs fastavro")
    assert lines[4].startswith("ConfigError: CODEC_TYPE='avro': the avro codec needs fastavro")


def test_avro_is_the_codec_class_of_its_entry_point() -> None:
    assert type(Codecs("avro").default) is AvroCodec
    assert Codecs().for_content_type("Application/Avro").name == "avro"
