"""Per-message spans and metrics, following the OpenTelemetry messaging conventions.

Conventions pinned: semantic conventions v1.44.0 (``SCHEMA_URL``). Where they speak we
follow them; where they leave a choice, this module documents it:

* ``messaging.system`` is ``nats`` (a literal: the Python package has no constant).
* Span names are ``{operation} {destination template}``: ``send sdk.agent.{from}.{to}.{tenant}``,
  ``process sdk.agent.{from}.{to}.{tenant}``. A reply goes to a temporary, anonymous inbox,
  so its span is just ``send`` (the conventions omit a destination that is not available as a
  low-cardinality value) with ``messaging.destination.temporary`` and ``.anonymous`` set.
* An ask is one PRODUCER span covering every attempt (attempts, retries and timeouts are span
  events and attributes), so a hop costs at most two spans: send and process.
* The process span's parent is the context extracted from the message (single-message
  processing); the receiver's ambient span, if any, is a link. Each message is handled in
  its own context, attached for that message only.
* Under an unsampled parent no span is created at all (what a parent-based sampler would
  decide anyway): the context is passed on unchanged, so sampling stays consistent
  downstream at a fraction of the cost. A sampler that samples children of unsampled
  parents is therefore not honoured.
* Trace context (``traceparent``, ``tracestate``, ``baggage``) is injected through the
  global propagator API whenever telemetry is on, sampled or not, so a custom propagator
  set by the application is used.

Metrics: the conventions' ``messaging.client.sent.messages``, ``...consumed.messages`` and
``messaging.process.duration`` (with ``messaging.system`` and ``messaging.operation.name``),
and ours under ``sdk.``: bytes sent and handled, ask durations, codec durations and sizes
(:meth:`Telemetry.instrument_codecs`), supervision events; tenant and agent on each.

Library code uses the OpenTelemetry API only; the SDK is wired by :func:`setup`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Final, TypeVar, cast, final

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.metrics import MeterProvider, get_meter_provider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from ._logging import get_logger

T = TypeVar("T")

__all__ = ("SCHEMA_URL", "Telemetry")

log = get_logger("telemetry")

# Histogram buckets (advisory: a view the application sets wins). The SDK's default
# buckets (0 to 10000) suit milliseconds; these suit what is recorded.
_SECONDS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The semantic conventions' buckets for messaging durations, in seconds."""
_CODEC_SECONDS: Final = (
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1,
)  # fmt: skip
_BYTES: Final = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)

SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"


def _version() -> str:
    try:
        return importlib.metadata.version("motadata-actors")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0"


_VERSION: Final = _version()
_MAX_AGENTS: Final = 256
_OTHER: Final = "_other"
_EMPTY: Final = otel_context.Context()


_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_RECENT_MAX: Final = 512
_recent: dict[tuple[str, str | None], otel_context.Context] = {}
_default_seen: list[tuple[object, bool]] = [(None, False)]


class _Received(trace.NonRecordingSpan):
    """The remote parent a message's version-00 ``traceparent`` names, parsed when asked for.

    Passing an unsampled context on needs only the header text (copied as it came), so most
    messages never pay for building a :class:`~opentelemetry.trace.SpanContext`; a
    ``tracestate`` is parsed (and cleaned) as the W3C propagator would.
    """

    def __init__(self, traceparent: str, tracestate: str | None) -> None:
        self.traceparent = traceparent
        self.tracestate = tracestate
        self.sampled = traceparent[-1] in "13579bdf"  # the sampled bit of the flags
        self.context: otel_context.Context | None = None  # the context made for it
        self._parsed: trace.SpanContext | None = None

    def get_span_context(self) -> trace.SpanContext:
        parsed = self._parsed
        if parsed is None:
            tp, state = self.traceparent, self.tracestate
            parsed = self._parsed = trace.SpanContext(
                int(tp[3:35], 16),
                int(tp[36:52], 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(tp[53:55], 16)),
                trace_state=TraceState.from_header([state]) if state else None,
            )
        return parsed

    def __repr__(self) -> str:
        return f"NonRecordingSpan({self.get_span_context()!r})"


