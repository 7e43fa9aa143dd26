"""Strict decoding (codecs/_strict.py): the C checks decide like the exact pure-Python twins."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import cbor2
import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from motadata_actors import DecodeError
from motadata_actors.codecs import CODEC_NAMES, _fastcheck, _formats, _strict
from motadata_actors.codecs._strict import BodyError, cbor_end_exact

from .conftest import make_codec
from .test_values import values as any_values
from .wire import Pairs, body

CODECS = {name: make_codec(name) for name in CODEC_NAMES}


@contextlib.contextmanager
def pure_python() -> Iterator[None]:
    """Decode as a build without the C extension does."""
    twins = {
        "json_check": _strict._json_check,
        "msgpack_check": _strict._msgpack_check,
        "cbor_check": _strict._cbor_check,
    }
    with (
        mock.patch.multiple(_formats, **twins),
        mock.patch.object(_strict, "_cbor_end", cbor_end_exact),
    ):
        yield


LIMITS = (32, 100_000)  # max_depth, max_length


def verdict(check: Any, data: bytes | bytearray | memoryview, value: Any) -> int:
    """A check's verdict, without the NOT_PLAIN flag."""
    return int(check(data, value, *LIMITS) & ~_strict.NOT_PLAIN)


def accepted(check: Any, settle: Any, data: bytes, value: Any) -> bool:
    """Does the body pass a check and, after a verdict, its settling?"""
    try:
        found = verdict(check, data, value)
        if found:
            settle(data, value, found)
    except BodyError:
        return False
    return True


# -- JSON: members outside strings, and integer literals ----------------------------------

CHARS = 'ab:"\\é{}[],'  # a small alphabet, so keys repeat, with everything a scanner minds


@st.composite
def json_strings(draw: st.DrawFn, max_size: int = 4) -> str:
    """A JSON string with each character written plainly or escaped, at random."""
    out = []
    for c in draw(st.text(CHARS, max_size=max_size)):
        if c in '"\\' or draw(st.booleans()):
            out.append(f"\\u{ord(c):04x}" if draw(st.booleans()) else json.dumps(c)[1:-1])
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


EDGES = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, -(2**64), 0, -1]
numbers = st.one_of(
    st.sampled_from(EDGES).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        ["1e19", "-9223372036854775809.0", "1E+2", "-0", "0.5e-3", "12345678901234567890e0"]
    ),
)
WS = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


def json_texts() -> st.SearchStrategy[str]:
    def containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        members = st.lists(st.tuples(json_strings(), WS, children), max_size=5)
        return st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]") | (
            members.map(lambda ms: "{" + ",".join(f"{k}{w}:{v}" for k, w, v in ms) + "}")
        )

    # Long strings and a shifting start put escapes and colons at every offset of the
    # scan's 16-byte blocks.
    leaves = (
        numbers
        | json_strings()
        | json_strings(max_size=40)
        | st.sampled_from(["true", "false", "null"])
    )
    tree = st.recursive(leaves, containers, max_leaves=15)
    return st.tuples(st.text(" ", max_size=15), tree, WS).map("".join)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(json_texts())
def test_json_check_decides_like_the_standard_library(text: str) -> None:
    data = text.encode()
    value = orjson.loads(data)  # the strategy writes only valid JSON
    event(f"verdict {verdict(_fastcheck.json_check, data, value)}")  # see _strict
    fast = accepted(_fastcheck.json_check, _strict.json_settle, data, value)
    assert fast == accepted(_strict._json_check, _strict.json_settle, data, value), text


@pytest.mark.parametrize("pad", range(80))
def test_json_scan_keeps_its_state_across_blocks(pad: int) -> None:
    # Escaped quotes and backslashes, and colons in strings, at every offset of a block.
    fine = '{"k\\\\": "a:\\"b", "y:\\"": [":", "\\\\"], "k\\u005d": 1}'
    twice = fine.replace("u005d", "u005c")  # "k\\u005c" is "k\\" again
    for second, expected in ((fine, 0), (twice, _strict.REPEATED_KEY)):
        data = (" " * pad + f"[{fine}, {second}]").encode()  # 2 blocks of 64 bytes from pad 18
        assert len(json.loads(data)[1]) == (3 if expected == 0 else 2)
        assert verdict(_fastcheck.json_check, data, orjson.loads(data)) == expected


