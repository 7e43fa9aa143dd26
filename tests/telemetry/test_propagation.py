"""The fast read of ``traceparent`` agrees with OpenTelemetry's own W3C propagator."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import propagate, trace

from motadata_actors.telemetry._instrument import _extract

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
