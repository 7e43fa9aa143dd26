"""Vectors (numpy arrays, array.array) in every codec: compact, exact, checked both ways."""

from __future__ import annotations

import array
import base64
import contextlib
import math
import struct
import subprocess
import sys
import textwrap
from typing import Any

import cbor2
import msgpack
import numpy as np
import numpy.typing as npt
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motadata_actors import ActorSystem, DecodeError, EncodeError
from motadata_actors.codecs import CODEC_NAMES, Codecs, field, message
from motadata_actors.mailbox import InProcessTransport, NatsServer

from ..actors.test_compression import Echo
from ..conftest import system_on

CODECS = Codecs()
NAMES = ("json", "msgpack", "cbor", "protobuf")
BINARY = ("msgpack", "cbor", "protobuf")
DTYPES = ("<f4", "<f2", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8")


@message("test.vectors.chunk.v1")
class Chunk:
    text: str = field(proto=1)
    embedding: npt.NDArray[np.float32] = field(proto=2)
    ids: array.array = field(proto=3)  # type: ignore[type-arg]
    extra: Any = field(proto=4, default=None)


def _same(a: Any, b: Any) -> bool:
    """Equal element type, shape and bits (NaN payloads included)."""
    if isinstance(a, array.array):
        return (
            isinstance(b, array.array) and a.typecode == b.typecode and a.tobytes() == b.tobytes()
        )
    return (
        isinstance(b, np.ndarray)
        and a.dtype.newbyteorder("=") == b.dtype
        and a.shape == b.shape
        and a.astype(b.dtype).tobytes() == b.tobytes()
    )


def _embedding() -> npt.NDArray[np.float32]:
    return np.random.default_rng(7).standard_normal(1536).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (0,), (2, 3), (2, 1, 4), ()])
def test_every_element_type_and_shape_round_trips_exactly(
    name: str, dtype: str, shape: tuple[int, ...]
) -> None:
    codec = CODECS.named(name)
    count = math.prod(shape)
    raw = np.random.default_rng(1).integers(0, 256, size=count * np.dtype(dtype).itemsize)
    value = np.frombuffer(raw.astype(np.uint8).tobytes(), dtype=dtype).reshape(shape)
    out = codec.decode(codec.encode({"v": value, "in": [value]}))
    assert _same(value, out["v"])
    assert _same(value, out["in"][0])
    assert out["v"].flags.writeable
    assert out["v"].flags.owndata or out["v"].base is not None  # a copy, not the body


@pytest.mark.parametrize("name", NAMES)
def test_nan_infinity_and_negative_zero_keep_their_bits(name: str) -> None:
    bits = struct.pack("<4I", 0x7FC00001, 0x7F800000, 0x80000000, 0xFFBFFFFF)  # a NaN payload
    value = np.frombuffer(bits, dtype="<f4")
    out = CODECS.named(name).decode(CODECS.named(name).encode(value))
    assert out.tobytes() == bits


@pytest.mark.parametrize("name", BINARY)
def test_a_1536_float32_embedding_costs_its_own_size_in_the_binary_codecs(name: str) -> None:
    body = CODECS.named(name).encode(_embedding())
    assert 6144 < len(body) <= 6200  # 6,144 bytes of floats and a few of framing
    json_body = CODECS.named("json").encode(_embedding())
    assert len(json_body) < 8300  # base64: 4/3 of the bytes, not 1536 decimal numbers


@pytest.mark.parametrize("name", NAMES)
def test_array_array_round_trips_as_numpy_where_numpy_is_installed(name: str) -> None:
    for code in "bBhHiIlLqQfd":
        value = array.array(code, [1, 2, 3])
        out = CODECS.named(name).decode(CODECS.named(name).encode(value))
        assert isinstance(out, np.ndarray)
        assert out.tolist() == [1, 2, 3]
        assert out.dtype.itemsize == value.itemsize