def _sampled(span: Span) -> bool | None:
    """Whether ``span``'s trace is sampled; None when it has no valid context (a new root)."""
    if type(span) is _Received:
        return span.sampled
    context = span.get_span_context()
    return context.trace_flags.sampled if context.is_valid else None


def _is_default(textmap: object) -> bool:
    """Whether the global propagator is the SDK default: W3C trace context plus baggage."""
    seen, answer = _default_seen[0]
    if seen is textmap:
        return answer
    propagators = getattr(textmap, "_propagators", None)
    answer = (
        type(textmap) is CompositePropagator
        and propagators is not None
        and [type(p) for p in propagators] == [TraceContextTextMapPropagator, W3CBaggagePropagator]
    )
    _default_seen[0] = (textmap, answer)
    return answer


def _inject(headers: MutableMapping[str, str], current: otel_context.Context, span: Span) -> None:
    """Inject ``current`` (whose span is ``span``) into ``headers``, cheaply when we can.

    Under the default propagator and without baggage, the ``traceparent``/``tracestate`` are
    written directly, as the W3C propagator writes them (about 0.5 us cheaper per message);
    the very context read from a message (no span started, no baggage added since) passes on
    the ``traceparent`` it was read from without parsing or formatting it. Anything else (a
    custom propagator, baggage) goes through :func:`opentelemetry.propagate.inject`.
    """
    if not _is_default(propagate.get_global_textmap()):
        propagate.inject(headers, context=current)
        return
    if type(span) is _Received and span.context is current and not span.tracestate:
        headers["traceparent"] = span.traceparent
        return
    if baggage.get_all(current):
        propagate.inject(headers, context=current)
        return
    sc = span.get_span_context()
    if sc.is_valid:
        headers["traceparent"] = "00-%032x-%016x-%02x" % (sc.trace_id, sc.span_id, sc.trace_flags)  # noqa: UP031 (faster)
        if sc.trace_state:
            headers["tracestate"] = sc.trace_state.to_header()


def _extract(headers: Mapping[str, str]) -> otel_context.Context:
    """The context a message carries, through the global propagator.

    With the default propagator and no baggage, a version-00 ``traceparent`` is read
    directly (what the W3C propagator would do, about 2 us cheaper per message); anything
    else goes through :func:`opentelemetry.propagate.extract`.
    """
    textmap = propagate.get_global_textmap()
    if "baggage" not in headers and _is_default(textmap):
        tp = headers.get("traceparent")
        if tp is None:
            return _EMPTY
        state = headers.get("tracestate")
        # Under an unsampled parent a traceparent travels unchanged down a whole
        # conversation: remember the last few contexts read.
        cached = _recent.get((tp, state))
        if cached is not None:
            return cached
        if _TRACEPARENT.fullmatch(tp) is not None:
            received = _Received(tp, state)
            ctx = received.context = trace.set_span_in_context(received, _EMPTY)
            if len(_recent) >= _RECENT_MAX:
                _recent.clear()
            _recent[(tp, state)] = ctx
            return ctx
    return propagate.extract(headers)