# -- MessagePack: declared map entries -----------------------------------------------------

msgpack_keys = st.text("ab", max_size=2) | st.binary(max_size=1)  # str and bin keys differ
msgpack_trees = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(max_size=300)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=20)),
    lambda children: (
        st.lists(children, max_size=20)
        | st.lists(st.tuples(msgpack_keys, children), max_size=20).map(Pairs)
    ),
    max_leaves=40,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(msgpack_trees)
def test_msgpack_check_decides_like_the_pairs_hook(tree: Any) -> None:
    data = body("msgpack", tree)
    value = msgpack.unpackb(data)
    event(f"verdict {verdict(_fastcheck.msgpack_check, data, value)}")
    fast = accepted(_fastcheck.msgpack_check, _strict.msgpack_settle, data, value)
    assert fast == accepted(_strict._msgpack_check, _strict.msgpack_settle, data, value)


# -- CBOR: where the first item ends -------------------------------------------------------


def head(major: int, n: int, wide: int) -> bytes:
    """A CBOR head; ``wide`` > 0 writes the argument in more bytes than it needs."""
    sizes = [s for s in (0, 1, 2, 4, 8) if n < (24 if s == 0 else 1 << (8 * s))]
    size = sizes[min(wide, len(sizes) - 1)]
    if size == 0:
        return bytes([major << 5 | n])
    return bytes([major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[size]]) + n.to_bytes(size, "big")


@st.composite
def cbor_strings(draw: st.DrawFn, major: int) -> bytes:
    wide = draw(st.integers(0, 2))
    raw = draw(st.binary(max_size=30)) if major == 2 else draw(st.text(max_size=10)).encode()
    if draw(st.booleans()):
        return head(major, len(raw), wide) + raw
    chunk = st.binary(max_size=5) if major == 2 else st.text(max_size=3).map(str.encode)
    parts = draw(st.lists(chunk, max_size=3))
    return (
        bytes([major << 5 | 31]) + b"".join(head(major, len(p), wide) + p for p in parts) + b"\xff"
    )


cbor_leaves = st.one_of(
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3)).map(lambda t: head(0, *t)),
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3)).map(lambda t: head(1, *t)),
    cbor_strings(2),
    cbor_strings(3),
    st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xe0", b"\xf8\x20"]),
    st.binary(min_size=2, max_size=2).map(lambda b: b"\xf9" + b),
    st.binary(min_size=4, max_size=4).map(lambda b: b"\xfa" + b),
    st.binary(min_size=8, max_size=8).map(lambda b: b"\xfb" + b),
)


@st.composite
def cbor_containers(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    kind = draw(st.sampled_from(["array", "map", "tag"]))
    wide = draw(st.integers(0, 2))
    if kind == "tag":  # a tag cbor2 has no decoder for: it returns a CBORTag
        return head(6, draw(st.integers(50000, 2**32)), wide) + draw(children)
    items = draw(st.lists(children, max_size=4))
    if kind == "map":
        items = [draw(cbor_strings(3)) + item for item in items]
    major = 4 if kind == "array" else 5
    if draw(st.booleans()):
        return head(major, len(items), wide) + b"".join(items)
    return bytes([major << 5 | 31]) + b"".join(items) + b"\xff"


cbor_items = st.recursive(cbor_leaves, cbor_containers, max_leaves=20)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(cbor_items, st.binary(max_size=8))
def test_cbor_end_agrees_with_the_stream_decoder(item: bytes, junk: bytes) -> None:
    data = item + junk
    try:
        end = cbor_end_exact(data)
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError):  # cbor2 refuses it (a codec never gets here)
        assume(False)
    event(f"indefinite: {any(b & 31 == 31 for b in item)}")  # roughly
    assert _fastcheck.cbor_end(data) == end == len(item)
    fast = accepted(_fastcheck.cbor_check, _strict.cbor_settle, data, value)
    slow = accepted(_strict._cbor_check, _strict.cbor_settle, data, value)
    assert fast == slow == (not junk and _strict.int_outside(value) is None)