@pytest.mark.parametrize("name", NAMES)
def test_typed_fields_get_the_annotated_type_and_element_type(name: str) -> None:
    codec = CODECS.named(name)
    chunk = Chunk("hello", _embedding(), array.array("q", [7, 8]), extra=np.arange(4.0))
    out = codec.decode(codec.encode(chunk), Chunk)
    assert _same(chunk.embedding, out.embedding)
    assert out.ids == array.array("q", [7, 8])
    assert _same(chunk.extra, out.extra)
    # the sender may hold the other kind: an ndarray for an array.array field, and back
    mixed = Chunk("x", array.array("f", [1.0, 2.0]), np.array([1, 2], dtype=np.int64))  # type: ignore[arg-type]
    back = codec.decode(codec.encode(mixed), Chunk)
    assert isinstance(back.embedding, np.ndarray)
    assert back.embedding.dtype == np.float32
    assert isinstance(back.ids, array.array)
    assert list(back.ids) == [1, 2]


@pytest.mark.parametrize("name", NAMES)
def test_a_typed_field_refuses_the_wrong_element_type_or_a_non_vector(name: str) -> None:
    codec = CODECS.named(name)
    with pytest.raises(EncodeError, match=r"expected a vector of <f4, got <f8 at \$\.embedding"):
        codec.encode(Chunk("x", np.zeros(3), array.array("q")))
    with pytest.raises(EncodeError, match=r"expected a vector .* got list at \$\.embedding"):
        codec.encode(Chunk("x", [1.0, 2.0], array.array("q")))  # type: ignore[arg-type]
    # a receiver refuses what a sender without the check sent: float64 in a float32 field
    wire = _careless(codec, Chunk("x", np.zeros(2), array.array("q")))
    with pytest.raises(DecodeError, match="expected a vector of float32, got float64"):
        codec.decode(wire, Chunk)


def _careless(codec: Any, chunk: Chunk) -> bytes:
    """``chunk`` encoded without its class's checks (a careless sender)."""
    fields = {"text": chunk.text, "embedding": chunk.embedding, "ids": chunk.ids}
    if codec.name == "protobuf":  # no untyped field map: fill the message's plan directly
        walked = {k: codec._walker.out(v) for k, v in fields.items()}
        return codec._to_message(Chunk, walked).SerializeToString()  # type: ignore[no-any-return]
    return codec.encode(fields)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", NAMES)
def test_a_two_dimensional_vector_does_not_fit_an_array_array_field(name: str) -> None:
    codec = CODECS.named(name)
    with pytest.raises(
        EncodeError, match=r"shape \[2, 2\] does not fit an array\.array at \$\.ids"
    ):
        codec.encode(Chunk("x", _embedding(), np.zeros((2, 2), np.int64)))
    with pytest.raises(EncodeError, match=r"float16 vector .* does not fit an array\.array"):
        codec.encode(Chunk("x", _embedding(), np.zeros(2, np.float16)))
    careless = _careless(codec, Chunk("x", _embedding(), np.zeros((2, 2), np.int64)))
    with pytest.raises(DecodeError, match=r"does not fit an array\.array at \$\.ids"):
        codec.decode(careless, Chunk)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "value",
    [
        np.zeros(3, dtype=np.complex64),
        np.zeros(3, dtype=bool),
        np.array(["a", "b"]),
        np.array([object()]),
        np.zeros(2, dtype="datetime64[s]"),
        array.array("u", "ab"),
    ],
    ids=["complex", "bool", "str", "object", "datetime", "unicode"],
)
def test_arrays_of_non_numbers_are_refused_at_the_sender(name: str, value: Any) -> None:
    with pytest.raises(EncodeError, match=r"not vectors|not a vector|not in the value model"):
        CODECS.named(name).encode({"v": value})


@pytest.mark.parametrize("name", NAMES)
def test_numpy_scalars_travel_as_the_number_they_hold(name: str) -> None:
    codec = CODECS.named(name)
    out = codec.decode(codec.encode([np.float32(0.5), np.int64(3), np.bool_(True)]))
    assert out == [0.5, 3, True]
    assert [type(x) for x in out] == [float, int, bool]
    with pytest.raises(EncodeError, match="non-finite"):
        codec.encode(np.float32("nan"))  # a scalar is a number of the model, not a vector


@pytest.mark.parametrize("name", NAMES)
def test_a_plain_map_shaped_like_a_vector_is_refused(name: str) -> None:
    with pytest.raises(EncodeError, match="reserved"):
        CODECS.named(name).encode({"$array": {"dtype": "<f4", "shape": [0], "data": ""}})


