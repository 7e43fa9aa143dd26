from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motadata_actors import CodecError
from motadata_actors.codecs import JsonCodec, codec_for_content_type, codec_named

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@given(values)
def test_json_round_trips_plain_values(value: Any) -> None:
    codec = JsonCodec()
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", 2**64, {1: "int key"}])
def test_values_json_cannot_carry_are_refused(value: object) -> None:
    with pytest.raises(CodecError, match="cannot encode as JSON"):
        JsonCodec().encode(value)


@pytest.mark.parametrize("data", [b"{", b"\xff\xfe", b"[1,]", b"NaN", b"{'a': 1}"])
def test_malformed_bytes_are_codec_errors(data: bytes) -> None:
    with pytest.raises(CodecError, match="malformed JSON"):
        JsonCodec().decode(data)


def test_empty_body_is_none() -> None:
    assert JsonCodec().decode(b"") is None


def test_lookup_by_name_and_content_type() -> None:
    assert codec_named("json").content_type == "application/json"
    assert codec_for_content_type("application/json").name == "json"
    assert codec_for_content_type(None).name == "json"  # a foreign client's message
    with pytest.raises(CodecError, match="unknown codec 'yaml'"):
        codec_named("yaml")
    with pytest.raises(CodecError, match="unsupported Content-Type"):
        codec_for_content_type("text/plain")