@final
class Telemetry:
    """One system's tracer, meter and instruments; absent (None) when telemetry is off.

    Args:
        tenant: the tenant id, on every span and data point.
        tracer_provider: where spans go (the global provider when None).
        meter_provider: where metrics go (the global provider when None).
    """

    def __init__(
        self,
        tenant: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.tenant = tenant
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer("motadata_actors", _VERSION, schema_url=SCHEMA_URL)
        meters = meter_provider if meter_provider is not None else get_meter_provider()
        meter = meters.get_meter("motadata_actors", _VERSION, schema_url=SCHEMA_URL)
        self.meter = meter
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Messages sent"
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}", description="Messages handled"
        )
        self.sent_bytes = meter.create_counter(
            "sdk.client.sent.bytes", unit="By", description="Bytes of message bodies sent"
        )
        self.consumed_bytes = meter.create_counter(
            "sdk.client.consumed.bytes", unit="By", description="Bytes of message bodies handled"
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="Time a handler took",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self.ask_duration = meter.create_histogram(
            "sdk.ask.duration", unit="s", description="Time an ask took, all attempts",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self.encode_duration = meter.create_histogram(
            "sdk.codec.encode.duration", unit="s", description="Time a codec took to encode",
            explicit_bucket_boundaries_advisory=_CODEC_SECONDS,
        )  # fmt: skip
        self.decode_duration = meter.create_histogram(
            "sdk.codec.decode.duration", unit="s", description="Time a codec took to decode",
            explicit_bucket_boundaries_advisory=_CODEC_SECONDS,
        )  # fmt: skip
        self.encode_size = meter.create_histogram(
            "sdk.codec.encode.size", unit="By", description="Bytes a codec encoded to",
            explicit_bucket_boundaries_advisory=_BYTES,
        )  # fmt: skip
        self.decode_size = meter.create_histogram(
            "sdk.codec.decode.size", unit="By", description="Bytes a codec decoded",
            explicit_bucket_boundaries_advisory=_BYTES,
        )  # fmt: skip
        self._events = {
            "timeout": meter.create_counter("sdk.ask.timeouts", unit="{attempt}"),
            "retry": meter.create_counter("sdk.ask.retries", unit="{attempt}"),
            "restarted": meter.create_counter("sdk.actor.restarts", unit="{restart}"),
            "crashed": meter.create_counter("sdk.actor.crashes", unit="{crash}"),
            "escalated": meter.create_counter("sdk.supervisor.escalations", unit="{escalation}"),
            "dead_letter": meter.create_counter("sdk.dead_letters", unit="{message}"),
            "overran": meter.create_counter("sdk.handler.overruns", unit="{message}"),
            "dropped": meter.create_counter("sdk.mailbox.dropped", unit="{message}"),
            "disconnected": meter.create_counter("sdk.connection.losses", unit="{event}"),
            "reconnected": meter.create_counter("sdk.connection.recoveries", unit="{event}"),
            "refused": meter.create_counter("sdk.permission.refusals", unit="{event}"),
            "activated": meter.create_counter("sdk.keyed.activations", unit="{instance}"),
            "deactivated": meter.create_counter("sdk.keyed.deactivations", unit="{instance}"),
            "lease_lost": meter.create_counter("sdk.keyed.lease_losses", unit="{event}"),
            "reminded": meter.create_counter("sdk.reminders.fired", unit="{reminder}"),
        }
        self.state_size = meter.create_histogram(
            "sdk.state.size", unit="By", description="Bytes of agent state loaded or saved",
            explicit_bucket_boundaries_advisory=_BYTES,
        )  # fmt: skip
        self.state_duration = meter.create_histogram(
            "sdk.state.duration", unit="s", description="Time an agent state load or save took",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self.state_conflicts = meter.create_counter(
            "sdk.state.conflicts", unit="{save}", description="State saves refused as stale"
        )
        self._agents: dict[str, str] = {}
        self._send_attributes: dict[str, dict[str, str]] = {}
        self._process_attributes: dict[str, dict[str, str]] = {}
        self._timed: dict[int, _TimedCodec] = {}

    # -- attributes -------------------------------------------------------------------

    def _metric_attributes(self, to: str, operation: str = "process") -> dict[str, str]:
        """The (cached, not to be changed) data-point attributes of a message to ``to``.

        ``messaging.system`` and ``messaging.operation.name`` (``send``, ``process``) are
        the ones the conventions require of messaging metrics; ``sdk.tenant.id`` and
        ``sdk.agent.to`` attribute the message to a tenant and an agent.
        """
        cache = self._process_attributes if operation == "process" else self._send_attributes
        attributes = cache.get(to)
        if attributes is None:
            attributes = {
                "messaging.system": "nats",
                "messaging.operation.name": operation,
                "sdk.tenant.id": self.tenant,
                "sdk.agent.to": self.agent(to),
            }
            if len(cache) < _MAX_AGENTS * 2:
                cache[to] = attributes
        return attributes

    def agent(self, name: str) -> str:
        """``name``, or ``_other`` once more than 256 agents were seen (bounded cardinality)."""
        bounded = self._agents.get(name)
        if bounded is None:
            bounded = name if len(self._agents) < _MAX_AGENTS else _OTHER
            self._agents[name] = bounded
        return bounded

    def _attributes(
        self,
        operation: str,
        destination: str,
        template: str,
        sender: str,
        to: str,
        body_size: int,
        message_id: str | None,
        correlation_id: str | None,
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "messaging.system": "nats",
            "messaging.operation.name": operation,
            "messaging.operation.type": operation,
            "messaging.destination.name": destination,
            "messaging.destination.template": template,
            "messaging.message.body.size": body_size,
            "sdk.agent.from": sender,
            "sdk.agent.to": to,
            "sdk.tenant.id": self.tenant,
        }
        if message_id is not None:
            attributes["messaging.message.id"] = message_id
        if correlation_id is not None:
            attributes["messaging.message.conversation_id"] = correlation_id
        return attributes

    # -- spans ----------------------------------------------------------------------

    def start_send(
        self,
        destination: str,
        template: str,
        sender: str,
        to: str,
        headers: MutableMapping[str, str],
        body_size: int,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Span | None:
        """Start the PRODUCER span of a tell or ask and inject its context into ``headers``.

        Returns None (and injects the current context as it is) under an unsampled parent.
        """
        current = otel_context.get_current()
        attributes = self._metric_attributes(to, "send")
        self.sent.add(1, attributes)
        self.sent_bytes.add(body_size, attributes)
        parent = trace.get_current_span(current)
        if _sampled(parent) is False:
            _inject(headers, current, parent)
            return None
        span = self.tracer.start_span(
            f"send {template}",
            context=current,
            kind=SpanKind.PRODUCER,
            attributes=self._attributes(
                "send", destination, template, sender, to, body_size, message_id, correlation_id
            ),
        )
        _inject(headers, trace.set_span_in_context(span, current), span)
        return span

    def start_process(
        self,
        headers: Mapping[str, str] | None,
        destination: str,
        template: str,
        sender: str,
        to: str,
        body_size: int,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[Span | None, object, float]:
        """Start the CONSUMER span of a handled message and attach its context.

        Returns (span or None, the token to :meth:`end_process`, the start time).
        """
        parent_ctx = _extract(headers) if headers else _EMPTY
        self.consumed_bytes.add(body_size, self._metric_attributes(to))
        start = time.perf_counter()
        if _sampled(trace.get_current_span(parent_ctx)) is False:
            return None, otel_context.attach(parent_ctx), start
        ambient = trace.get_current_span().get_span_context()
        span = self.tracer.start_span(
            f"process {template}",
            context=parent_ctx,
            kind=SpanKind.CONSUMER,
            links=[Link(ambient)] if ambient.is_valid else None,
            attributes=self._attributes(
                "process", destination, template, sender, to, body_size, message_id, correlation_id
            ),
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent_ctx))
        return span, token, start

    def end_process(
        self, span: Span | None, token: object, start: float, to: str, error: BaseException | None
    ) -> None:
        """End the process span (recording ``error``), detach its context, record metrics."""
        otel_context.detach(token)  # type: ignore[arg-type]
        attributes = self._metric_attributes(to)
        if error is not None:
            attributes = {**attributes, "error.type": type(error).__name__}
        self.consumed.add(1, attributes)
        self.process_duration.record(time.perf_counter() - start, attributes)
        if span is not None:
            if error is not None:
                self.fail(span, error)
            span.end()

    def start_reply(
        self, reply: str, to: str, headers: MutableMapping[str, str], body_size: int
    ) -> Span | None:
        """Start the PRODUCER span of a reply (a child of the process span)."""
        current = otel_context.get_current()
        parent = trace.get_current_span(current)
        if not _sampled(parent):
            _inject(headers, current, parent)
            return None
        span = self.tracer.start_span(
            "send",
            context=current,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": reply,
                "messaging.destination.temporary": True,
                "messaging.destination.anonymous": True,
                "messaging.message.body.size": body_size,
                "sdk.agent.from": to,
                "sdk.tenant.id": self.tenant,
            },
        )
        _inject(headers, trace.set_span_in_context(span, current), span)
        return span

    async def traced(self, span: Span | None, work: Awaitable[T]) -> T:
        """Await ``work`` inside ``span``: a failure marks it, and it ends either way."""
        try:
            return await work
        except BaseException as exc:
            if span is not None:
                self.fail(span, exc)
            raise
        finally:
            if span is not None:
                span.end()

    @staticmethod
    def fail(span: Span, error: BaseException) -> None:
        """Record ``error`` on ``span`` and mark it failed."""
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:512]))

    # -- keyed agents and state ----------------------------------------------------------

    def start_keyed(self, operation: str, kind: str, key: str) -> Span:
        """Start the span of a keyed instance's ``activate`` or ``deactivate`` (end it)."""
        return self.tracer.start_span(
            f"{operation} {kind}",
            kind=SpanKind.INTERNAL,
            attributes={"sdk.tenant.id": self.tenant, "sdk.agent.kind": kind,
                        "sdk.agent.key": key},
        )  # fmt: skip

    def state_done(
        self, operation: str, agent: str, size: int, seconds: float, conflict: bool = False
    ) -> None:
        """Record a state ``load`` or ``save`` of ``agent`` (a name or a kind)."""
        attributes = {"sdk.tenant.id": self.tenant, "sdk.agent.to": self.agent(agent),
                      "sdk.state.operation": operation}  # fmt: skip
        if conflict:
            self.state_conflicts.add(1, attributes)
            return
        self.state_size.record(size, attributes)
        self.state_duration.record(seconds, attributes)

    # -- metrics from supervision events -----------------------------------------------

    def count_event(self, kind: str, actor: str) -> None:
        """Count a supervision event (timeouts, retries, restarts, dead letters, ...)."""
        counter = self._events.get(kind)
        if counter is not None:
            name = actor.rsplit("/", 1)[-1] or "/"
            counter.add(1, {"sdk.tenant.id": self.tenant, "sdk.agent.to": self.agent(name)})

    def ask_finished(self, to: str, seconds: float, error: BaseException | None) -> None:
        """Record the duration of a whole ask."""
        attributes = {"sdk.tenant.id": self.tenant, "sdk.agent.to": self.agent(to)}
        if error is not None:
            attributes["error.type"] = type(error).__name__
        self.ask_duration.record(seconds, attributes)

    # -- observable instruments -----------------------------------------------------------

    @staticmethod
    def on_loop(callback: Callable[[Any], Sequence[Any]]) -> Callable[[Any], Sequence[Any]]:
        """``callback`` of an observable instrument, made to run on the current event loop.

        Metric readers call observable callbacks from their own threads (the periodic OTLP
        exporter's, a Prometheus scrape's), but what such a callback reads (actors,
        mailboxes, the loop's clock) belongs to the event loop: from another thread the
        call is handed to the loop and waited for, at most a second (a loop blocked that
        long gives no observations this time). On the loop's own thread (an in-memory
        reader read by async code) it runs at once. Once the loop has stopped it observes
        nothing.
        """
        loop = asyncio.get_running_loop()

        def observe(options: Any) -> Sequence[Any]:
            try:
                current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                current = None
            if current is loop:
                return callback(options)
            if not loop.is_running():
                return []
            done: concurrent.futures.Future[Sequence[Any]] = concurrent.futures.Future()

            def run() -> None:
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(callback(options))
                    except BaseException as exc:
                        done.set_exception(exc)

            try:
                loop.call_soon_threadsafe(run)
            except RuntimeError:  # closed meanwhile
                return []
            timeout = min(1.0, getattr(options, "timeout_millis", 1000.0) / 1000)
            try:
                return done.result(timeout)
            except concurrent.futures.TimeoutError:
                done.cancel()
                return []

        return observe

    # -- codecs ---------------------------------------------------------------------------

    def instrument_codecs(self, codecs: Any) -> None:
        """Measure the codecs of ``codecs`` (a system's codec set) from now on.

        Each codec is replaced in the set by a :class:`_TimedCodec` around it, so every
        body this system encodes or decodes records ``sdk.codec.encode.duration`` and
        ``.size`` (or ``decode``), per codec. With telemetry off this is never called and
        the codecs are the codecs: nothing is measured and nothing is paid.

        The codec set has no hook for this (codecs knows nothing of telemetry), so its
        lookup tables are taken over here; a plug-in codec started later is wrapped when
        it is added to them.
        """
        names = ("_by_name", "_by_content_type")
        tables = [getattr(codecs, name, None) for name in names]
        if not all(isinstance(table, dict) for table in tables):
            log.warning("codec metrics are off: the codec set has no lookup tables to wrap")
            return
        for name, table in zip(names, tables, strict=True):
            setattr(codecs, name, _TimedTable(self, cast(dict[str, Any], table)))
        codecs.default = self.timed(codecs.default)

    def timed(self, codec: Any) -> Any:
        """``codec``, measured (:meth:`instrument_codecs`); a measured one as it is."""
        if type(codec) is _TimedCodec:
            return codec
        timed = self._timed.get(id(codec))
        if timed is None:  # one wrapper per codec, whichever table it is found in
            timed = self._timed[id(codec)] = _TimedCodec(codec, self)
        return timed