def test_cbor_end_hands_deep_indefinite_nesting_to_the_stream_decoder() -> None:
    deep = b"\x9f" * 300 + b"\xff" * 300
    assert _fastcheck.cbor_end(deep) == -2
    assert cbor_end_exact(deep) == 600
    _strict.cbor_settle(deep, [], _strict.TRAILING)  # the exact decoder finds the end right
    assert _fastcheck.cbor_end(b"\x9f" * 256 + b"\xff" * 256) == 512


# -- the scanners read only their buffer, whatever it holds -------------------------------


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_the_c_scanners_take_any_bytes(data: bytes) -> None:
    assert verdict(_fastcheck.json_check, data, None) in (0, 1)
    assert verdict(_fastcheck.msgpack_check, data, None) in (0, 1)
    assert verdict(_fastcheck.cbor_check, data, None) in (0, 4)
    assert -2 <= _fastcheck.cbor_end(data) <= len(data)
    assert _fastcheck.cbor_end(bytearray(data)) == _fastcheck.cbor_end(data)
    assert verdict(_fastcheck.json_check, memoryview(data), None) == verdict(
        _fastcheck.json_check, data, None
    )


def test_the_c_walk_stops_at_the_recursion_limit() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    for check in (_fastcheck.json_check, _fastcheck.msgpack_check, _fastcheck.cbor_check):
        with pytest.raises(RecursionError):
            check(b"", deep, *LIMITS)
    assert not _fastcheck.plain(deep, 10**9, 10, True, False)  # plain() says no instead


@settings(max_examples=400)
@given(any_values, st.integers(1, 5), st.integers(1, 4))
def test_a_check_proves_a_value_plain_exactly_when_plain_does(
    value: Any, max_depth: int, max_length: int
) -> None:
    # A codec skips the walker on a verdict of 0: the walk must prove what plain() proves.
    for check in (_fastcheck.json_check, _fastcheck.msgpack_check, _fastcheck.cbor_check):
        flagged = bool(check(b"", value, max_depth, max_length) & _strict.NOT_PLAIN)
        assert flagged == (not _fastcheck.plain(value, max_depth, max_length, True, False))


# -- with or without the C extension, the codecs decide alike -----------------------------

flaws = st.sampled_from(
    [
        Pairs([("a", 1), ("a", 2)]),
        [Pairs([("k", Pairs([("b", None), ("c", [1]), ("b", "x")]))])],
        Pairs([("n", 2**64)]),
        [-(2**63) - 1],
        Pairs([("a", "x:y"), ("b", [1.5e19, "\\u0061"])]),  # fine: colons, a big float
        [Pairs([("a", 1)]), Pairs([("a", 2)])],  # fine: one key in two maps
    ]
)


def outcome(name: str, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", CODECS[name].decode(data)
    except DecodeError as exc:
        return "refused", exc.reason


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flaws, st.sampled_from(["json", "msgpack", "cbor"]), st.binary(max_size=2))
def test_the_pure_python_fallback_decides_like_the_c_path(
    tree: Any, name: str, junk: bytes
) -> None:
    try:
        data = body(name, tree) + junk
    except OverflowError:  # msgpack has no integer below -2**63
        return
    fast = outcome(name, data)
    with pure_python():
        slow = outcome(name, data)
    if junk and fast[0] == "refused":  # two flaws: either may be named first
        assert slow[0] == "refused"
    else:
        assert fast == slow


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("json", b'{"a": 1, "a": 2}'),
        ("json", b"[18446744073709551616]"),
        ("msgpack", b"\x82\xa1a\x01\xa1a\x02"),
        ("msgpack", b"\x01\x02"),
        ("cbor", b"\x01\x02"),
    ],
)
def test_the_pure_python_fallback_refuses_too(name: str, data: bytes) -> None:
    with pure_python(), pytest.raises(DecodeError):
        CODECS[name].decode(data)
