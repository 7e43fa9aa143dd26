"""Telemetry: OpenTelemetry setup, propagation, spans and metrics per message, log correlation.

A leaf package: it knows nothing of NATS or actors. Library code uses the OpenTelemetry
API only; :func:`setup` wires the SDK (imported only then, as is the Prometheus exporter
when a :class:`PrometheusEndpoint` is made).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._instrument import SCHEMA_URL
from ._logging import CORRELATED_FORMAT, CorrelationFilter, enable_log_correlation, get_logger
from ._logs import LogExportHandler, export_logs
from ._prometheus import PrometheusEndpoint

if TYPE_CHECKING:
    from motadata_actors._settings import Settings

__all__ = (
    "CORRELATED_FORMAT",
    "SCHEMA_URL",
    "CorrelationFilter",
    "LogExportHandler",
    "PrometheusEndpoint",
    "destinations",
    "enable_log_correlation",
    "export_logs",
    "get_logger",
    "setup",
)


def setup(
    service_name: str | None = None,
    *,
    set_global: bool = True,
    settings: Settings | None = None,
) -> tuple[Any, Any]:
    """Build SDK tracer and meter providers from ``OTEL_*``; see :func:`._setup.setup`."""
    from ._setup import setup as _setup

    return _setup(service_name, set_global=set_global, settings=settings)


def destinations() -> tuple[str, ...]:
    """Where telemetry goes, for people to read; see :func:`._setup.destinations`.

    Empty while :func:`setup` has not made the global providers (nothing is imported).
    """
    module = sys.modules.get(f"{__name__}._setup")
    return module.destinations() if module is not None else ()
