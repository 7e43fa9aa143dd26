"""The gateway's HTTP side: who may call (tenants by bearer token), how much, and the plain API.

Rules, in the order they apply to one request:

* **Credential.** With tokens configured, ``Authorization: Bearer <token>`` names the
  tenant (401 otherwise); the request never chooses its tenant. Without tokens the
  gateway serves its one tenant, and only on a loopback address (the CLI refuses more).
* **Rate.** Each credential (or, without tokens, each client address) has a token bucket:
  ``rate`` requests per second, ``burst`` at once; past it, 429 with ``Retry-After``.
* **Size.** A body over ``max_body`` bytes is refused (413) from its ``Content-Length``
  before it is read, or as soon as it grows past it.
* **Agent.** Only exposed agents are reachable (404 for any other name).
* **Content negotiation.** The request body is decoded by its ``Content-Type`` over the
  system's codecs (415 for another); the reply is encoded in the first codec the
  ``Accept`` header allows (406 when it allows none), JSON by default.
* **Errors** are RFC 9457 problem details (``application/problem+json``), with our error
  type's name as ``title`` and in ``type`` (``urn:motadata-actors:error:<Name>``): never a
  traceback.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

import orjson

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    ConnectionLost,
    MessageTooLarge,
    NoResponders,
    RemoteError,
    StreamError,
    TenantError,
    TransportClosed,
)

__all__ = (
    "ADMITTED", "Admission", "Limits", "Problem", "negotiate", "problem_for", "is_loopback",
)  # fmt: skip

ADMITTED: Final = "motadata_actors.tenant"
"""The ASGI scope key under which an admitted request's tenant is kept."""

PROBLEM_TYPE: Final = "application/problem+json"
_STATUS: Final[dict[type[ActorsError], int]] = {
    AskTimeout: 504,
    NoResponders: 503,
    TransportClosed: 503,  # the gateway's system is stopping
    ConnectionLost: 503,
    RemoteError: 502,
    StreamError: 502,  # a streaming agent asked for one reply (use A2A message/stream)
    MessageTooLarge: 413,
    CodecError: 400,
    TenantError: 403,
    ConfigError: 400,
}


