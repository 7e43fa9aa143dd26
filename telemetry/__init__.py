"""Telemetry: logging now; OpenTelemetry setup, propagation and per-message spans as they land.

A leaf package: it knows nothing of NATS or actors.
"""

from ._logging import get_logger

__all__ = ("get_logger",)
