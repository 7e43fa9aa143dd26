"""JSON Schema of typed messages: what the JSON codec writes validates, what it refuses fails."""

from __future__ import annotations

import array
import enum
from typing import Any

import jsonschema
import orjson
import pytest

from motadata_actors import DecodeError
from motadata_actors.codecs import Codecs, TypeRegistry, field, json_schema, message

registry = TypeRegistry()


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


@message("test.schema.step.v1", registry=registry)
class Step:
    """One step of a plan.

    More words that stay out of the description.
    """

    name: str = field(proto=1)
    weight: float = field(proto=2, default=1.0)


@message("test.schema.plan.v1", registry=registry)
class Plan:
    goal: str = field(proto=1)
    steps: list[Step] = field(proto=2, factory=list)
    tags: dict[str, int] = field(proto=3, factory=dict)
    priority: Priority = field(proto=4, default=Priority.LOW)
    parent: Plan | None = field(proto=5, default=None)
    blob: bytes = field(proto=6, default=b"")
    extra: Any = field(proto=7, default=None)
    ids: array.array = field(proto=8, factory=lambda: array.array("q"))  # type: ignore[type-arg]


CODEC = Codecs(registry=registry).named("json")
SCHEMA = json_schema(Plan)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_the_schema_is_valid_json_schema_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["title"] == "test.schema.plan.v1"
    assert SCHEMA["required"] == ["goal"]
    assert json_schema(Step)["description"] == "One step of a plan."


def test_what_the_json_codec_writes_validates() -> None:
    plan = Plan(
        "ship", [Step("build"), Step("test", 0.5)], {"a": 1}, Priority.HIGH,
        Plan("parent goal"), b"\x00\x01", {"any": [1, "x"]}, array.array("q", [1, 2]),
    )  # fmt: skip
    VALIDATOR.validate(orjson.loads(CODEC.encode(plan)))
    VALIDATOR.validate(orjson.loads(CODEC.encode(Plan("minimal"))))


@pytest.mark.parametrize(
    "doc",
    [
        {},  # goal missing
        {"goal": 3},
        {"goal": "g", "steps": [{"weight": 1.0}]},  # a step without its name
        {"goal": "g", "tags": {"a": "x"}},
        {"goal": "g", "tags": {"a": 2**63}},  # past the 64-bit model
        {"goal": "g", "priority": "urgent"},
        {"goal": "g", "parent": {"goal": 1}},
        {"goal": "g", "blob": "not a $bytes map"},
    ],
)
def test_what_a_receiver_refuses_fails_validation(doc: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(doc)
    with pytest.raises(DecodeError):  # the codec refuses it too
        CODEC.decode(orjson.dumps(doc), Plan)
