"""Telemetry: OpenTelemetry setup, propagation, spans and metrics per message, log correlation.

A leaf package: it knows nothing of NATS or actors. Library code uses the OpenTelemetry
API only; :func:`setup` wires the SDK (imported only then).
"""

from typing import Any

from ._instrument import SCHEMA_URL
from ._logging import CORRELATED_FORMAT, CorrelationFilter, enable_log_correlation, get_logger

__all__ = (
    "CORRELATED_FORMAT",
    "SCHEMA_URL",
    "CorrelationFilter",
    "enable_log_correlation",
    "get_logger",
    "setup",
)


def setup(service_name: str | None = None, *, set_global: bool = True) -> tuple[Any, Any]:
    """Build SDK tracer and meter providers from ``OTEL_*``; see :func:`._setup.setup`."""
    from ._setup import setup as _setup

    return _setup(service_name, set_global=set_global)
