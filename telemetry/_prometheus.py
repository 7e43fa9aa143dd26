"""A Prometheus scrape endpoint: OpenTelemetry's Prometheus reader behind an HTTP server.

The exporter (the ``prometheus`` extra) and the SDK are imported only when an endpoint is
made (``SDK_PROMETHEUS_PORT``, or :class:`PrometheusEndpoint` by hand).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from motadata_actors._errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

__all__ = ("PrometheusEndpoint",)


@functools.cache
def _reader_class() -> Callable[[Any, Callable[[], None]], PrometheusMetricReader]:
    """OpenTelemetry's Prometheus reader, told when it shuts down (made on first use)."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
    except ImportError as exc:
        raise ConfigError(
            "a Prometheus endpoint needs the OpenTelemetry Prometheus exporter: "
            "pip install 'motadata-actors[prometheus]'"
        ) from exc

    class Reader(PrometheusMetricReader):
        def __init__(self, registry: Any, on_shutdown: Callable[[], None]) -> None:
            super().__init__(registry=registry)
            self._on_shutdown = on_shutdown

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            self._on_shutdown()
            super().shutdown(timeout_millis, **kwargs)

    return Reader


@final
class PrometheusEndpoint:
    """Serves a meter provider's metrics at ``http://<host>:<port>/metrics``.

    Give its :attr:`reader` to a ``MeterProvider``
    (``MeterProvider(metric_readers=[endpoint.reader])``): each scrape collects the
    provider's metrics then, in the Prometheus text format. Names follow OpenTelemetry's
    Prometheus mapping: dots become underscores, the unit is appended (``_seconds``,
    ``_bytes``) and counters end in ``_total`` (``messaging.client.sent.messages`` is
    ``messaging_client_sent_messages_total``); attributes become labels the same way
    (``sdk.tenant.id`` is ``sdk_tenant_id``).

    Its metrics are kept in a registry of its own, not ``prometheus_client``'s global one,
    so two endpoints in one process never mix their metrics. The server is a daemon
    thread, listening from construction until :meth:`close` or the meter provider's
    ``shutdown()`` (at the latest, the process's exit).

    Args:
        host: the address to listen on; loopback by default.
        port: the port; 0 takes any free one (see :attr:`port`).

    Raises:
        ConfigError: the address cannot be listened on (a port in use, say), or the
            ``prometheus`` extra is not installed.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9464) -> None:
        reader_class = _reader_class()
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=True)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve Prometheus metrics on {host}:{port} (SDK_PROMETHEUS_HOST, "
                f"SDK_PROMETHEUS_PORT): {exc.strerror or exc}"
            ) from None
        self._open = True
        self.host: str = host
        """The address it listens on."""
        self.port: int = int(self._server.server_address[1])
        """The port it listens on (the one chosen, when it was made with port 0)."""
        self.reader: PrometheusMetricReader = reader_class(registry, self.close)
        """The metric reader to give the meter provider."""

    @property
    def url(self) -> str:
        """Where to scrape: ``http://<host>:<port>/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving (the meter provider's ``shutdown()`` does it too)."""
        if self._open:
            self._open = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