@final
class Problem(Exception):
    """An HTTP error as RFC 9457 problem details.

    Attributes:
        status: the HTTP status.
        title: our error type's name (``AskTimeout``, ``Unauthorized``, ...).
        detail: what happened, for a person.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self, status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self, instance: str) -> bytes:
        """The problem document (``type``, ``title``, ``status``, ``detail``, ``instance``)."""
        return orjson.dumps(
            {
                "type": f"urn:motadata-actors:error:{self.title}",
                "title": self.title,
                "status": self.status,
                "detail": self.detail,
                "instance": instance,
            }
        )


def problem_for(exc: ActorsError) -> Problem:
    """The problem an error of ours becomes (status by its type; RemoteError says whose)."""
    status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 500)
    title = type(exc).__name__
    if isinstance(exc, RemoteError):
        return Problem(status, title, f"the agent's handler raised {exc.type_name}: {exc}")
    return Problem(status, title, str(exc)[:2000])


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) listens on loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@final
class Limits:
    """What one credential may send.

    Args:
        max_body: the largest request body in bytes.
        rate: requests per second, sustained.
        burst: requests at once above the rate.
    """

    def __init__(self, *, max_body: int = 1024 * 1024, rate: float = 200.0, burst: int = 400):
        if max_body < 1 or rate <= 0 or burst < 1:
            raise ConfigError(
                f"gateway limits must be positive: max_body={max_body}, rate={rate}, burst={burst}"
            )
        self.max_body = max_body
        self.rate = rate
        self.burst = burst


@final
class Admission:
    """Credentials, rates and exposed names: decides who may call what (sans-io).

    Args:
        tenants: the tenants served.
        tokens: bearer token -> tenant; None: no credential, the one tenant served.
        expose: the agent names reachable.
        limits: per-credential limits.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        tenants: Sequence[str],
        tokens: Mapping[str, str] | None,
        expose: Sequence[str],
        limits: Limits,
        clock: Any = time.monotonic,
    ) -> None:
        if tokens is None and len(tenants) != 1:
            raise ConfigError(
                "a gateway for several tenants needs bearer tokens to tell them apart"
            )
        for token, tenant in (tokens or {}).items():
            if tenant not in tenants:
                raise ConfigError(f"a token names tenant {tenant!r}, which this gateway serves not")
            if len(token) < 16:
                raise ConfigError("bearer tokens must be at least 16 characters")
        self._tenants = list(tenants)
        self._tokens = dict(tokens) if tokens is not None else None
        self.expose = list(expose)
        self.limits = limits
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # credential -> (tokens, when)

    @property
    def has_tokens(self) -> bool:
        """Whether requests need a bearer token."""
        return self._tokens is not None

    def tenant(self, authorization: str | None) -> tuple[str, str]:
        """``(tenant, credential)`` of a request's ``Authorization`` header.

        Raises:
            Problem: 401, a missing or unknown token.
        """
        if self._tokens is None:
            return self._tenants[0], ""
        scheme, _, token = (authorization or "").partition(" ")
        tenant = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise Problem(
                401, "Unauthorized", "a bearer token of a tenant is required",
                {"WWW-Authenticate": 'Bearer realm="motadata-actors"'},
            )  # fmt: skip
        return tenant, token.strip()

    def take(self, credential: str) -> None:
        """Spend one request of ``credential``'s bucket.

        Raises:
            Problem: 429 with ``Retry-After`` when it is empty.
        """
        now = self._clock()
        limits = self.limits
        left, when = self._buckets.get(credential, (float(limits.burst), now))
        left = min(float(limits.burst), left + (now - when) * limits.rate)
        if left < 1.0:
            wait = (1.0 - left) / limits.rate
            self._buckets[credential] = (left, now)
            raise Problem(
                429, "TooManyRequests",
                f"more than {limits.rate:g} requests per second (burst {limits.burst})",
                {"Retry-After": str(max(1, round(wait + 0.5)))},
            )  # fmt: skip
        self._buckets[credential] = (left - 1.0, now)
        if len(self._buckets) > 100_000:  # bounded: forget the idle
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}

    def agent(self, name: str) -> str:
        """``name`` when it is exposed.

        Raises:
            Problem: 404.
        """
        if name not in self.expose:
            raise Problem(404, "NotFound", f"no agent {name!r} is exposed here")
        return name

    def size(self, content_length: str | None) -> None:
        """Refuse a body whose declared length is over the limit.

        Raises:
            Problem: 413, or 400 for a malformed ``Content-Length``.
        """
        if content_length is None:
            return
        if not content_length.isdigit():
            raise Problem(400, "BadRequest", "a malformed Content-Length")
        if int(content_length) > self.limits.max_body:
            raise too_large(int(content_length), self.limits.max_body)


def too_large(size: int, limit: int) -> Problem:
    """The 413 problem for a body of ``size`` bytes."""
    return Problem(413, "MessageTooLarge", f"a body of {size} bytes exceeds {limit}")


def negotiate(accept: str | None, offered: Mapping[str, str]) -> str:
    """The codec name to answer in, from ``Accept`` and ``offered`` (content type -> name).

    Quality values are honoured (``q=0`` refuses); ``*/*`` and ``application/*`` take the
    first offered; absent means JSON.

    Raises:
        Problem: 406 when nothing offered is acceptable.
    """
    if not accept or not accept.strip():
        return offered["application/json"]
    ranges: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # nan, inf, or out of range: not a quality
                    q = 0.0
        ranges.append((q, -i, media.lower()))
    for q, _, media in sorted(ranges, reverse=True):
        if q <= 0:
            continue
        if media in offered:
            return offered[media]
        if media in ("*/*", "application/*"):
            return offered["application/json"]
    raise Problem(406, "NotAcceptable", f"none of {accept!r} is offered: {', '.join(offered)}")