def test_big_endian_arrays_travel_little_endian_and_byte_order_is_explicit() -> None:
    value = np.arange(3, dtype=">f4")
    cbor = CODECS.named("cbor").encode(value)
    assert cbor2.loads(cbor, tag_hook=lambda tag, immutable: (tag.tag, tag.value)) == (
        85,
        np.arange(3, dtype="<f4").tobytes(),
    )
    payload = msgpack.unpackb(CODECS.named("msgpack").encode(value), ext_hook=lambda c, d: (c, d))
    assert payload == (1, bytes([85, 1]) + struct.pack("<I", 3) + struct.pack("<3f", 0, 1, 2))
    spec = orjson.loads(CODECS.named("json").encode(value))["$array"]
    assert spec == {
        "dtype": "<f4",
        "shape": [3],
        "data": base64.b64encode(struct.pack("<3f", 0, 1, 2)).decode(),
    }
    out = CODECS.named("json").decode(CODECS.named("json").encode(value))
    assert out.dtype == np.dtype("=f4")
    assert out.tolist() == [0.0, 1.0, 2.0]


def test_foreign_cbor_typed_arrays_are_read_big_endian_and_many_dimensional_too() -> None:
    be = cbor2.dumps(cbor2.CBORTag(81, struct.pack(">2f", 1.5, -2.0)))  # float32, big-endian
    assert CODECS.named("cbor").decode(be).tolist() == [1.5, -2.0]
    grid = cbor2.dumps(cbor2.CBORTag(40, [[2, 2], cbor2.CBORTag(72, bytes([1, 2, 3, 255]))]))
    assert CODECS.named("cbor").decode(grid).tolist() == [[1, 2], [3, -1]]


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("cbor", cbor2.dumps(cbor2.CBORTag(85, b"\0" * 7)), "not whole <f4 items"),
        ("cbor", cbor2.dumps(cbor2.CBORTag(85, "text")), "must hold a byte string"),
        ("cbor", cbor2.dumps(cbor2.CBORTag(40, [[3], cbor2.CBORTag(64, b"ab")])), "does not fit"),
        ("cbor", cbor2.dumps(cbor2.CBORTag(40, [[2, 2], b"abcd"])), "must hold"),
        ("cbor", cbor2.dumps(cbor2.CBORTag(40, [[-1], cbor2.CBORTag(64, b"")])), "vector size"),
        ("cbor", cbor2.dumps(cbor2.CBORTag(87, b"\0" * 16)), "CBOR tag 87 is not accepted"),  # f128
        ("cbor", cbor2.dumps({"k": cbor2.CBORTag(1, 0)}), "CBOR tag 1 is not"),
        ("msgpack", msgpack.packb(msgpack.ExtType(1, b"\x55")), "too short"),
        ("msgpack", msgpack.packb(msgpack.ExtType(1, b"\x55\x01\x03\0\0\0")), "needs 12 bytes"),
        ("msgpack", msgpack.packb(msgpack.ExtType(1, b"\x09\x00")), "unknown vector element"),
        ("msgpack", msgpack.packb(msgpack.ExtType(1, b"\x55\x21" + b"\0" * 200)), "dimensions"),
        ("msgpack", msgpack.packb(msgpack.ExtType(2, b"")), "extension type 2"),
        ("json", b'{"$array": {"dtype": "<f4", "shape": [1], "data": "AAAA"}}', "needs 4 bytes"),
        ("json", b'{"$array": {"dtype": "<c8", "shape": [0], "data": ""}}', "unknown vector"),
        ("json", b'{"$array": {"dtype": "<f4", "shape": 3, "data": ""}}', "list of sizes"),
        ("json", b'{"$array": {"dtype": "<f4", "shape": [0], "data": "!!"}}', "base64"),
        ("json", b'{"$array": {"dtype": "<f4", "shape": [0]}}', "dtype, shape and data"),
        ("json", b'{"$array": [1]}', "dtype, shape and data"),
    ],
)
def test_malformed_vectors_are_decode_errors_that_say_what_is_wrong(
    name: str, body: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        CODECS.named(name).decode(body)


def test_malformed_protobuf_vectors_are_decode_errors() -> None:
    codec = CODECS.named("protobuf")
    good = codec.encode(np.zeros(2, dtype=np.float32))
    msg = codec._value_cls.FromString(good)
    msg.array_value.data = b"\0" * 5
    with pytest.raises(DecodeError, match="needs 8 bytes, has 5"):
        codec.decode(msg.SerializeToString())
    msg.array_value.dtype = "float32"
    with pytest.raises(DecodeError, match="unknown vector element type 'float32'"):
        codec.decode(msg.SerializeToString())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES),
    cut=st.integers(min_value=0, max_value=200),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=4),
)
def test_mutated_vector_bodies_decode_or_fail_cleanly(
    name: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    codec = CODECS.named(name)
    body = bytearray(codec.encode({"e": np.arange(12, dtype="<f4").reshape(3, 4), "n": 1}))
    for at, bits in flips:
        body[at % len(body)] ^= bits
    with contextlib.suppress(DecodeError):  # anything else fails the test
        codec.decode(bytes(body[: len(body) - cut % len(body)]))


@pytest.mark.parametrize("name", NAMES)
def test_large_vectors_stay_inside_the_size_limit(name: str) -> None:
    codec = CODECS.named(name)
    with pytest.raises(Exception, match=r"exceed|too large"):
        codec.encode(np.zeros(300_000, dtype=np.float32))  # 1.2 MB > the 1 MiB default limit


def test_without_numpy_vectors_arrive_as_array_array_or_say_what_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numpy"] = None  # as if numpy were not installed
        import array
        from motadata_actors import DecodeError, EncodeError
        from motadata_actors.codecs import Codecs
        codecs = Codecs()
        bodies = %r
        for name, body in bodies.items():
            codec = codecs.named(name)
            flat = codec.decode(body["flat"])
            assert type(flat) is array.array and flat.typecode == "f", flat
            assert flat.tolist() == [0.0, 1.0, 2.0], flat
            again = codec.decode(codec.encode(array.array("h", [1, -2])))
            assert again == array.array("h", [1, -2]), again
            for kind in ("half", "grid"):
                try:
                    codec.decode(body[kind])
                except DecodeError as exc:
                    assert "pip install 'motadata-actors[vectors]'" in str(exc), exc
                else:
                    raise AssertionError(kind)
        print("ok")
        """
    )
    bodies = {
        name: {
            "flat": CODECS.named(name).encode(np.arange(3, dtype=np.float32)),
            "half": CODECS.named(name).encode(np.zeros(2, dtype=np.float16)),
            "grid": CODECS.named(name).encode(np.zeros((2, 2), dtype=np.float32)),
        }
        for name in NAMES
    }
    done = subprocess.run(
        [sys.executable, "-c", script % (bodies,)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.anyio
@pytest.mark.parametrize("codec", CODEC_NAMES)
@pytest.mark.parametrize("bus", ["inprocess", "nats"])
async def test_an_embedding_travels_to_an_actor_on_both_transports(
    bus: str, nats_server: NatsServer, tenant: str, codec: str
) -> None:
    async with system_on(bus, nats_server, tenant) as system:
        await system.spawn(Echo, name="echo")
        sent = Chunk("the chunk", _embedding(), array.array("q", [1, 2, 3]))
        back = await system.ref("echo").ask(sent, timeout=5, codec=codec)
        assert _same(sent.embedding, back.embedding)
        assert back.ids == sent.ids
        vec = await system.ref("echo").ask({"v": np.eye(3, dtype=np.float16)}, timeout=5)
        assert _same(np.eye(3, dtype=np.float16), vec["v"])


@pytest.mark.anyio
async def test_in_process_delivery_does_not_share_a_mutable_array() -> None:
    async with ActorSystem("acme", transport=InProcessTransport(), handle_signals=False) as system:
        await system.spawn(Echo, name="echo")
        sent = np.zeros(4, dtype=np.float32)
        back = await system.ref("echo").ask(sent, timeout=5)
        back[0] = 1.0
        assert sent[0] == 0.0
