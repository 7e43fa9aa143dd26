"""OpenTelemetry SDK wiring from the standard ``OTEL_*`` environment.

Imported lazily: with telemetry off, ``opentelemetry.sdk`` is never imported.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry import metrics, trace

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings

from ._logging import get_logger
from ._logs import export_logs
from ._prometheus import PrometheusEndpoint

__all__ = ("destinations", "setup")

log = get_logger("telemetry")
_GRPC_PORT = 4317


def _port(url: str) -> int | None:
    try:
        return urlsplit(url if "://" in url else f"http://{url}").port
    except ValueError:
        return None


_lock = threading.Lock()
_done: tuple[Any, Any] | None = None
_SIGNALS: Final = {  # signal: (module of the OTLP exporters, class)
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
    "logs": ("_log_exporter", "OTLPLogExporter"),
}


def setup(
    service_name: str | None = None,
    *,
    set_global: bool = True,
    settings: Settings | None = None,
) -> tuple[Any, Any]:
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

    Metrics go with the spans over OTLP and, when ``SDK_PROMETHEUS_PORT`` is set, to a
    Prometheus scrape endpoint (:class:`~motadata_actors.telemetry.PrometheusEndpoint`, on
    ``SDK_PROMETHEUS_HOST``, loopback by default; the ``prometheus`` extra); it serves
    until the meter provider shuts down.

    With ``set_global`` (the default) the providers become the process's global ones, once:
    a second call returns the first call's providers. Only then are log records exported
    too (logging is process-wide): when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
    ``..._LOGS_ENDPOINT``) is set, or ``OTEL_LOGS_EXPORTER=console``, and
    ``OTEL_LOGS_EXPORTER`` is not ``none``, a global logger provider with a batch processor
    gets the records of the ``motadata_actors`` loggers (and of the root logger with
    ``SDK_LOG_EXPORT_ROOT=true``), from ``SDK_LOG_EXPORT_LEVEL`` up: see
    :func:`~motadata_actors.telemetry.export_logs`.

    Args:
        service_name: the resource's ``service.name``.
        set_global: make the providers global (and export logs).
        settings: where ``SDK_*`` settings come from (the environment when None).

    Raises:
        ConfigError: OTLP export is asked for but the exporter package is not installed,
            a Prometheus endpoint but its extra is not (or its port is taken), or an
            ``OTEL_*`` variable has a value that cannot be used.
    """
    global _done
    with _lock:
        if _done is not None and set_global:
            return _done
        if settings is None:
            settings = Settings.from_env()
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
        log_exporter = _log_exporter() if set_global else None
        where: list[str] = []
        if settings.prometheus_port is not None:
            endpoint = PrometheusEndpoint(settings.prometheus_host, settings.prometheus_port)
            readers.append(endpoint.reader)
            log.info("serving Prometheus metrics at %s", endpoint.url)
            where.append(f"Prometheus metrics at {endpoint.url}")
        if span_exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
            readers.append(PeriodicExportingMetricReader(metric_exporter))
            what = "spans, metrics and logs" if log_exporter is not None else "spans and metrics"
            where.append(f"{what} over OTLP to {_otlp_endpoint()}")
        elif os.environ.get("OTEL_TRACES_EXPORTER", "").strip() == "console":
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            where.append("spans to the console")
        else:
            log.warning(
                "telemetry is on but no spans are exported: set OTEL_EXPORTER_OTLP_ENDPOINT "
                "(with the 'otlp' extra) or OTEL_TRACES_EXPORTER=console; spans are made "
                "and dropped"
            )
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        if set_global:
            trace.set_tracer_provider(tracer_provider)
            metrics.set_meter_provider(meter_provider)
            if log_exporter is not None:
                _export_logs(resource, log_exporter, settings)
            _done = (tracer_provider, meter_provider)
            _where[:] = where
        return tracer_provider, meter_provider


_where: list[str] = []


def destinations() -> tuple[str, ...]:
    """Where the global providers :func:`setup` made send telemetry, for people to read.

    ``("Prometheus metrics at http://127.0.0.1:9464/metrics", "spans, metrics and logs over
    OTLP to http://collector:4318")``; empty before :func:`setup` or when nothing is
    exported.
    """
    return tuple(_where)


def _otlp_endpoint() -> str:
    env = os.environ
    return env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""
    )


def _export_logs(resource: Any, exporter: Any, settings: Settings) -> None:
    """Make the global logger provider, exporting with ``exporter``; attach the handler."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    set_logger_provider(provider)
    export_logs(provider, level=settings.log_export_level, root=settings.log_export_root)


def _protocol() -> str:
    """``grpc`` or ``http``, from ``OTEL_EXPORTER_OTLP_PROTOCOL``."""
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip()
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not one of grpc, http/protobuf"
        )
    return "grpc" if protocol == "grpc" else "http"


def _otlp(kind: str, signal: str) -> Any:
    """The OTLP exporter of ``signal`` over ``kind`` (it reads its endpoint from ``OTEL_*``)."""
    module, name = _SIGNALS[signal]
    try:
        exporters = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{kind}.{module}")
    except ImportError as exc:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
            "pip install 'motadata-actors[otlp]'"
        ) from exc
    return getattr(exporters, name)()


def _otlp_exporters() -> tuple[Any, Any]:
    env = os.environ
    if not (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None, None
    kind = _protocol()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )
    if kind == "http" and _port(endpoint) == _GRPC_PORT:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT %s is on port 4317, OTLP/gRPC's, but the protocol is "
            "http/protobuf (the default): set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or use the "
            "collector's HTTP port 4318", endpoint,
        )  # fmt: skip
    return _otlp(kind, "traces"), _otlp(kind, "metrics")


def _log_exporter() -> Any:
    """What exports log records (``OTEL_LOGS_EXPORTER``, the OTLP endpoint); None: nothing."""
    env = os.environ
    choice = env.get("OTEL_LOGS_EXPORTER", "").strip().lower()
    if choice not in ("", "otlp", "console", "none"):
        raise ConfigError(f"OTEL_LOGS_EXPORTER={choice!r} is not one of otlp, console, none")
    if choice == "console":
        from opentelemetry.sdk._logs import export

        console = getattr(export, "ConsoleLogRecordExporter", None) or export.ConsoleLogExporter
        return console()
    if choice == "none" or not (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    ):
        return None
    return _otlp(_protocol(), "logs")
