"""Typed messages the codec tests share (module level, so annotations resolve)."""

from __future__ import annotations

import enum
from typing import Any

from motadata_actors.codecs import TypeRegistry, field, message

registry = TypeRegistry()


class Mood(enum.Enum):
    CALM = "calm"
    BUSY = "busy"


@message("tests.point.v1", registry=registry)
class Point:
    x: float = field(proto=1)
    y: float = field(proto=2)


@message("tests.task.v1", registry=registry)
class Task:
    title: str = field(proto=1)
    priority: int = field(proto=2, default=0)
    done: bool = field(proto=3, default=False)
    blob: bytes = field(proto=4, default=b"")
    tags: list[str] = field(proto=5, factory=list)
    scores: dict[str, float] = field(proto=6, factory=dict)
    where: Point | None = field(proto=7, default=None)
    path: list[Point] = field(proto=8, factory=list)
    extra: Any = field(proto=9, default=None)
    note: str | None = field(proto=10, default=None)
    mood: Mood = field(proto=11, default=Mood.CALM)
    dims: tuple[int, ...] = field(proto=12, default=())
    subtasks: list[Task] = field(proto=13, factory=list)


# Schema evolution: the same wire name as seen by old and new code.
old_registry = TypeRegistry()
new_registry = TypeRegistry()


@message("tests.evolving.v1", registry=old_registry)
class EvolvingOld:
    name: str = field(proto=1)
    count: int = field(proto=2, default=1)


@message("tests.evolving.v1", registry=new_registry)
class EvolvingNew:
    name: str = field(proto=1)
    count: int = field(proto=2, default=1)
    label: str = field(proto=3, default="none")  # added later, optional


# Rolling upgrade: v1 and v2 side by side, v1 upgraded on arrival.
@message("tests.plan.v1", registry=registry)
class PlanV1:
    goal: str = field(proto=1)


@message(
    "tests.plan.v2", registry=registry, upgrade={PlanV1: lambda old: PlanV2(goal=old.goal, steps=1)}
)
class PlanV2:
    goal: str = field(proto=1)
    steps: int = field(proto=2)
