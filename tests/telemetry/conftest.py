"""An OTLP/HTTP receiver: what the real exporters send, decoded with opentelemetry-proto."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_SERVICES: dict[str, tuple[type[Message], type[Message]]] = {
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _attributes(attributes: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(attributes)
    return {kv.key: _value(kv.value) for kv in pairs}


class OtlpReceiver:
    """Listens on a free loopback port; keeps every log record and span posted to it.

    Each log record and span is kept as a dict: ``trace_id``/``span_id`` in hex (empty when
    unset), ``attributes``, ``resource`` (the resource's attributes), ``scope``, and for
    logs ``body``, ``severity_text``, ``severity_number``; for spans ``name``, ``parent``.
    """

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []
        self.spans: list[dict[str, Any]] = []
        self.requests: dict[str, int] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                service = _SERVICES.get(self.path)
                if service is None or self.headers.get("Content-Type") != (
                    "application/x-protobuf"
                ):
                    receiver.errors.append(f"{self.path} {self.headers.get('Content-Type')}")
                    self.send_response(404)
                    self.end_headers()
                    return
                request_type, response_type = service
                receiver._keep(self.path, request_type.FromString(body))
                answer = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        """The base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes it."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _keep(self, path: str, request: Any) -> None:
        logs: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []
        if path == "/v1/logs":
            for rl in request.resource_logs:
                resource = _attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        logs.append(
                            {
                                "body": _value(record.body),
                                "severity_text": record.severity_text,
                                "severity_number": record.severity_number,
                                "trace_id": record.trace_id.hex(),
                                "span_id": record.span_id.hex(),
                                "attributes": _attributes(record.attributes),
                                "resource": resource,
                                "scope": sl.scope.name,
                            }
                        )
        elif path == "/v1/traces":
            for rs in request.resource_spans:
                resource = _attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": _attributes(span.attributes),
                                "resource": resource,
                                "scope": ss.scope.name,
                            }
                        )
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.logs.extend(logs)
            self.spans.extend(spans)

    def logs_of(self, scope: str) -> list[dict[str, Any]]:
        """The log records of logger ``scope`` received so far."""
        with self._lock:
            return [r for r in self.logs if r["scope"] == scope]

    def spans_named(self, prefix: str) -> list[dict[str, Any]]:
        """The spans received so far whose name starts with ``prefix``."""
        with self._lock:
            return [s for s in self.spans if s["name"].startswith(prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on a free loopback port, stopped after the test."""
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
