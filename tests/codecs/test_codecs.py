"""Every codec against the same value model, typed messages, evolution, limits and junk."""

from __future__ import annotations

import contextlib
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
from .wire import Pairs, body, pb_field, plain, varint

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
        ("cbor", b"\xf7"),  # undefined
        ("cbor", b"\xf0"),  # simple value 16
    ],
)
def test_no_codec_builds_objects_outside_the_model(name: str, data: bytes) -> None:
    with pytest.raises(DecodeError):
        ALL[name].decode(data)


# -- strict decoding: what every codec refuses, the same way (docs/codecs.md) ------------

KEYS = st.text(max_size=4).filter(lambda k: not k.startswith("$"))
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(st.tuples(KEYS, children), max_size=4, unique_by=lambda kv: kv[0]).map(Pairs)
    ),
    max_leaves=12,
)
OUTSIDE = (
    st.integers(2**63, 2**64 - 1)
    | st.integers(-(2**64), -(2**63) - 1)
    | st.integers(2**64, 2**200)
    | st.integers(-(2**200), -(2**64) - 1)
)


# CBOR carries integers past 64 bits as bignums, tags 2 and 3, refused like every tag.
BIG_INT_REFUSED = r"integer outside 64-bit range|CBOR tag [23] is not accepted"


def containers(tree: Any) -> list[Any]:
    """Every list and map of a tree, outermost first."""
    if not isinstance(tree, list):
        return []
    items = [v for _, v in tree] if isinstance(tree, Pairs) else tree
    return [tree, *(node for item in items for node in containers(item))]


def expressible(name: str, n: int) -> bool:
    """Can the format carry this integer at all (msgpack: int64 and uint64; protobuf: sint64)?"""
    return {
        "json": True,
        "cbor": True,  # natively within 64 bits, beyond as a bignum tag
        "msgpack": -(2**63) <= n < 2**64,
        "protobuf": False,
    }[name]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_codec_refuses_a_repeated_map_key_anywhere(data: st.DataObject) -> None:
    tree = data.draw(trees)
    for name in CODEC_NAMES:  # the flawless tree, written by hand, still decodes
        assert ALL[name].decode(body(name, tree)) == plain(tree), name
    maps = [node for node in containers(tree) if isinstance(node, Pairs) and node]
    if not maps:
        tree = Pairs([("k", tree)])
        maps = [tree]
    node = data.draw(st.sampled_from(maps))
    key = data.draw(st.sampled_from([k for k, _ in node]))
    node.insert(data.draw(st.integers(0, len(node))), (key, data.draw(trees)))
    for name in CODEC_NAMES:
        with pytest.raises(DecodeError, match=r"(?i)duplicate map key") as info:
            ALL[name].decode(body(name, tree))
        assert info.value.codec == name


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), OUTSIDE)
def test_every_codec_refuses_an_integer_outside_the_model_anywhere(
    data: st.DataObject, n: int
) -> None:
    tree = data.draw(trees)
    node = data.draw(st.sampled_from(containers(tree) or [None]))
    if node is None:
        tree = node = [tree]
    if isinstance(node, Pairs):
        node.append(("~" * 5, n))  # KEYS are at most 4 characters: no repeat
    else:
        node.insert(data.draw(st.integers(0, len(node))), n)
    for name in CODEC_NAMES:
        if expressible(name, n):
            with pytest.raises(DecodeError, match=BIG_INT_REFUSED):
                ALL[name].decode(body(name, tree))


# Bytes after a protobuf message that do not form whole fields (whole fields merge into it).
PROTOBUF_JUNK = st.one_of(
    st.binary(min_size=1, max_size=9).map(lambda b: bytes(x | 0x80 for x in b)),  # a cut tag
    st.integers(1, 2**29 - 1).map(lambda n: varint(n << 3)),  # a varint field, no value
    st.tuples(st.integers(1, 2**29 - 1), st.sampled_from([1, 5])).map(
        lambda t: varint(t[0] << 3 | t[1]) + b"\x00"  # a fixed64 / fixed32 cut short
    ),
    st.tuples(st.integers(1, 2**29 - 1), st.binary(max_size=8), st.integers(1, 100)).map(
        lambda t: varint(t[0] << 3 | 2) + varint(len(t[1]) + t[2]) + t[1]  # length past the end
    ),
    st.tuples(st.integers(1, 2**29 - 1), st.sampled_from([4, 6, 7])).map(
        lambda t: varint(t[0] << 3 | t[1])  # a stray end-group; wire types 6 and 7
    ),
    st.sampled_from([b"\x00", b"\x02", b"\x05"]),  # field number 0
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees, tasks, st.binary(min_size=1, max_size=16), PROTOBUF_JUNK)
def test_every_codec_refuses_bytes_after_the_value(
    tree: Any, task: Task, junk: bytes, protobuf_junk: bytes
) -> None:
    suffixes = {
        "json": b" " + junk,  # the space ends a number: what follows is not part of it
        "msgpack": junk,
        "cbor": junk,
        "protobuf": protobuf_junk,
    }
    for name in CODEC_NAMES:
        suffix = suffixes[name]
        if name == "json" and not suffix.strip(b" \t\r\n"):
            assert ALL[name].decode(body(name, tree) + suffix) == plain(tree)  # RFC 8259
            continue
        reason = {"json": None, "protobuf": "malformed body"}.get(name, "trailing byte")
        with pytest.raises(DecodeError, match=reason):
            ALL[name].decode(body(name, tree) + suffix)
        with pytest.raises(DecodeError, match=reason):
            ALL[name].decode(ALL[name].encode(task) + suffix, Task)


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


