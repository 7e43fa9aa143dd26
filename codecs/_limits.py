"""Decoding and encoding limits, checked before and during every decode."""

from __future__ import annotations

from typing import final

import attrs

from motadata_actors._errors import ConfigError

__all__ = ("Limits",)


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ConfigError(f"Limits.{attribute.name} must be a positive integer, not {value!r}")


@final
@attrs.frozen(slots=True)
class Limits:
    """Bounds on a message, so hostile or broken input cannot exhaust memory or time.

    Attributes:
        max_size: the largest encoded message in bytes, headers and body together. The
            default stays below nats-server's default ``max_payload`` (1 MiB); the
            effective limit is the smaller of this and the server's.
        max_depth: the deepest nesting of lists, maps and typed messages.
        max_length: the most items in one list or map.
    """

    max_size: int = attrs.field(default=1024 * 1024 - 4096, validator=_positive)
    max_depth: int = attrs.field(default=32, validator=_positive)
    max_length: int = attrs.field(default=100_000, validator=_positive)
