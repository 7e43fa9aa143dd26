"""Policies as values: restart backoff, restart intensity, and the per-ask retry policy.

Sans-io: plain synchronous functions over values and an injected clock reading,
tested without any server or event loop.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Literal, final

import attrs

from motadata_actors._errors import ActorsError, AskTimeout, ConfigError, NoResponders

__all__ = (
    "AskAttempts",
    "AskPolicy",
    "Backoff",
    "RestartIntensity",
    "RestartType",
    "Strategy",
)

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which siblings restart with a failed child: itself; all; itself and those started after it."""

RestartType = Literal["permanent", "transient", "temporary"]
"""permanent: always restarted; transient: only after a failure; temporary: never."""

STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES: tuple[RestartType, ...] = ("permanent", "transient", "temporary")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, (int, float)) or value < 0 or value != value:
        raise ConfigError(f"{attribute.name} must be a non-negative number, not {value!r}")


@final
@attrs.frozen(slots=True)
class Backoff:
    """Exponential backoff with jitter, capped.

    The n-th delay (from 0) is ``min(maximum, initial * multiplier**n)``, then spread by
    ``jitter`` (0.2 means a uniform factor in [0.8, 1.2]), never above ``maximum``.

    Args:
        initial: the first delay, in seconds.
        maximum: the cap, in seconds.
        multiplier: the growth factor.
        jitter: the relative spread, in [0, 1].
    """

    initial: float = attrs.field(default=0.05, validator=_non_negative)
    maximum: float = attrs.field(default=2.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.2, validator=_non_negative)

    def delay(self, n: int, rand: Callable[[], float] = random.random) -> float:
        """The delay before retry or restart number ``n`` (0 for the first)."""
        base = min(self.maximum, self.initial * self.multiplier ** min(n, 64))
        spread = 1.0 + self.jitter * (2.0 * rand() - 1.0)
        return min(self.maximum, max(0.0, base * spread))


@final
class RestartIntensity:
    """At most ``max_restarts`` restarts within ``within`` seconds, or escalate.

    Args:
        max_restarts: restarts allowed inside the window.
        within: the window, in seconds.
    """

    __slots__ = ("_times", "max_restarts", "within")

    def __init__(self, max_restarts: int, within: float) -> None:
        if type(max_restarts) is not int or max_restarts < 0:
            raise ConfigError(f"max_restarts must be a whole number >= 0, not {max_restarts!r}")
        if not isinstance(within, (int, float)) or not within > 0:
            raise ConfigError(f"within must be a positive number of seconds, not {within!r}")
        self.max_restarts = max_restarts
        self.within = float(within)
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; return False when the intensity is exceeded."""
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.within:
            times.popleft()
        return len(times) <= self.max_restarts

    def recent(self, now: float) -> int:
        """How many restarts lie inside the window ending at ``now``."""
        return sum(1 for t in self._times if t > now - self.within)

    def reset(self) -> None:
        """Forget past restarts (after the supervisor itself restarted)."""
        self._times.clear()


_DEFAULT_RETRY_ON: tuple[type[ActorsError], ...] = (AskTimeout, NoResponders)


@final
@attrs.frozen(slots=True)
class AskPolicy:
    """How an ask waits and retries.

    Args:
        timeout: seconds for the whole ask, all attempts together.
        attempt_timeout: seconds for one attempt; ``timeout / attempts`` when None.
        attempts: how many times to send (the same ``Sdk-Message-Id`` each time).
        backoff: the pause between attempts (never past the timeout).
        retry_on: the errors that start another attempt; handler errors
            (:class:`RemoteError`) are not retried by default.
    """

    timeout: float = attrs.field(default=5.0)
    attempt_timeout: float | None = None
    attempts: int = 1
    backoff: Backoff = attrs.field(factory=lambda: Backoff(0.05, 1.0))
    retry_on: tuple[type[BaseException], ...] = _DEFAULT_RETRY_ON

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.timeout, (int, float)) or not 0 < self.timeout < float("inf"):
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if self.attempt_timeout is not None and (
            not isinstance(self.attempt_timeout, (int, float)) or not self.attempt_timeout > 0
        ):
            raise ConfigError(f"attempt_timeout must be positive, not {self.attempt_timeout!r}")
        if type(self.attempts) is not int or self.attempts < 1:
            raise ConfigError(f"attempts must be a whole number >= 1, not {self.attempts!r}")

    def per_attempt(self) -> float:
        """Seconds one attempt may take."""
        if self.attempt_timeout is not None:
            return min(self.attempt_timeout, self.timeout)
        return self.timeout / self.attempts

    def with_overrides(
        self,
        *,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        attempts: int | None = None,
    ) -> AskPolicy:
        """Return this policy with the given fields replaced (None keeps them)."""
        if timeout is None and attempt_timeout is None and attempts is None:
            return self
        changes: dict[str, object] = {}
        if timeout is not None:
            changes["timeout"] = timeout
        if attempt_timeout is not None:
            changes["attempt_timeout"] = attempt_timeout
        if attempts is not None:
            changes["attempts"] = attempts
        return attrs.evolve(self, **changes)  # type: ignore[arg-type]

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` starts another attempt."""
        return isinstance(exc, self.retry_on)


@final
class AskAttempts:
    """The attempts of one ask under a policy, within its budget (sans-io).

    Rules: an attempt may take ``policy.per_attempt()`` seconds, never past the ask's
    deadline; after a retryable failure the next attempt waits the policy's backoff,
    unless that would reach past the deadline; ``policy.attempts`` at most.

    Args:
        policy: the ask policy.
        budget: seconds the whole ask may take.
        now: the clock's time when the ask starts.
    """

    __slots__ = ("_deadline", "_policy", "last", "number")

    def __init__(self, policy: AskPolicy, budget: float, now: float) -> None:
        self._policy = policy
        self._deadline = now + budget
        self.number = 0
        """The attempt under way (0 before the first)."""
        self.last: BaseException | None = None
        """Why the last attempt failed."""

    def next(self, now: float) -> float | None:
        """Start the next attempt: return the seconds it may take, None when none is left."""
        left = self._deadline - now
        if self.number >= self._policy.attempts or left <= 0:
            return None
        self.number += 1
        return min(self._policy.per_attempt(), left)

    def failed(self, exc: BaseException, now: float) -> float | None:
        """The attempt failed with ``exc``: the pause before the next one, or None to stop."""
        self.last = exc
        policy = self._policy
        if not policy.retryable(exc) or self.number >= policy.attempts:
            return None
        pause = min(policy.backoff.delay(self.number - 1), self._deadline - now)
        return pause if pause > 0 else None
