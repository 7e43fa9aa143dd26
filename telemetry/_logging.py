"""The library's loggers, and log correlation with traces and actors.

The library logs through the ``motadata_actors`` logger tree, which has a
``NullHandler``: applications configure logging. :class:`CorrelationFilter` adds
``trace_id``, ``span_id``, ``tenant`` and ``agent`` to every record, so a format such as
:data:`CORRELATED_FORMAT` ties a log line to its trace and actor.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Final

__all__ = (
    "CORRELATED_FORMAT",
    "CorrelationFilter",
    "enable_log_correlation",
    "get_logger",
    "log_fields",
)

_ROOT = logging.getLogger("motadata_actors")
_ROOT.addHandler(logging.NullHandler())

log_fields: ContextVar[tuple[str, str] | None] = ContextVar("motadata_actors_log", default=None)
"""(tenant, agent) of the message being handled, set by the actor runtime."""

CORRELATED_FORMAT: Final = (
    "%(asctime)s %(levelname)s %(name)s [tenant=%(tenant)s agent=%(agent)s "
    "trace=%(trace_id)s span=%(span_id)s] %(message)s"
)


def get_logger(name: str) -> logging.Logger:
    """Return the library logger ``motadata_actors.<name>``."""
    return _ROOT.getChild(name)


class CorrelationFilter(logging.Filter):
    """Adds ``trace_id``, ``span_id`` (hex, or ``-``), ``tenant`` and ``agent`` to records."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops it."""
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = "-"
        fields = log_fields.get()
        record.tenant, record.agent = fields if fields is not None else ("-", "-")
        return True


def enable_log_correlation(handler: logging.Handler | None = None) -> None:
    """Add a :class:`CorrelationFilter` to ``handler``, or to every handler of the root logger."""
    handlers = [handler] if handler is not None else logging.getLogger().handlers
    for h in handlers:
        if not any(isinstance(f, CorrelationFilter) for f in h.filters):
            h.addFilter(CorrelationFilter())