@pytest.mark.parametrize("name", ["json", "msgpack", "cbor"])
def test_a_typed_message_with_a_field_twice_is_refused(name: str) -> None:
    data = body(name, Pairs([("x", 1.0), ("y", 2.0), ("x", 3.0)]))
    with pytest.raises(DecodeError, match=r"(?i)duplicate map key:? 'x'") as info:
        ALL[name].decode(data, Point)
    assert info.value.wire_name == "tests.point.v1"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("json", b'{"a": 1, "a": 2}', "duplicate map key 'a'"),
        ("json", b'{"a": 1, "\\u0061": 2}', "duplicate map key 'a'"),  # spelled differently
        ("json", b'[{"a": {"b": 1, "b": 1}}]', "duplicate map key 'b'"),
        ("json", b"18446744073709551616", "integer outside 64-bit range: 18446744073709551616"),
        ("json", b"[-9223372036854775809]", "integer outside 64-bit range"),
        ("json", b'{"n": 123456789012345678901234567890}', "integer outside 64-bit range"),
        ("json", b"9223372036854775808", "integer outside 64-bit range"),
        ("json", b"1 2", "unexpected content"),
        ("msgpack", b"\x82\xa1a\x01\xa1a\x02", "duplicate map key 'a'"),
        ("msgpack", b"\x91\x81\xa1a\x81\xa1b", "malformed body"),  # cut inside a map
        ("msgpack", b"\x01\x02\x03", "2 trailing bytes after the value"),
        ("msgpack", b"\xcf\x80\x00\x00\x00\x00\x00\x00\x00", "integer outside 64-bit range"),
        ("cbor", b"\x01\x02", "1 trailing byte after the value"),
        ("cbor", b"\x9f\x01\xff\xff", "1 trailing byte after the value"),
        ("cbor", b"\xa2\x61a\x01\x61a\x02", "Duplicate map key: 'a'"),
        ("cbor", b"\x3b\x80\x00\x00\x00\x00\x00\x00\x00", "integer outside 64-bit range"),
        ("protobuf", pb_field(8, pb_field(1, pb_field(1, b"a")) * 2), "duplicate map key 'a'"),
    ],
)
def test_strict_refusals_say_what_is_wrong(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        ALL[name].decode(data)


@pytest.mark.parametrize("name", ["json", "msgpack", "cbor"])
def test_an_integer_outside_the_model_in_an_unknown_field_is_refused(name: str) -> None:
    # The whole body keeps the rules, not only the fields the receiver knows.
    data = body(name, Pairs([("x", 1.0), ("y", 2.0), ("newer", [2**63])]))
    with pytest.raises(DecodeError, match=r"integer outside 64-bit range at \$\.newer\[0\]"):
        ALL[name].decode(data, Point)
    fine = body(name, Pairs([("x", 1.0), ("y", 2.0), ("newer", [2**63 - 1])]))
    assert ALL[name].decode(fine, Point) == Point(1.0, 2.0)


def test_whitespace_around_a_json_value_is_part_of_the_text() -> None:
    assert ALL["json"].decode(b' \r\n\t{"a": [1, 2]} \n') == {"a": [1, 2]}


@pytest.mark.parametrize("name", ["json", "msgpack", "cbor"])
def test_a_float_field_refuses_an_integer_outside_the_model(name: str) -> None:
    for n in (2**63, -(2**63) - 1, 2**64):
        if not expressible(name, n):
            continue
        with pytest.raises(DecodeError, match=BIG_INT_REFUSED):
            ALL[name].decode(body(name, Pairs([("x", n), ("y", 0.0)])), Point)
    assert ALL[name].decode(body(name, Pairs([("x", 2**63 - 1), ("y", 0)])), Point) == Point(
        float(2**63 - 1), 0.0
    )


def test_a_float_field_refuses_an_integer_outside_the_model_when_sent(codec_name: str) -> None:
    with pytest.raises(EncodeError, match=r"integer outside 64-bit range at \$\.x"):
        ALL[codec_name].encode(Point(2**63, 0.0))
    assert ALL[codec_name].decode(ALL[codec_name].encode(Point(-(2**63), 0)), Point) == Point(
        float(-(2**63)), 0.0
    )


MUTATIONS = st.sampled_from(["cut", "insert", "flip", "append"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), trees, MUTATIONS)
def test_bodies_near_a_valid_one_decode_or_raise_decode_error(
    data: st.DataObject, tree: Any, mutation: str
) -> None:
    for name, codec in ALL.items():
        raw = bytearray(body(name, tree))
        at = data.draw(st.integers(0, len(raw)))
        if mutation == "cut":
            del raw[at:]
        elif mutation == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif mutation == "flip" and raw:
            raw[min(at, len(raw) - 1)] ^= data.draw(st.integers(1, 255))
        else:
            raw += data.draw(st.binary(min_size=1, max_size=4))
        for cls in (None, Task):
            with contextlib.suppress(DecodeError):
                codec.decode(bytes(raw), cls)


def test_empty_body_is_none(codec_name: str) -> None:
    assert ALL[codec_name].decode(b"") is None


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
