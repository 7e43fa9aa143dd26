"""Every codec against the same value model, typed messages, evolution, limits and junk."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motadata_actors import CodecError, DecodeError, EncodeError, MessageTooLarge
from motadata_actors.codecs import CODEC_NAMES, Codecs, Limits, TypeRegistry, field, message

from .conftest import make_codec
from .messages import (
    EvolvingNew,
    EvolvingOld,
    Mood,
    PlanV1,
    PlanV2,
    Point,
    Task,
    new_registry,
    old_registry,
    registry,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
leaves = (
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5)
        # Maps shaped like the reserved ones ({"$bytes": ...}) are refused by design (tested
        # below), so plain keys never start with "$".
        | st.dictionaries(
            st.text(max_size=8).filter(lambda k: not k.startswith("$")), children, max_size=5
        )
    ),
    max_leaves=25,
)
points = st.builds(
    Point,
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
)
tasks = st.builds(
    Task,
    title=st.text(max_size=20),
    priority=INT64,
    done=st.booleans(),
    blob=st.binary(max_size=10),
    tags=st.lists(st.text(max_size=5), max_size=3),
    scores=st.dictionaries(
        st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False), max_size=3
    ),
    where=st.none() | points,
    path=st.lists(points, max_size=3),
    extra=values,
    note=st.none() | st.text(max_size=5),
    mood=st.sampled_from(Mood),
    dims=st.lists(INT64, max_size=3).map(tuple),
    subtasks=st.lists(st.builds(Task, title=st.text(max_size=5)), max_size=2),
)


def codecs(limits: Limits | None = None, reg: TypeRegistry = registry) -> dict[str, Any]:
    return {name: make_codec(name, reg, limits) for name in CODEC_NAMES}


ALL = codecs()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_plain_values_round_trip_in_every_codec(value: Any) -> None:
    for name, codec in ALL.items():
        assert codec.decode(codec.encode(value)) == value, name


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(tasks)
def test_typed_messages_round_trip_in_every_codec(task: Task) -> None:
    for name, codec in ALL.items():
        assert codec.decode(codec.encode(task), Task) == task, name


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tasks, max_size=2), st.dictionaries(st.text(max_size=4), points, max_size=2))
def test_typed_messages_inside_plain_values_come_back_typed(
    items: list[Task], where: dict[str, Point]
) -> None:
    value = {"items": items, "where": where}
    for name, codec in ALL.items():
        assert codec.decode(codec.encode(value)) == value, name


def test_top_level_typed_message_body_is_just_its_fields(codec_name: str) -> None:
    codec = ALL[codec_name]
    if codec_name == "json":
        assert codec.encode(Point(1.0, 2.0)) == b'{"x":1.0,"y":2.0}'
    assert codec.decode(codec.encode(Point(1, 2)), Point) == Point(
        1.0, 2.0
    )  # ints fit float fields


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "non-finite float"),
        ([1.0, float("inf")], "non-finite float nan|non-finite float inf"),
        ({"a": -math.inf}, "non-finite float"),
        (2**63, "integer outside 64-bit range"),
        ([1, -(2**63) - 1], "integer outside 64-bit range"),
        ({1: "x"}, "map key 1 is not a str"),
        ({"s": {1, 2}}, "set is not in the value model"),
        (object(), "object is not in the value model"),
        ({"$type": "x.v1", "$value": {}}, "reserved"),
        ({"$bytes": "AA=="}, "reserved"),
    ],
)
def test_values_outside_the_model_are_refused_by_every_codec(
    codec_name: str, value: Any, reason: str
) -> None:
    with pytest.raises(EncodeError, match=reason) as info:
        ALL[codec_name].encode(value)
    assert info.value.codec == codec_name
    assert info.value.wire_name is None


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        (Task(title=3), r"expected str, got int at \$\.title"),  # type: ignore[arg-type]
        (Task(title="t", priority="high"), r"expected int, got str at \$\.priority"),  # type: ignore[arg-type]
        (Task(title="t", priority=True), r"expected int, got bool"),
        (Task(title="t", tags=["a", 1]), r"expected str, got int at \$\.tags\[1\]"),  # type: ignore[list-item]
        (Task(title="t", where=(1, 2)), r"expected Point, got tuple at \$\.where"),  # type: ignore[arg-type]
        (Task(title="t", scores={"a": float("nan")}), r"non-finite float nan at \$\.scores\.a"),
    ],
)
def test_wrong_field_types_fail_at_the_sender_naming_the_field(
    codec_name: str, task: Task, reason: str
) -> None:
    with pytest.raises(EncodeError, match=reason) as info:
        ALL[codec_name].encode(task)
    assert info.value.wire_name == "tests.task.v1"


def test_evolution_new_optional_field_both_ways(codec_name: str) -> None:
    old = make_codec(codec_name, old_registry)
    new = make_codec(codec_name, new_registry)
    # Old code reads a new message (the unknown field is ignored)...
    assert old.decode(new.encode(EvolvingNew("n", 2, "x")), EvolvingOld) == EvolvingOld("n", 2)
    # ...and new code reads an old message (the default fills in).
    assert new.decode(old.encode(EvolvingOld("n", 2)), EvolvingNew) == EvolvingNew("n", 2, "none")


def test_missing_required_field_is_a_decode_error_naming_it(codec_name: str) -> None:
    codec = ALL[codec_name]
    partial = codec.encode(PlanV1(goal="g"))  # no `steps`, which v2 requires
    with pytest.raises(DecodeError, match="missing required field 'steps'") as info:
        codec.decode(partial, PlanV2)
    assert (info.value.codec, info.value.wire_name) == (codec_name, "tests.plan.v2")


def test_wrong_type_on_the_wire_is_a_decode_error_naming_the_field(codec_name: str) -> None:
    if codec_name == "protobuf":
        # Protobuf's wire types come from the schema: a string where a double belongs
        # is an unknown field to the parser, so the field reads as missing.
        wrong = make_codec("protobuf", registry).encode(PlanV1(goal="g"))
        with pytest.raises(DecodeError, match="missing required field 'x'"):
            ALL["protobuf"].decode(wrong, Point)
        return
    codec = ALL[codec_name]
    body = codec.encode({"x": "one", "y": 2.0})
    with pytest.raises(DecodeError, match=r"expected float, got str at \$\.x"):
        codec.decode(body, Point)


def test_upgrade_turns_v1_into_v2_on_arrival(codec_name: str) -> None:
    codec = ALL[codec_name]
    assert codec.decode(codec.encode(PlanV1(goal="g")), PlanV1) == PlanV2(goal="g", steps=1)
    assert codec.decode(codec.encode(PlanV2(goal="g", steps=4)), PlanV2) == PlanV2(
        goal="g", steps=4
    )
    inside = codec.decode(codec.encode([PlanV1(goal="h")]))
    assert inside == [PlanV2(goal="h", steps=1)]


def test_limits_on_depth_length_and_size(codec_name: str) -> None:
    limits = Limits(max_size=2000, max_depth=5, max_length=10)
    codec = codecs(limits)[codec_name]
    wide = codecs()[codec_name]
    deep: Any = "leaf"
    for _ in range(6):
        deep = [deep]
    with pytest.raises(EncodeError, match="nesting deeper than 5"):
        codec.encode(deep)
    with pytest.raises(DecodeError, match="nesting deeper than 5"):
        codec.decode(wide.encode(deep))
    with pytest.raises(EncodeError, match="exceeds 10"):
        codec.encode(list(range(11)))
    with pytest.raises(DecodeError, match=r"exceeds (max_map_len\()?10"):
        codec.decode(wide.encode({str(i): i for i in range(11)}))
    with pytest.raises(MessageTooLarge):
        codec.encode("x" * 2001)
    with pytest.raises(DecodeError, match="exceed the limit of 2000"):
        codec.decode(wide.encode("x" * 2001))
    assert codec.decode(codec.encode(list(range(10)))) == list(range(10))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_junk_bytes_decode_or_raise_codec_error_with_bounded_memory(data: bytes) -> None:
    for name, codec in ALL.items():
        for cls in (None, Task):
            tracemalloc.start()
            try:
                codec.decode(data, cls)
            except CodecError:
                pass
            finally:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
            assert peak <= 4 * len(data) + 1024 * 1024, (name, peak)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("msgpack", b"\xd6\xff\x00\x00\x00\x00"),  # a timestamp extension
        ("msgpack", b"\xc7\x01\x05x"),  # an application extension
        ("cbor", b"\xc1\x1a\x00\x00\x00\x00"),  # tag 1: a datetime
        ("cbor", b"\xd8\x23\x63a.*"),  # tag 35: a regular expression
        ("cbor", b"\xd9\x01\x02\x82\x01\x02"),  # tag 258: a set
        ("cbor", b"\xc2\x49\x01\x00\x00\x00\x00\x00\x00\x00\x00"),  # tag 2: a bignum
        ("json", b'{"a": 1e999}'),  # infinity
        ("json", b"18446744073709551615"),  # a uint64
        ("json", b'{"$bytes": "not base64!"}'),
        ("json", b'{"$type": "nobody.v1", "$value": {}}'),
    ],
)
def test_no_codec_builds_objects_outside_the_model(name: str, data: bytes) -> None:
    with pytest.raises(DecodeError):
        ALL[name].decode(data)


def test_protobuf_merges_whole_fields_after_a_message_as_its_encoding_defines() -> None:
    # Documented: protobuf has no top-level framing; a singular field seen twice is the
    # last one (concatenated messages merge), while a repeated map key is still refused.
    codec = ALL["protobuf"]
    assert codec.decode(codec.encode(1) + codec.encode(2)) == 2
    both = codec.encode(Task(title="a", tags=["x"])) + codec.encode(Task(title="b", tags=["y"]))
    assert codec.decode(both, Task) == Task(title="b", tags=["x", "y"])
    twice = codec.encode(Task(title="a", scores={"s": 1.0})) * 2
    with pytest.raises(DecodeError, match=r"duplicate map key 's' at \$\.scores"):
        codec.decode(twice, Task)


def test_a_float_field_refuses_an_integer_outside_the_model_when_sent(codec_name: str) -> None:
    with pytest.raises(EncodeError, match=r"integer outside 64-bit range at \$\.x"):
        ALL[codec_name].encode(Point(2**63, 0.0))
    assert ALL[codec_name].decode(ALL[codec_name].encode(Point(-(2**63), 0)), Point) == Point(
        float(-(2**63)), 0.0
    )


def test_empty_body_is_none(codec_name: str) -> None:
    assert ALL[codec_name].decode(b"") is None or codec_name == "protobuf"


def test_enum_members_and_str_subclasses_travel_as_values(codec_name: str) -> None:
    codec = ALL[codec_name]
    assert codec.decode(codec.encode({"m": Mood.BUSY, "t": (1, 2)})) == {"m": "busy", "t": [1, 2]}


def test_protobuf_needs_a_number_on_every_field() -> None:
    reg = TypeRegistry()

    @message("tests.nonumber.v1", registry=reg)
    class NoNumber:
        a: int

    with pytest.raises(
        EncodeError, match=r"field 'a' has no protobuf number: declare it with field\(proto=N\)"
    ):
        make_codec("protobuf", reg).encode(NoNumber(1))
    assert make_codec("msgpack", reg).decode(
        make_codec("msgpack", reg).encode(NoNumber(1)), NoNumber
    ) == NoNumber(1)


def test_protobuf_numbers_are_explicit_so_inserting_a_field_renumbers_nothing() -> None:
    before, after = TypeRegistry(), TypeRegistry()

    @message("tests.stable.v1", registry=before)
    class Before:
        a: str = field(proto=1)
        c: str = field(proto=3, default="")

    @message("tests.stable.v1", registry=after)
    class After:
        a: str = field(proto=1)
        b: str = field(proto=2, default="")  # inserted in the middle
        c: str = field(proto=3, default="")

    data = make_codec("protobuf", before).encode(Before("x", "z"))
    assert make_codec("protobuf", after).decode(data, After) == After("x", "", "z")


def test_bad_field_numbers_are_refused() -> None:
    with pytest.raises(CodecError, match="protobuf field number"):
        field(proto=0)


def test_codecs_by_name_and_content_type() -> None:
    cs = Codecs("msgpack")
    assert cs.default.content_type == "application/msgpack"
    assert {cs.named(n).content_type for n in CODEC_NAMES} == {
        "application/json",
        "application/msgpack",
        "application/cbor",
        "application/x-protobuf",
    }
    assert cs.for_content_type(None).name == "json"
    with pytest.raises(CodecError, match="unknown codec 'yaml'"):
        Codecs("yaml")
    with pytest.raises(CodecError, match="unsupported Content-Type"):
        cs.for_content_type("text/plain")
    # Parameters and case do not change the format (a foreign client's charset, say).
    assert cs.for_content_type("application/json; charset=utf-8").name == "json"
    assert cs.for_content_type("Application/MsgPack").name == "msgpack"
    with pytest.raises(CodecError, match="unsupported Content-Type"):
        cs.for_content_type("text/plain; charset=utf-8")
