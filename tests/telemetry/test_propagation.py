"""The fast read and write of trace headers agree with OpenTelemetry's own W3C propagator."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry import propagate, trace
from opentelemetry.trace.span import TraceState

from motadata_actors.telemetry._instrument import _extract, _inject

hexes = st.text(alphabet="0123456789abcdef", min_size=1, max_size=40)
traceparents = st.one_of(
    st.builds(
        lambda t, s, f: f"00-{t}-{s}-{f}",
        st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
        st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
        st.sampled_from(["00", "01", "02", "03", "ff"]),
    ),
    st.builds(lambda a, b, c, d: f"{a}-{b}-{c}-{d}", hexes, hexes, hexes, hexes),
    st.text(max_size=60),
)


@given(
    traceparents, st.none() | st.sampled_from(["a=1", "vendor=x,b=2", "bad state!"]), st.booleans()
)
def test_fast_extract_matches_the_w3c_propagator(tp: str, state: str | None, baggage: bool) -> None:
    headers = {"traceparent": tp}
    if state is not None:
        headers["tracestate"] = state
    if baggage:
        headers["baggage"] = "k=v"
    ours = trace.get_current_span(_extract(headers)).get_span_context()
    theirs = trace.get_current_span(propagate.extract(headers)).get_span_context()
    assert ours == theirs


@example("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None, False)
@example("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None, False)
@example("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=1", False)
@given(
    traceparents, st.none() | st.sampled_from(["a=1", "vendor=x,b=2", "bad state!"]), st.booleans()
)
def test_passing_a_received_context_on_writes_what_the_w3c_propagator_writes(
    tp: str, state: str | None, baggage: bool
) -> None:
    headers = {"traceparent": tp}
    if state is not None:
        headers["tracestate"] = state
    if baggage:
        headers["baggage"] = "k=v"
    ours: dict[str, str] = {}
    received = _extract(headers)
    _inject(ours, received, trace.get_current_span(received))
    theirs: dict[str, str] = {}
    propagate.inject(theirs, context=propagate.extract(headers))
    assert ours == theirs


@given(
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 255),
    st.none() | st.sampled_from(["a=1", "vendor=x,b=2"]),
)
def test_injecting_a_local_span_writes_what_the_w3c_propagator_writes(
    trace_id: int, span_id: int, flags: int, state: str | None
) -> None:
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id,
            span_id,
            is_remote=False,
            trace_flags=trace.TraceFlags(flags),
            trace_state=TraceState.from_header([state]) if state else None,
        )
    )
    context = trace.set_span_in_context(span)
    ours: dict[str, str] = {}
    _inject(ours, context, span)
    theirs: dict[str, str] = {}
    propagate.inject(theirs, context=context)
    # The W3C propagator writes an all-zero traceparent for some invalid contexts (a zero id
    # with flags set); receivers reject it, so we write nothing for any invalid context.
    assert ours == (theirs if span.get_span_context().is_valid else {})
