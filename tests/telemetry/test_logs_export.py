"""Log records exported with OpenTelemetry, over OTLP/HTTP to a real receiver.

The receiver (``conftest.OtlpReceiver``) decodes the exporters' protobuf requests; a log
line made inside a handler must carry the trace and span ids of that message's process
span, as the span exporter sent it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from motadata_actors import Actor, ActorSystem, ConfigError, Context, Settings
from motadata_actors.mailbox import NatsServer
from motadata_actors.telemetry import LogExportHandler, export_logs
from motadata_actors.telemetry._setup import _log_exporter

from ..conftest import wait_for
from .conftest import OtlpReceiver

pytestmark = pytest.mark.anyio

APP = "tests.app"


class Writer(Actor):
    """Logs a debug, an info and a warning line per message; raises on ``boom``."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "boom":
            raise ValueError("no ink")
        app = logging.getLogger(APP)
        app.debug("thinking about %s", msg)
        app.info("drafting %s", msg, extra={"draft": msg, "words": 3})
        app.warning("writing %s", msg)
        return f"draft of {msg}"


@pytest.fixture
def providers(otlp: OtlpReceiver) -> Iterator[tuple[TracerProvider, LoggerProvider]]:
    """SDK providers exporting spans and logs over OTLP/HTTP to ``otlp``, every 50 ms."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{otlp.endpoint}/v1/traces"), schedule_delay_millis=50
        )
    )
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{otlp.endpoint}/v1/logs"), schedule_delay_millis=50
        )
    )
    app = logging.getLogger(APP)
    app.setLevel(logging.DEBUG)
    try:
        yield tracer_provider, logger_provider
    finally:
        app.setLevel(logging.NOTSET)
        logger_provider.shutdown()
        tracer_provider.shutdown()


@pytest.fixture
def exported() -> Iterator[list[LogExportHandler]]:
    """Handlers made by the test, closed (detached, levels restored) after it."""
    handlers: list[LogExportHandler] = []
    try:
        yield handlers
    finally:
        for handler in handlers:
            handler.close()


async def test_log_lines_in_handlers_carry_their_messages_span_ids(
    otlp: OtlpReceiver,
    providers: tuple[TracerProvider, LoggerProvider],
    exported: list[LogExportHandler],
    tenant: str,
) -> None:
    tracer_provider, logger_provider = providers
    exported.append(export_logs(logger_provider, level="info", root=True))
    async with ActorSystem(
        tenant,
        settings=Settings(enable_nats=False),
        tracer_provider=tracer_provider,
        handle_signals=False,
    ) as system:
        ref = await system.spawn(Writer, name="writer")
        for topic in ("tides", "moons", "stars"):
            assert await ref.ask(topic, timeout=5) == f"draft of {topic}"
        logging.getLogger(APP).warning("outside any handler")
    await wait_for(
        lambda: len(otlp.logs_of(APP)) >= 7 and len(otlp.spans_named("process")) >= 3,
        10,
        "7 log records and 3 process spans at the receiver",
    )
    assert otlp.errors == []
    processes = {s["trace_id"]: s for s in otlp.spans_named("process")}
    assert len(processes) == 3  # each ask its own trace
    records = otlp.logs_of(APP)
    # info and warning lines only (export level info), from the handler and the one outside
    assert sorted(r["body"] for r in records) == sorted(
        [f"{verb} {t}" for verb in ("drafting", "writing") for t in ("tides", "moons", "stars")]
        + ["outside any handler"]
    )
    by_body = {r["body"]: r for r in records}
    for topic in ("tides", "moons", "stars"):
        info, warning = by_body[f"drafting {topic}"], by_body[f"writing {topic}"]
        assert info["trace_id"] == warning["trace_id"]
        process = processes[warning["trace_id"]]  # the span of this very message
        assert warning["span_id"] == info["span_id"] == process["span_id"]
        assert process["attributes"]["sdk.agent.to"] == "writer"
        assert (warning["severity_text"], warning["severity_number"]) == ("WARN", 13)
        assert (info["severity_text"], info["severity_number"]) == ("INFO", 9)
        assert warning["attributes"]["sdk.tenant.id"] == tenant
        assert warning["attributes"]["sdk.agent.to"] == "writer"
        assert warning["attributes"]["code.function.name"] == "on_message"
        assert info["attributes"]["draft"] == topic and info["attributes"]["words"] == 3
    outside = by_body["outside any handler"]
    assert outside["trace_id"] == outside["span_id"] == ""  # no trace there
    assert "sdk.agent.to" not in outside["attributes"]


async def test_by_default_only_the_librarys_records_go_with_the_exception(
    otlp: OtlpReceiver,
    providers: tuple[TracerProvider, LoggerProvider],
    exported: list[LogExportHandler],
    tenant: str,
) -> None:
    tracer_provider, logger_provider = providers
    exported.append(export_logs(logger_provider))  # the library's loggers, their levels
    async with ActorSystem(
        tenant,
        settings=Settings(enable_nats=False),
        tracer_provider=tracer_provider,
        handle_signals=False,
    ) as system:
        ref = await system.spawn(Writer, name="writer")
        await ref.ask("tides", timeout=5)
        await ref.tell("boom")  # the library logs the crash, inside the message's span
        await wait_for(lambda: system.event_counts().get("restarted", 0) == 1, 5, "a restart")
    await wait_for(
        lambda: (
            any("handler raised" in str(r["body"]) for r in otlp.logs)
            and len(otlp.spans_named("process")) == 2
        ),
        10,
        "the crash's log record and both process spans at the receiver",
    )
    assert otlp.logs_of(APP) == []  # the application's loggers are not exported
    crash = next(r for r in otlp.logs if "handler raised" in str(r["body"]))
    assert crash["scope"].startswith("motadata_actors.")
    assert (crash["severity_text"], crash["severity_number"]) == ("ERROR", 17)
    assert crash["attributes"]["exception.type"] == "ValueError"
    assert crash["attributes"]["exception.message"] == "no ink"
    assert "Traceback" in crash["attributes"]["exception.stacktrace"]
    boom = next(
        s for s in otlp.spans_named("process") if s["trace_id"] == crash["trace_id"]
    )  # the span of the tell that crashed
    assert crash["span_id"] == boom["span_id"]


async def test_an_unsampled_message_still_gives_its_log_lines_the_trace_id(
    otlp: OtlpReceiver,
    providers: tuple[TracerProvider, LoggerProvider],
    exported: list[LogExportHandler],
    tenant: str,
) -> None:
    _, logger_provider = providers
    exported.append(export_logs(logger_provider, level="warning", root=True))
    unsampled = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    seen: list[str] = []

    class Peek(Actor):
        async def on_message(self, msg: Any, ctx: Context) -> Any:
            seen.append(ctx.headers["traceparent"])
            logging.getLogger(APP).warning("unsampled %s", msg)
            return msg

    async with ActorSystem(
        tenant, settings=Settings(enable_nats=False), tracer_provider=unsampled,
        handle_signals=False,
    ) as system:  # fmt: skip
        ref = await system.spawn(Peek, name="peek")
        await ref.ask("x", timeout=5)
    await wait_for(lambda: len(otlp.logs_of(APP)) == 1, 10, "the log record at the receiver")
    record = otlp.logs_of(APP)[0]
    assert record["trace_id"] == seen[0].split("-")[1]  # the trace the message carried


def test_export_logs_sets_the_library_level_and_close_undoes_it() -> None:
    library = logging.getLogger("motadata_actors")
    assert library.level == logging.NOTSET
    provider = LoggerProvider()
    try:
        handler = export_logs(provider, level="debug")
        assert library.level == logging.DEBUG and handler in library.handlers
        assert handler.level == logging.DEBUG
        handler.close()
        assert library.level == logging.NOTSET and handler not in library.handlers
        root_handler = export_logs(provider, root=True)
        assert root_handler in logging.getLogger().handlers and library.level == logging.NOTSET
        root_handler.close()
        assert root_handler not in logging.getLogger().handlers
        with pytest.raises(ConfigError, match="loud"):
            export_logs(provider, level="loud")
    finally:
        provider.shutdown()


def test_settings_of_log_export() -> None:
    defaults = Settings.from_env({})
    assert (defaults.log_export_level, defaults.log_export_root) == (None, False)
    s = Settings.from_env({"SDK_LOG_EXPORT_LEVEL": " INFO ", "SDK_LOG_EXPORT_ROOT": "true"})
    assert (s.log_export_level, s.log_export_root) == ("info", True)
    with pytest.raises(ConfigError, match="SDK_LOG_EXPORT_LEVEL"):
        Settings.from_env({"SDK_LOG_EXPORT_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="SDK_LOG_EXPORT_ROOT"):
        Settings.from_env({"SDK_LOG_EXPORT_ROOT": "maybe"})


ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    ("env", "made"),
    [
        ({}, None),
        (ENDPOINT, "http OTLPLogExporter"),
        (
            {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:9/v1/logs"},
            "http OTLPLogExporter",
        ),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc OTLPLogExporter"),
        ({**ENDPOINT, "OTEL_LOGS_EXPORTER": "none"}, None),
        ({"OTEL_LOGS_EXPORTER": "console"}, "ConsoleLogRecordExporter"),
    ],
)
def test_which_exporter_the_environment_chooses(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], made: str | None
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exporter = _log_exporter()
    try:
        if made is None:
            assert exporter is None
        else:
            kind = type(exporter).__module__.split(".")[4] if "OTLP" in made else ""
            assert f"{kind} {type(exporter).__name__}".strip() == made
    finally:
        if exporter is not None:
            exporter.shutdown()


def test_an_unknown_logs_exporter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "kafka")
    with pytest.raises(ConfigError, match="OTEL_LOGS_EXPORTER"):
        _log_exporter()


CHILD = textwrap.dedent(
    """
    import asyncio, logging
    from motadata_actors import Actor, ActorSystem

    log = logging.getLogger("tests.app")

    class Writer(Actor):
        async def on_message(self, msg, ctx):
            log.warning("writing %s", msg)
            return msg

    async def main():
        async with ActorSystem("acme", handle_signals=False) as system:
            ref = await system.spawn(Writer, name="writer")
            for topic in ("tides", "moons"):
                await ref.ask(topic, timeout=5)

    asyncio.run(main())
    """
)


def test_the_environment_alone_exports_logs_beside_spans(
    otlp: OtlpReceiver, nats_server: NatsServer, tmp_path: Path
) -> None:
    """ENABLE_OTEL, an OTLP endpoint, SDK_LOG_EXPORT_ROOT: nothing in the program's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SDK_"))}
    env.update(
        ENABLE_OTEL="true",
        NATS_URL=nats_server.url,
        OTEL_SERVICE_NAME="writer-service",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_BLRP_SCHEDULE_DELAY="50",
        OTEL_METRIC_EXPORT_INTERVAL="60000",
        SDK_LOG_EXPORT_ROOT="true",
        SDK_LOG_EXPORT_LEVEL="warning",
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # The providers are shut down (so flushed) at the child's exit: all has arrived.
    assert otlp.errors == []
    records = otlp.logs_of(APP)
    assert sorted(r["body"] for r in records) == ["writing moons", "writing tides"]
    processes = {s["span_id"]: s for s in otlp.spans_named("process")}
    for record in records:
        assert record["resource"]["service.name"] == "writer-service"
        process = processes[record["span_id"]]
        assert process["trace_id"] == record["trace_id"]
        assert process["attributes"]["sdk.agent.to"] == "writer"
    assert otlp.requests.get("/v1/metrics", 0) >= 1  # metrics went over OTLP too
