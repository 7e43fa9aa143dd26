"""Answered exactly once, by the intended responder: the check behind every scenario.

Rules (theory of operation):

* Every scenario uses names of its own (:func:`scenario_names`): a tenant for our actors,
  and subjects for raw nats-py that no other scenario uses.
* Every responder (or sink, for tells) counts what it handled in a :class:`Tally`;
  responders in other OS processes report theirs over a pipe. The :class:`Ledger` knows
  every responder alive in the run: the scenario's own and those serving other scenarios.
* Each side of a scenario records in a :class:`Target` how many requests (or tells) it
  sent and which responders were meant to handle them.
* After the scenario, once the counts stop moving, :func:`check_answers` holds when each
  side's responders together handled exactly what it sent, and every other responder
  handled nothing. Fewer means another responder took some (two members of one queue
  group); more means some were handled twice (two subscribers on one subject); a
  responder handling messages meant for no one in the scenario shares its subjects.

Anything else raises :class:`MeasurementError`, naming the scenario: its figures would not
measure what their labels say.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, final

from motadata_actors.mailbox import check_id

__all__ = (
    "Counter",
    "Ledger",
    "MeasurementError",
    "ScenarioNames",
    "Tally",
    "Target",
    "check_answers",
    "scenario_names",
)


class MeasurementError(Exception):
    """Raised when a scenario did not measure what it says: wrong or repeated answers.

    Attributes:
        scenario: the scenario's name.
        problems: one sentence per thing that went wrong.
    """

    def __init__(self, scenario: str, problems: Sequence[str]) -> None:
        self.scenario = scenario
        self.problems = tuple(problems)
        super().__init__(
            f"benchmark scenario {scenario!r} did not measure what it says: "
            + "; ".join(self.problems)
        )


@final
@dataclass(frozen=True, slots=True)
class ScenarioNames:
    """The names one scenario uses and no other: a tenant, two raw subjects and a peer's."""

    tenant: str

    @property
    def raw_headers(self) -> str:
        """The subject of the raw nats-py side that sends our headers."""
        return f"bench.{self.tenant}.raw-headers"

    @property
    def raw_bare(self) -> str:
        """The subject of the raw nats-py side that sends no headers."""
        return f"bench.{self.tenant}.raw-bare"

    @property
    def peer(self) -> str:
        """The subject of the peer framework's side (FastStream)."""
        return f"bench.{self.tenant}.peer"

    @property
    def subjects(self) -> tuple[str, ...]:
        """Every subject (or pattern) the scenario's sides may use."""
        return (self.raw_headers, self.raw_bare, self.peer, f"sdk.*.*.*.{self.tenant}")


def scenario_names(run_id: str, key: str) -> ScenarioNames:
    """The names of scenario ``key`` in run ``run_id`` (lowercase ``[a-z0-9_-]`` both)."""
    return ScenarioNames(check_id(f"b{run_id}-{key}", "scenario tenant"))


class Counter(Protocol):
    """Something that counts the messages a responder handled."""

    @property
    def name(self) -> str:
        """Who counts: a responder, in words a failure message can show."""
        ...

    async def handled(self) -> int:
        """Messages handled so far."""
        ...


@final
@dataclass(slots=True)
class Tally:
    """A responder's count in this process: the responder adds one per message it handles."""

    name: str
    count: int = 0

    async def handled(self) -> int:
        """Messages handled so far."""
        return self.count


@final
@dataclass(slots=True)
class Target:
    """What one side of a scenario sent, and which responders were meant to handle it."""

    side: str
    responders: frozenset[str]
    sent: int = 0


