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

Library code uses the OpenTelemetry API only; the SDK is wired by :func:`setup`.
"""

from __future__ import annotations

import importlib.metadata
import re
import time
from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any, Final, TypeVar, final

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.metrics import MeterProvider, get_meter_provider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

T = TypeVar("T")

__all__ = ("SCHEMA_URL", "Telemetry")

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
        self.process_duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="Time a handler took"
        )
        self.ask_duration = meter.create_histogram(
            "sdk.ask.duration", unit="s", description="Time an ask took, all attempts"
        )
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
            "sdk.state.size", unit="By", description="Bytes of agent state loaded or saved"
        )
        self.state_duration = meter.create_histogram(
            "sdk.state.duration", unit="s", description="Time an agent state load or save took"
        )
        self.state_conflicts = meter.create_counter(
            "sdk.state.conflicts", unit="{save}", description="State saves refused as stale"
        )
        self._agents: dict[str, str] = {}
        self._attribute_cache: dict[str, dict[str, str]] = {}

    # -- attributes -------------------------------------------------------------------

    def _metric_attributes(self, to: str) -> dict[str, str]:
        """The (cached, not to be changed) data-point attributes for agent ``to``."""
        attributes = self._attribute_cache.get(to)
        if attributes is None:
            attributes = {"sdk.tenant.id": self.tenant, "sdk.agent.to": self.agent(to)}
            if len(self._attribute_cache) < _MAX_AGENTS * 2:
                self._attribute_cache[to] = attributes
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
        self.sent.add(1, self._metric_attributes(to))
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
