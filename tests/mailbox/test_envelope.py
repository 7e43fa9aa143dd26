from __future__ import annotations

import pytest

from motadata_actors import CodecError, MessageTooLarge, message
from motadata_actors.codecs import Codecs, TypeRegistry
from motadata_actors.mailbox import (
    CONTENT_TYPE,
    ERROR,
    MESSAGE_ID,
    MESSAGE_TYPE,
    decode_body,
    decode_error,
    encode_body,
    encode_error,
    new_message_id,
)
from motadata_actors.mailbox._envelope import check_size, message_size

registry = TypeRegistry()
codecs = Codecs("json", registry=registry)


@message("tests.env.v1", registry=registry)
class Env:
    a: int


def test_message_ids_are_unique_and_short() -> None:
    ids = {new_message_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) < 32 for i in ids)


def test_size_counts_the_nats_header_block() -> None:
    assert message_size(b"abc", None) == 3
    # "NATS/1.0\r\n" + "K: vv\r\n" + "\r\n" + body
    assert message_size(b"abc", {"K": "vv"}) == 10 + 7 + 2 + 3
    # A value's bytes as sent (UTF-8), not its characters: "é" is two, "€" three.
    assert message_size(b"", {"K": "é€", "L": "v"}) == 10 + (3 + 5 + 2) + (3 + 1 + 2) + 2
    check_size(b"x" * 10, None, 10)
    with pytest.raises(MessageTooLarge) as info:
        check_size(b"x" * 10, {"K": "v"}, 20)
    assert (info.value.size, info.value.limit) == (10 + 6 + 2 + 10, 20)


def test_typed_body_sets_content_type_and_message_type_only() -> None:
    headers: dict[str, str] = {}
    data = encode_body(Env(1), codecs.default, headers)
    assert headers == {MESSAGE_TYPE: "tests.env.v1"}  # JSON, the default, goes unnamed
    assert decode_body(data, headers, codecs) == Env(1)
    plain: dict[str, str] = {}
    assert decode_body(encode_body([1], codecs.default, plain), plain, codecs) == [1]
    assert MESSAGE_TYPE not in plain


def test_the_receiver_decodes_by_content_type_whatever_its_default() -> None:
    msgpack_side = Codecs("msgpack", registry=registry)
    headers: dict[str, str] = {}
    data = encode_body(Env(2), msgpack_side.default, headers)
    assert headers[CONTENT_TYPE] == "application/msgpack"
    assert decode_body(data, headers, codecs) == Env(2)  # a JSON-default receiver


def test_error_replies_round_trip_and_tolerate_foreign_bodies() -> None:
    data, headers = encode_error("KeyError", "missing", codecs.default, origin="handler")
    assert headers[ERROR] == "KeyError"
    assert MESSAGE_ID not in headers  # the reply subject ties a reply to its ask
    assert decode_error(data, headers, codecs) == ("KeyError", "missing", "handler")
    assert decode_error(b"\xffgarbage", {ERROR: "Oops"}, codecs) == (
        "Oops",
        "\ufffdgarbage",
        "handler",
    )
    assert decode_error(b'"text"', {ERROR: "Oops"}, codecs) == ("Oops", "text", "handler")


def test_decode_errors_are_codec_errors() -> None:
    with pytest.raises(CodecError):
        decode_body(b"{", {CONTENT_TYPE: "application/json"}, codecs)


def test_message_ids_carry_the_second_they_were_made_and_others_are_not_judged() -> None:
    import time

    from motadata_actors.mailbox import new_message_id
    from motadata_actors.mailbox._envelope import message_id_time

    before = int(time.time())
    made = message_id_time(new_message_id())
    assert made is not None and before <= made <= time.time()
    assert new_message_id() != new_message_id()
    for foreign in (
        "order-42", "x" * 40, "", "abcdefghijkl.-1234567.1", "abcdefghijkl.12 34567.1",
        "abcdefghijkl.zzzzzzzz.1", "abcdefghijkl." + "\u0663" * 8 + ".1",
    ):  # fmt: skip
        assert message_id_time(foreign) is None


def test_received_headers_are_canonical_names_without_regard_to_case() -> None:
    from motadata_actors.mailbox._envelope import received_headers

    ours = {"Content-Type": "application/json", "Sdk-Message-Id": "x"}
    assert received_headers(ours) is ours  # our own senders' names: no copy
    assert received_headers(None) is None
    foreign = {"content-type": "application/cbor", "SDK-TENANT-ID": "a", "X-Custom": "1"}
    assert received_headers(foreign) == {
        "Content-Type": "application/cbor",
        "Sdk-Tenant-Id": "a",
        "X-Custom": "1",
    }


@pytest.mark.parametrize(
    "pair",
    [("Sdk-Tenant-Id", "sdk-tenant-id"), ("X-Custom", "x-CUSTOM"), ("traceparent", "Traceparent")],
)
def test_received_headers_refuse_one_name_in_two_cases(pair: tuple[str, str]) -> None:
    from motadata_actors import CodecError
    from motadata_actors.mailbox._envelope import received_headers

    with pytest.raises(CodecError, match="more than once"):
        received_headers({pair[0]: "a", pair[1]: "b"})