@final
class _TimedCodec:
    """A codec that records the time each encode and decode takes, and the bytes.

    Data points carry ``sdk.tenant.id`` and ``sdk.codec.name``, and ``error.type`` when
    the codec raised (its duration only). Anything else is the wrapped codec's.
    """

    __slots__ = ("_attributes", "_codec", "_tel", "content_type", "name")

    def __init__(self, codec: Any, tel: Telemetry) -> None:
        self._codec = codec
        self._tel = tel
        self.name: str = codec.name
        self.content_type: str = codec.content_type
        self._attributes = {"sdk.tenant.id": tel.tenant, "sdk.codec.name": codec.name}

    def __getattr__(self, name: str) -> Any:  # registry, limits, a codec's own extras
        return getattr(self._codec, name)

    def __repr__(self) -> str:
        return f"<timed {self._codec!r}>"

    def _failed(self, histogram: Any, start: float, error: Exception) -> None:
        histogram.record(
            time.perf_counter() - start, {**self._attributes, "error.type": type(error).__name__}
        )

    def encode(self, obj: object) -> bytes:
        """Encode with the wrapped codec, measured."""
        tel, start = self._tel, time.perf_counter()
        try:
            data: bytes = self._codec.encode(obj)
        except Exception as exc:
            self._failed(tel.encode_duration, start, exc)
            raise
        tel.encode_duration.record(time.perf_counter() - start, self._attributes)
        tel.encode_size.record(len(data), self._attributes)
        return data

    def encode_inline(self, obj: object) -> bytes:
        """Encode inline with the wrapped codec, measured."""
        tel, start = self._tel, time.perf_counter()
        try:
            data: bytes = self._codec.encode_inline(obj)
        except Exception as exc:
            self._failed(tel.encode_duration, start, exc)
            raise
        tel.encode_duration.record(time.perf_counter() - start, self._attributes)
        tel.encode_size.record(len(data), self._attributes)
        return data

    def decode(self, data: bytes, cls: type[Any] | None = None) -> Any:
        """Decode with the wrapped codec, measured."""
        tel, start = self._tel, time.perf_counter()
        try:
            value = self._codec.decode(data, cls)
        except Exception as exc:
            self._failed(tel.decode_duration, start, exc)
            raise
        tel.decode_duration.record(time.perf_counter() - start, self._attributes)
        tel.decode_size.record(len(data), self._attributes)
        return value


class _TimedTable(dict[str, Any]):
    """A codec set's lookup table whose codecs are measured, those added later too."""

    def __init__(self, tel: Telemetry, table: dict[str, Any]) -> None:
        self._tel = tel
        super().__init__({key: tel.timed(codec) for key, codec in table.items()})

    def __setitem__(self, key: str, codec: Any) -> None:
        super().__setitem__(key, self._tel.timed(codec))
