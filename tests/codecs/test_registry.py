from __future__ import annotations

import attrs
import pytest

from motadata_actors import CodecError, message
from motadata_actors.codecs import TypeRegistry, default_registry, wire_name_of


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
    assert registry.lookup("tests.plan.v1") is Plan
    assert "tests.plan.v1" in registry
    assert registry.to_value(plan) == {"goal": "ship", "steps": 3}
    assert registry.from_value("tests.plan.v1", {"goal": "ship"}) == plan


def test_an_existing_attrs_class_is_kept_as_is() -> None:
    registry = TypeRegistry()

    @message("tests.mutable.v1", registry=registry)
    @attrs.define
    class Mutable:
        n: int

    m = Mutable(1)
    m.n = 2
    assert registry.from_value("tests.mutable.v1", {"n": 5}) == Mutable(5)


def test_the_default_registry_is_used_when_none_is_named() -> None:
    @message("tests.defaulted.v1")
    class Defaulted:
        x: int

    assert default_registry().lookup("tests.defaulted.v1") is Defaulted


def test_schema_evolution_unknown_fields_ignored_defaults_filled() -> None:
    registry = TypeRegistry()

    @message("tests.evolve.v1", registry=registry)
    class V2:
        name: str
        added: int = 7

    # An old sender (no `added`) and a newer one (an extra field) both decode.
    assert registry.from_value("tests.evolve.v1", {"name": "a"}) == V2("a", 7)
    assert registry.from_value("tests.evolve.v1", {"name": "a", "added": 1, "later": True}) == V2(
        "a", 1
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({}, "missing required field 'name'"),
        ([1, 2], "expected a mapping of fields, got list"),
        ("x", "expected a mapping of fields, got str"),
    ],
)
def test_bad_bodies_are_codec_errors_naming_the_problem(value: object, error: str) -> None:
    registry = TypeRegistry()

    @message("tests.named.v1", registry=registry)
    class Named:
        name: str

    with pytest.raises(CodecError, match=error):
        registry.from_value("tests.named.v1", value)


@attrs.frozen
class Inner:
    a: int


def test_nested_attrs_fields_are_rebuilt() -> None:
    registry = TypeRegistry()

    @message("tests.outer.v1", registry=registry)
    class Outer:
        inner: Inner
        tag: str = "t"

    value = registry.to_value(Outer(Inner(1)))
    assert value == {"inner": {"a": 1}, "tag": "t"}
    assert registry.from_value("tests.outer.v1", value) == Outer(Inner(1))


def test_validators_reject_wrong_types_as_codec_errors() -> None:
    registry = TypeRegistry()

    @message("tests.checked.v1", registry=registry)
    class Checked:
        n: int = attrs.field(validator=attrs.validators.instance_of(int))

    with pytest.raises(CodecError, match=r"tests\.checked\.v1"):
        registry.from_value("tests.checked.v1", {"n": "three"})


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
