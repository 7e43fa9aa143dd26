"""The C fast path of the value check agrees with the pure-Python walker."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motadata_actors.codecs import TypeRegistry
from motadata_actors.codecs._values import ModelError, Walker, _plain

registry = TypeRegistry()
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.sampled_from(["$type", "$bytes", "$value"])
)
values = st.recursive(
    leaves,
    lambda c: (
        st.lists(c, max_size=4)
        | st.lists(c, max_size=3).map(tuple)
        | st.dictionaries(
            st.text(max_size=6)
            | st.sampled_from(["$type", "$value", "$bytes"])
            | st.integers(0, 3),
            c,
            max_size=3,
        )
    ),
    max_leaves=20,
)


def walker(fast: bool, json_bytes: bool, max_length: int = 3) -> Walker:
    return Walker(
        max_depth=4, max_length=max_length, json_bytes=json_bytes,
        to_fields=registry.to_fields, from_fields=registry.from_fields, fast=fast,
    )  # fmt: skip


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except ModelError as exc:
        return "error", str(exc)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def test_the_c_fast_path_is_built() -> None:
    assert _plain is not None, "codecs/_fastcheck.c did not compile (setup.py, optional=True)"


@settings(max_examples=400)
@given(values, st.booleans())
def test_fast_and_pure_python_walkers_agree(value: Any, json_bytes: bool) -> None:
    for direction in ("out", "back"):
        fast = outcome(getattr(walker(True, json_bytes), direction), value)
        slow = outcome(getattr(walker(False, json_bytes), direction), value)
        assert fast[0] == slow[0], (direction, fast, slow)
        if fast[0] == "ok":
            assert same(fast[1], slow[1])


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, None, "x", True]}, [1, [2, [3]]], (1, "a"), {}, [], "s", -(2**63), 2**63 - 1],
)
def test_plain_values_pass_untouched(value: Any) -> None:
    assert walker(True, False, max_length=10).out(value) is value


@pytest.mark.parametrize("raw", ["\x80", "é==", "not base64!", "AA="])
def test_malformed_base64_in_a_bytes_map_is_a_model_error(raw: str) -> None:
    for fast in (True, False):
        with pytest.raises(ModelError, match="invalid base64"):
            walker(fast, True).back({"$bytes": raw})
