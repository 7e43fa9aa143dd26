"""OpenTelemetry SDK wiring from the standard ``OTEL_*`` environment.

Imported lazily: with telemetry off, ``opentelemetry.sdk`` is never imported.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace

from motadata_actors._errors import ConfigError

from ._logging import get_logger

__all__ = ("setup",)

log = get_logger("telemetry")
_GRPC_PORT = 4317


def _port(url: str) -> int | None:
    try:
        return urlsplit(url if "://" in url else f"http://{url}").port
    except ValueError:
        return None


_lock = threading.Lock()
_done: tuple[Any, Any] | None = None


def setup(service_name: str | None = None, *, set_global: bool = True) -> tuple[Any, Any]:
    """Build SDK tracer and meter providers from the environment; return them.

    The resource comes from ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
    (``service_name`` wins when given); the sampler from ``OTEL_TRACES_SAMPLER`` and
    ``OTEL_TRACES_SAMPLER_ARG`` (the SDK reads them). Spans are exported with OTLP when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set, to the console when
    ``OTEL_TRACES_EXPORTER=console``, else not at all (said once, as a warning). OTLP needs
    the ``otlp`` extra (``pip install 'motadata-actors[otlp]'``); ``OTEL_EXPORTER_OTLP_PROTOCOL``
    picks ``grpc`` or ``http/protobuf``, the specification's default. Port 4317 is OTLP/gRPC's
    and 4318 OTLP/HTTP's: an endpoint on 4317 without ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``
    is warned about, since its spans would be lost.

    With ``set_global`` (the default) the providers become the process's global ones, once:
    a second call returns the first call's providers.

    Raises:
        ConfigError: OTLP export is asked for but the exporter package is not installed.
    """
    global _done
    with _lock:
        if _done is not None and set_global:
            return _done
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        attributes = {SERVICE_NAME: service_name} if service_name else {}
        resource = Resource.create(attributes)
        tracer_provider = TracerProvider(resource=resource)
        readers: list[Any] = []
        span_exporter, metric_exporter = _otlp_exporters()
        if span_exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
            readers.append(PeriodicExportingMetricReader(metric_exporter))
        elif os.environ.get("OTEL_TRACES_EXPORTER", "").strip() == "console":
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning(
                "telemetry is on but nothing exports it: set OTEL_EXPORTER_OTLP_ENDPOINT (with "
                "the 'otlp' extra) or OTEL_TRACES_EXPORTER=console; spans are made and dropped"
            )
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        if set_global:
            trace.set_tracer_provider(tracer_provider)
            metrics.set_meter_provider(meter_provider)
            _done = (tracer_provider, meter_provider)
        return tracer_provider, meter_provider


def _otlp_exporters() -> tuple[Any, Any]:
    env = os.environ
    if not (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None, None
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip()
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not one of grpc, http/protobuf"
        )
    kind = "grpc" if protocol == "grpc" else "http"
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )
    if kind == "http" and _port(endpoint) == _GRPC_PORT:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT %s is on port 4317, OTLP/gRPC's, but the protocol is "
            "http/protobuf (the default): set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or use the "
            "collector's HTTP port 4318", endpoint,
        )  # fmt: skip
    try:
        traces = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{kind}.trace_exporter")
        metrics_ = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{kind}.metric_exporter"
        )
    except ImportError as exc:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
            "pip install 'motadata-actors[otlp]'"
        ) from exc
    return traces.OTLPSpanExporter(), metrics_.OTLPMetricExporter()
