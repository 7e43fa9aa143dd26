from __future__ import annotations

import attrs
import pytest

from motadata_actors import CodecError, DecodeError, message
from motadata_actors.codecs import Codecs, TypeRegistry, default_registry, wire_name_of


def json_codec(registry: TypeRegistry) -> Codecs:
    return Codecs("json", registry=registry)


def test_message_makes_a_frozen_attrs_class_registered_by_wire_name() -> None:
    registry = TypeRegistry()

    @message("tests.plan.v1", registry=registry)
    class Plan:
        goal: str
        steps: int = 3

    assert attrs.has(Plan)
    plan = Plan(goal="ship")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.goal = "x"  # type: ignore[misc]
    assert wire_name_of(plan) == "tests.plan.v1"
    assert wire_name_of({"goal": "ship"}) is None
    assert registry.lookup("tests.plan.v1") is Plan
    assert "tests.plan.v1" in registry
    assert registry.wire_names() == ["tests.plan.v1"]
    codec = json_codec(registry).default
    assert codec.decode(codec.encode(plan), Plan) == plan


def test_an_existing_attrs_class_is_kept_as_is() -> None:
    registry = TypeRegistry()

    @message("tests.mutable.v1", registry=registry)
    @attrs.define
    class Mutable:
        n: int

    m = Mutable(1)
    m.n = 2
    codec = json_codec(registry).default
    assert codec.decode(b'{"n": 5}', Mutable) == Mutable(5)


def test_the_default_registry_is_used_when_none_is_named() -> None:
    @message("tests.defaulted.v1")
    class Defaulted:
        x: int

    assert default_registry().lookup("tests.defaulted.v1") is Defaulted


def test_validators_reject_wrong_values_as_decode_errors() -> None:
    registry = TypeRegistry()

    @message("tests.checked.v1", registry=registry)
    class Checked:
        n: int = attrs.field(validator=attrs.validators.ge(0))

    with pytest.raises(DecodeError, match=r"Checked refused the fields"):
        json_codec(registry).default.decode(b'{"n": -1}', Checked)


@pytest.mark.parametrize(
    "name",
    ["", "Plan.v1", "plan", "plan.V1", "plan..v1", "plan.v", "plan v1", "x" * 130 + ".v1", 3],
)
def test_bad_wire_names_are_refused(name: object) -> None:
    with pytest.raises(CodecError, match="invalid wire name"):
        message(name)  # type: ignore[arg-type]


def test_a_wire_name_cannot_be_taken_twice() -> None:
    registry = TypeRegistry()

    @message("tests.twice.v1", registry=registry)
    class First:
        a: int

    with pytest.raises(CodecError, match=r"already registered"):

        @message("tests.twice.v1", registry=registry)
        class Second:
            b: int


def test_unknown_wire_names_are_codec_errors() -> None:
    with pytest.raises(CodecError, match=r"unknown message type 'nope\.v1'"):
        TypeRegistry().lookup("nope.v1")


def test_a_cycle_of_upgrades_is_refused() -> None:
    registry = TypeRegistry()

    @message("tests.ping.v1", registry=registry)
    class Ping:
        n: int

    @message("tests.pong.v1", registry=registry, upgrade={Ping: lambda p: Pong(p.n)})
    class Pong:
        n: int

    registry.register(Ping, "tests.ping.v1", upgrade={Pong: lambda p: Ping(p.n)})
    with pytest.raises(DecodeError, match="cycle"):
        json_codec(registry).default.decode(b'{"n": 1}', Ping)