def check_answers(
    scenario: str,
    targets: Sequence[Target],
    before: Mapping[str, int],
    after: Mapping[str, int],
) -> dict[str, int]:
    """Messages each responder handled during ``scenario``; raise if any went astray.

    ``before`` and ``after`` are every known responder's counts when the scenario began and
    ended (a responder missing from ``before`` started during it, at zero). Sides that share
    their responders are added up.

    Raises:
        MeasurementError: a side's responders handled more or fewer messages than it sent,
            or another responder handled any.
    """
    delta = {name: count - before.get(name, 0) for name, count in after.items()}
    sent: dict[frozenset[str], int] = {}
    sides: dict[frozenset[str], list[str]] = {}
    for target in targets:
        sent[target.responders] = sent.get(target.responders, 0) + target.sent
        sides.setdefault(target.responders, []).append(target.side)
    problems: list[str] = []
    meant: set[str] = set()
    for responders, count in sent.items():
        if meant & responders:
            problems.append(f"responders {sorted(meant & responders)} serve two sides")
        meant |= responders
        missing = sorted(responders - delta.keys())
        if missing:
            problems.append(f"responders {missing} are not in the ledger")
            continue
        got = sum(delta[name] for name in responders)
        if got != count:
            why = (
                "some were handled more than once"
                if got > count
                else "the rest went to another responder"
            )
            problems.append(
                f"side {' and '.join(map(repr, sides[responders]))} sent {count}, but "
                f"{' + '.join(map(repr, sorted(responders)))} handled {got} ({why})"
            )
    for name in sorted(delta.keys() - meant):
        if delta[name]:
            problems.append(
                f"{name!r} handled {delta[name]} messages meant for another responder "
                "(it shares this scenario's subjects or queue group)"
            )
    if problems:
        raise MeasurementError(scenario, problems)
    return {name: delta[name] for name in sorted(delta)}


@final
class Ledger:
    """Every responder alive in a run, and the check of each scenario against them.

    Args:
        settle: seconds between two readings of the counts; they must agree twice in a row
            (a responder may still be working through messages it was sent).
        settle_timeout: seconds after which counts that keep moving are an error.
    """

    def __init__(self, *, settle: float = 0.05, settle_timeout: float = 10.0) -> None:
        self._counters: dict[str, Counter] = {}
        self._settle = settle
        self._settle_timeout = settle_timeout
        self.records: list[dict[str, object]] = []
        """One record per checked scenario: what each side sent, what each responder handled."""

    def add(self, counter: Counter) -> None:
        """Know ``counter`` from now on (its name must be new)."""
        if counter.name in self._counters:
            raise ValueError(f"two responders are named {counter.name!r}")
        self._counters[counter.name] = counter

    def remove(self, counter: Counter) -> None:
        """Forget ``counter`` (its responder stopped)."""
        self._counters.pop(counter.name, None)

    @contextlib.contextmanager
    def serving(self, *counters: Counter) -> Iterator[None]:
        """Know ``counters`` while the block runs (their responders live that long)."""
        for counter in counters:
            self.add(counter)
        try:
            yield
        finally:
            for counter in counters:
                self.remove(counter)

    async def counts(self) -> dict[str, int]:
        """Every known responder's count, once it holds still for one settle interval."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settle_timeout
        last = await self._read()
        while True:
            await asyncio.sleep(self._settle)
            now = await self._read()
            if now == last:
                return now
            if loop.time() > deadline:
                raise MeasurementError("(settling)", [f"counts kept moving: {now}"])
            last = now

    async def _read(self) -> dict[str, int]:
        return {name: await c.handled() for name, c in list(self._counters.items())}

    @contextlib.asynccontextmanager
    async def scenario(self, name: str, targets: Sequence[Target]) -> AsyncIterator[None]:
        """Check, when the block ends without error, that ``targets`` were answered once.

        Responders the block adds must start at zero and stay in the ledger until the
        block ends.
        """
        before = await self.counts()
        yield
        handled = check_answers(name, targets, before, await self.counts())
        self.records.append(
            {
                "scenario": name,
                "sent": {t.side: t.sent for t in targets},
                "handled": {k: v for k, v in handled.items() if v},
            }
        )
