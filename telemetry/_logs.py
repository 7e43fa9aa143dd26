"""Log records of the ``logging`` module, exported with OpenTelemetry.

:class:`LogExportHandler` hands each record to an OpenTelemetry logger provider, whose
processors export it (``setup()`` wires one with a batch processor and the OTLP exporter).
A record carries the trace and span ids of the context it was made in, so a line logged
inside a handler lands beside that message's process span. The handler uses the
OpenTelemetry API only; it is attached only when telemetry is on (:func:`export_logs`).

OpenTelemetry's own ``LoggingHandler`` (``opentelemetry-sdk``) is deprecated in favour of
the one in ``opentelemetry-instrumentation-logging``; this one does what they do, with no
further dependency, and adds the tenant and agent of the message being handled.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider

from motadata_actors._errors import ConfigError

from ._logging import get_logger, log_fields

if TYPE_CHECKING:
    from opentelemetry._logs import Logger, LoggerProvider

__all__ = ("LEVELS", "LogExportHandler", "export_logs")

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
"""``SDK_LOG_EXPORT_LEVEL``'s names and the ``logging`` levels they stand for."""

# The batch processors export with instrumentation suppressed: a record logged then (a
# failed export, say) must not be exported in turn, round and round.
_SUPPRESSED: Final = otel_context._SUPPRESS_INSTRUMENTATION_KEY
_emitting: ContextVar[bool] = ContextVar("motadata_actors_log_export", default=False)

# The attributes every LogRecord has; anything else on a record came with ``extra=``.
_RESERVED: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "trace_id", "span_id", "tenant", "agent"}
)
_TEXT: Final = {"WARNING": "WARN", "CRITICAL": "FATAL"}  # the log data model's names


def _severity(levelno: int) -> SeverityNumber:
    """The log data model's severity of a ``logging`` level, as OpenTelemetry maps it.

    ``DEBUG`` is 5, ``INFO`` 9, ``WARNING`` 13, ``ERROR`` 17, ``CRITICAL`` 21; a level a
    little above one of them takes the next numbers (31 is 14), up to three more.
    """
    if levelno < logging.DEBUG:
        return SeverityNumber.UNSPECIFIED
    level = min(levelno, 53)
    return SeverityNumber(1 + 4 * (level // 10) + min(3, level % 10))


def _value(value: object) -> Any:
    """``value`` as an attribute value: primitives as they are, anything else as text."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


class LogExportHandler(logging.Handler):
    """A ``logging`` handler that gives records to an OpenTelemetry logger provider.

    Each record becomes an OpenTelemetry log record of the current context (so it carries
    the trace and span ids of the span active where it was logged) with: the severity
    (``WARNING`` is ``WARN``, ``CRITICAL`` ``FATAL``), the message as its body (formatted
    by the handler's formatter, if it has one), the logger's name as the instrumentation
    scope, ``code.*`` attributes, ``exception.*`` ones for ``exc_info``, what ``extra=``
    gave, and ``sdk.tenant.id`` and ``sdk.agent.to`` inside an actor's handler.

    Args:
        logger_provider: where records go (the global logger provider when None).
        level: the lowest level handled.
    """

    def __init__(
        self, logger_provider: LoggerProvider | None = None, level: int = logging.NOTSET
    ) -> None:
        super().__init__(level)
        self._provider = logger_provider
        self._loggers: dict[str, Logger] = {}
        self._attached: list[logging.Logger] = []
        self._lowered: logging.Logger | None = None  # a logger whose level it set

    def _logger(self, name: str) -> Logger:
        logger = self._loggers.get(name)
        if logger is None:
            provider = self._provider if self._provider is not None else get_logger_provider()
            logger = self._loggers[name] = provider.get_logger(name)
        return logger

    def emit(self, record: logging.LogRecord) -> None:
        """Hand ``record`` to the logger provider (never raises: ``handleError``)."""
        if _emitting.get() or otel_context.get_value(_SUPPRESSED):
            return
        token = _emitting.set(True)
        try:
            self._logger(record.name).emit(self._translate(record))
        except Exception:
            self.handleError(record)
        finally:
            _emitting.reset(token)

    def _translate(self, record: logging.LogRecord) -> LogRecord:
        attributes: dict[str, Any] = {
            "code.file.path": record.pathname,
            "code.function.name": record.funcName,
            "code.line.number": record.lineno,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED:
                attributes[key] = _value(value)
        fields = log_fields.get()
        if fields is not None:
            attributes["sdk.tenant.id"], attributes["sdk.agent.to"] = fields
        if record.exc_info and record.exc_info[0] is not None:
            kind, error, tb = record.exc_info
            attributes["exception.type"] = kind.__qualname__
            attributes["exception.message"] = str(error)
            attributes["exception.stacktrace"] = "".join(
                traceback.format_exception(kind, error, tb)
            )
        return LogRecord(
            timestamp=int(record.created * 1e9),
            observed_timestamp=time.time_ns(),
            context=otel_context.get_current(),
            severity_text=_TEXT.get(record.levelname, record.levelname),
            severity_number=_severity(record.levelno),
            body=self.format(record) if self.formatter is not None else record.getMessage(),
            attributes=attributes,
        )

    def attach(self, logger: logging.Logger) -> None:
        """Add this handler to ``logger``; :meth:`close` removes it again."""
        logger.addHandler(self)
        self._attached.append(logger)

    def close(self) -> None:
        """Stop exporting: detach from the loggers it was attached to, undo a level it set."""
        for logger in self._attached:
            logger.removeHandler(self)
        self._attached.clear()
        if self._lowered is not None:
            self._lowered.setLevel(logging.NOTSET)
            self._lowered = None
        super().close()


def export_logs(
    logger_provider: LoggerProvider | None = None,
    *,
    level: str | None = None,
    root: bool = False,
) -> LogExportHandler:
    """Export log records through ``logger_provider``; return the handler (close it to stop).

    Closing the handler stops it: it is detached and a level it set is undone.

    Args:
        logger_provider: where records go (the global logger provider when None).
        level: ``debug``, ``info``, ``warning``, ``error`` or ``critical``: the lowest level
            exported. The library's ``motadata_actors`` logger, when it has no level of its
            own, is set to it, so that its records at that level are made at all (they then
            also reach the application's handlers, which filter by their own levels). None:
            whatever the logging configuration lets through.
        root: attach to the root logger (every logger's records, the application's too)
            instead of the library's ``motadata_actors`` logger alone.

    Raises:
        ConfigError: ``level`` is not one of those names.
    """
    if level is not None and level not in LEVELS:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    levelno = LEVELS[level] if level is not None else logging.NOTSET
    handler = LogExportHandler(logger_provider, levelno)
    library = _library_logger()
    unset = library.level == logging.NOTSET
    if level is not None and unset and library.getEffectiveLevel() > levelno:
        library.setLevel(levelno)
        handler._lowered = library
    handler.attach(logging.getLogger() if root else library)
    return handler


def _library_logger() -> logging.Logger:
    """The ``motadata_actors`` logger, the parent of every library logger."""
    library = get_logger("telemetry").parent
    assert library is not None
    return library
