"""Dispatch: one message through admission, its handler, and back to the asker.

Theory of operation (for one message taken by a worker of an actor cell):

* Admission (:class:`~motadata_actors.mailbox._admission.Admission`) decides first: take
  it, refuse it (an asker hears the error, the message is dead-lettered), drop it (a
  repeated core tell) or answer it from the reply cache (a retried ask).
* A stored ask whose asker's time ran out before it was taken is *expired*; otherwise
  its deadline is what the asker had left, on the system's clock.
* The handler runs with a :class:`Context`, the telemetry span, and one timer on the
  system's clock at the asker's deadline: past it the handler is cancelled once and
  reported *overran*, not a crash. A streaming ask's handler may instead be cancelled
  by its consumer closing the stream (*closed*, handled as far as settlement goes).
* A handler that raises is a *crash*: a core ask hears the error, a core tell is
  dead-lettered, a stream ends with the error, a durable message is settled by the cell.
* The result says how it ended, in the words of durable settlement
  (:mod:`motadata_actors.mailbox._settlement`), and whether the supervisor must act.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, final

from motadata_actors._errors import ActorsError, CodecError, DecodeError, StreamError
from motadata_actors.mailbox import DurableMessage, Incoming
from motadata_actors.mailbox._admission import Accept, Admission, Answered, Duplicate
from motadata_actors.mailbox._envelope import Claimed, Letter, seal
from motadata_actors.mailbox._settlement import Outcome
from motadata_actors.mailbox._subjects import is_agent_subject, subject_kind
from motadata_actors.telemetry._logging import get_logger, log_fields

from ._actor import Actor, Context, NotStreamed
from ._claims import claims_off
from ._clock import SystemClock
from ._deadline import Deadline, Watchdog
from ._runtime import (
    AGENT_TEMPLATE,
    EVENT_TEMPLATE,
    STATUS_TEMPLATE,
    WORKFLOW_TEMPLATE,
    current_context,
    reason_line,
)
from ._streaming import ReplyStream
from ._watch import Probe

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ("Dispatcher", "Host", "Result")

log = get_logger("actors")


@final
class Result:
    """How handling one message ended.

    Attributes:
        outcome: in durable settlement's words (``handled``, ``refused``, ``crashed``, ...).
        crash: what the handler raised, when it crashed: the supervisor decides.
        stop: the handler asked the actor to stop (``ctx.stop()``).
        streaming: it was a streaming ask (never redelivered).
        trace_id: with telemetry on, the trace the crashed handling belonged to (hex).
    """

    __slots__ = ("crash", "outcome", "stop", "streaming", "trace_id")

    def __init__(
        self,
        outcome: Outcome,
        *,
        crash: BaseException | None = None,
        stop: bool = False,
        streaming: bool = False,
        trace_id: str = "",
    ) -> None:
        self.outcome: Outcome = outcome
        self.crash = crash
        self.stop = stop
        self.streaming = streaming
        self.trace_id = trace_id


HANDLING_BOUNDS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the handling-time buckets a cell counts; one more counts the rest."""

HANDLED: Final = Result("handled")
REFUSED: Final = Result("refused")
EXPIRED: Final = Result("expired")


async def _at_once(result: Result) -> Result:
    return result


class _Overran(Exception):
    """The handler was cancelled at its asker's deadline."""


class _Closed(Exception):
    """A streaming handler was cancelled because its consumer closed the stream."""


class Host(Protocol):
    """What a dispatcher needs of the cell it works for (a plain actor's, or a kind's)."""

    rt: Runtime
    name: str
    path: str
    handled: int
    failed: int
    rejected: int
    handling_seconds: float
    handling_times: list[int]

    one_at_a_time: bool

    def enter(self) -> None:
        """A handler starts."""
        ...

    def leave(self) -> None:
        """A handler ended."""
        ...

    def call(self, actor: Actor, payload: Any, ctx: Context) -> Awaitable[Any]:
        """Run the handler the way it is written."""
        ...

    def grace_expired(self) -> bool:
        """Whether shutdown's grace ran out."""
        ...

    async def dead_letter(self, msg: Incoming, reason: str) -> None:
        """Dead-letter ``msg`` with ``reason``."""
        ...


@final
class Dispatcher:
    """Handles the messages of one actor cell, one call per message."""

    def __init__(self, cell: Host) -> None:
        rt = cell.rt
        self._cell = cell
        self._rt = rt
        self.admission = Admission(
            rt.tenant,
            rt.codecs,
            max_size=rt.max_size,
            max_header_size=rt.max_header_size,
            replay_window=rt.replay_window,
        )
        self.streams: set[ReplyStream] = set()
        """Streaming replies being sent now."""
        self._watchdog: Watchdog | None = None  # made at the first deadline

    def handle(self, msg: Incoming, actor: Actor) -> Awaitable[Result]:
        """Handle ``msg`` with ``actor`` (await it); never raises but a cancellation.

        A plain function that decides which coroutine runs: one frame less per message.
        """
        left: float | None = None
        if type(msg) is DurableMessage and msg.deadline is not None:
            # Stored: what the asker has left is reckoned now, as it is taken.
            left = msg.deadline - time.time()
            if left <= 0:
                return _at_once(EXPIRED)
        decision = self.admission.admit(msg)
        if msg.reply and type(decision) is not Duplicate and not is_agent_subject(msg.subject):
            # Events and workflow steps are never asks. A durable publish is a request
            # whose reply subject is JetStream's acknowledgement inbox, and core subscribers
            # of the subject see it too: answering would race the acknowledgement.
            decision.letter.reply = ""
        if type(decision) is not Accept:
            return self._not_taken(decision)
        return self._take(decision.letter, decision.payload, actor, left)

    async def _take(self, letter: Letter, payload: Any, actor: Actor, left: float | None) -> Result:
        """Run the handler on a taken message, and answer its asker."""
        cell, rt = self._cell, self._rt
        if type(payload) is Probe:  # a watcher asks whether anything runs this agent
            if letter.reply:
                await rt.send(letter.reply, seal(True, rt.codecs.default))
            return HANDLED
        claimed: Claimed | None = None
        if type(payload) is Claimed:  # a large body, in the object store
            claimed = payload
            try:
                payload = await self._claimed(letter, claimed, actor)
            except ActorsError as exc:
                await self.reject(letter, exc)
                return REFUSED
        if left is None:
            left = letter.timeout
        deadline = rt.clock.now() + left if left is not None else None
        ctx = Context(rt, actor.name, letter, deadline, cell.one_at_a_time)
        stream: ReplyStream | None = None
        if letter.reply and letter.is_streaming_ask:
            stream = await self._open_stream(letter)
            if stream is None:
                return REFUSED
            ctx._stream = stream
        tel = rt.telemetry
        span: Any = None
        otel_token: object = None
        started = 0.0
        if tel is not None:
            span, otel_token, started = tel.start_process(
                letter.headers, letter.subject, _template(letter.subject), ctx.sender or "-",
                cell.name, len(letter.data), letter.message_id, letter.correlation_id,
            )  # fmt: skip
        cell.enter()
        token = current_context.set(ctx)
        log_token = log_fields.set((rt.tenant, cell.name))
        error: BaseException | None = None
        began = perf_counter()
        try:
            if deadline is None or stream is not None or (dog := self._watchdog_here()) is None:
                result = await self._run(actor, payload, ctx, stream)
            else:  # the common ask, inlined: no frame or context manager more per message
                watch = dog.start(deadline)
                try:
                    result = await cell.call(actor, payload, ctx)
                except asyncio.CancelledError:
                    if not watch.expired or cell.grace_expired():
                        raise  # not ours: the system is being torn down
                    self._overran(ctx, None)
                except BaseException:
                    if watch.expired:
                        _take_back_cancel()  # the handler turned it into another error
                    raise
                else:
                    if watch.expired:
                        _take_back_cancel()  # the handler caught it and returned late
                finally:
                    dog.stop(watch)
            if actor._sdk_state is not None:
                await actor._sdk_state.save(actor)  # before the reply: an acked ask is kept
        except _Closed:
            return HANDLED  # the consumer closed the stream: the handler was cancelled
        except _Overran:
            error = TimeoutError("the handler outlived the asker's deadline")
            cell.failed += 1
            return Result("overran", streaming=stream is not None)
        except NotStreamed as exc:
            await self.reject(letter, StreamError(str(exc)))
            return REFUSED
        except Exception as exc:
            error = exc
            trace_id = _trace_id(span, letter) if tel is not None else ""
            return await self._crashed(letter, stream, exc, trace_id)
        else:
            cell.handled += 1
            if stream is not None:
                await self._end_stream(stream, result)
            elif letter.reply:
                await self._reply(letter, result)
            if claimed is not None and type(letter.message) is not DurableMessage:
                await self._release(claimed)  # durable: once acked (the cell)
        finally:
            if stream is not None:
                self.streams.discard(stream)
                await stream.close()
            log_fields.reset(log_token)
            current_context.reset(token)
            cell.leave()
            # Two clock reads and a bucket count, no allocation: the dashboard's latencies.
            spent = perf_counter() - began
            cell.handling_seconds += spent
            cell.handling_times[bisect_left(HANDLING_BOUNDS, spent)] += 1
            if tel is not None:
                tel.end_process(span, otel_token, started, cell.name, error)
        return Result("handled", stop=True) if ctx.stop_requested else HANDLED

    async def _claimed(self, letter: Letter, claimed: Claimed, actor: Actor) -> Any:
        """The value of a body kept in the object store, or a reader of it.

        Raises:
            DecodeError, CodecError: claims are off here, or the body is gone or bad.
        """
        claims = self._rt.claims
        if claims is None:
            raise claims_off(claimed)
        if not is_agent_subject(letter.subject):  # events and workflow steps are never claimed
            raise DecodeError("claim", None, "Sdk-Claim on a message that is never claimed")
        if actor.claimed_bodies == "reader":
            return claims.reader(claimed)
        return await claims.value(claimed)

    async def _release(self, claimed: Claimed) -> None:
        if self._rt.claims is not None:
            await self._rt.claims.release(claimed.name)

    async def _not_taken(self, decision: object) -> Result:
        rt, path = self._rt, self._cell.path
        if type(decision) is Duplicate:
            rt.events.record("duplicate", path, decision.message_id)
            return HANDLED
        if type(decision) is Answered:
            rt.events.record("duplicate", path, decision.letter.message_id or "")
            await rt.send(decision.letter.reply, decision.reply)
            return HANDLED
        assert not isinstance(decision, Accept)
        await self.reject(decision.letter, decision.error)  # type: ignore[attr-defined]
        return REFUSED

    def _run(
        self, actor: Actor, payload: Any, ctx: Context, stream: ReplyStream | None
    ) -> Awaitable[Any]:
        """Call the handler (await it), under the asker's deadline and a consumer's cancel.

        Raises:
            _Overran: cancelled at the deadline.
            _Closed: cancelled because the consumer closed the stream (or is gone).
        """
        if ctx.deadline is None and stream is None:
            return self._cell.call(actor, payload, ctx)  # a tell: nothing to hold it to
        return self._run_limited(actor, payload, ctx, stream)

    def _watchdog_here(self) -> Watchdog | None:
        """The actor's one timer for its handlings' deadlines, on the event loop's clock.

        None under another clock (a manual clock's timers are free, and its count of
        waiting timers stays exact): a :class:`Deadline` per handling then.
        """
        watchdog = self._watchdog
        if watchdog is None and type(self._rt.clock) is SystemClock:
            watchdog = self._watchdog = Watchdog(self._rt.clock)
        return watchdog

    def _overran(self, ctx: Context, stream: ReplyStream | None) -> NoReturn:
        """The handler was cancelled at the asker's deadline: say so, then raise _Overran."""
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
        on = f"stream on {ctx.subject}" if stream is not None else f"on {ctx.subject}"
        self._rt.events.record("overran", self._cell.path, on)
        log.warning("actor %s: handler outlived the asker's deadline %s; cancelled",
                    self._cell.path, on)  # fmt: skip
        raise _Overran from None

    async def _run_limited(
        self, actor: Actor, payload: Any, ctx: Context, stream: ReplyStream | None
    ) -> Any:
        deadline = ctx.deadline
        task = asyncio.current_task()
        assert task is not None
        # A streaming handler shares one cancel between its deadline and its consumer.
        cancel = stream.cancel_handler if stream is not None else None
        with Deadline(self._rt.clock, deadline, cancel) as limit:
            if stream is not None:
                stream.running = True
            try:
                result = await self._cell.call(actor, payload, ctx)
            except asyncio.CancelledError:
                closed = stream is not None and stream.cancelled
                if self._cell.grace_expired() or not (limit.expired or closed):
                    raise  # not ours: the system is being torn down
                if limit.expired:
                    self._overran(ctx, stream)
                task.uncancel()
                sent = stream.sent if stream is not None else 0
                self._rt.events.record(
                    "cancelled", self._cell.path,
                    f"stream closed by its consumer after {sent} part(s)",
                )  # fmt: skip
                raise _Closed from None
            except BaseException:
                if _cancelled_by_us(limit, stream):
                    _take_back_cancel()  # the handler turned it into another error
                raise
            else:
                if _cancelled_by_us(limit, stream):
                    _take_back_cancel()  # the handler caught it and returned
                return result
            finally:
                if stream is not None:
                    stream.running = False  # no await before this: a late cancel cannot land

    async def _crashed(
        self, letter: Letter, stream: ReplyStream | None, exc: Exception, trace_id: str = ""
    ) -> Result:
        cell, rt = self._cell, self._rt
        cell.failed += 1
        log.error("actor %s: handler raised on %s", cell.path, letter.subject, exc_info=exc)
        if stream is not None:
            await stream.fail(type(exc).__name__, str(exc), "handler")
        elif type(letter.message) is DurableMessage:
            pass  # redelivered, or dead-lettered after its last delivery: the cell settles
        elif letter.reply:
            await rt.send_error(letter.reply, type(exc).__name__, str(exc), "handler")
        else:
            await cell.dead_letter(letter.message, f"handler crashed: {reason_line(exc)}")
        return Result("crashed", crash=exc, streaming=stream is not None, trace_id=trace_id)

    async def reject(self, letter: Letter, exc: ActorsError) -> None:
        """Refuse a message before its handler: an asker hears why; it is dead-lettered."""
        cell = self._cell
        cell.rejected += 1
        exc = await self._who_knows(letter, exc)
        reason = reason_line(exc)
        log.warning("actor %s rejected a message on %s: %s", cell.path, letter.subject, reason)
        if letter.reply:
            await self._rt.send_error(letter.reply, type(exc).__name__, str(exc), "sdk")
        await cell.dead_letter(letter.message, reason)

    async def _who_knows(self, letter: Letter, exc: ActorsError) -> ActorsError:
        """An unknown message type's error, with the process the schema registry names."""
        rt = self._rt
        wire_name = letter.message_type
        if (
            rt.schemas is None or not isinstance(exc, CodecError) or wire_name is None
            or wire_name in rt.codecs.registry
        ):  # fmt: skip
            return exc
        known = await rt.schemas.known(wire_name)
        if known is None:
            return exc
        return CodecError(
            f"{exc}; the tenant's schema registry says process {known.get('process')} knows "
            "it: register its class here too, or send it to an agent there"
        )

    async def _reply(self, letter: Letter, result: object) -> None:
        rt = self._rt
        # No Sdk-Message-Id on replies: the reply subject already ties a reply to its ask.
        try:
            sealed = seal(result, rt.codecs.default, share=rt.share)
        except CodecError as exc:
            log.error("actor %s: cannot send its reply: %s", self._cell.path, exc)
            await rt.send_error(letter.reply, type(exc).__name__, f"reply not sent: {exc}", "sdk")
            return
        rt.finish(sealed)
        if rt.claims is not None:
            try:
                await rt.claims.check_in(sealed)
            except ActorsError as exc:
                await rt.send_error(
                    letter.reply, type(exc).__name__, f"reply not sent: {exc}", "sdk"
                )
                return
        tel = rt.telemetry
        span = (
            tel.start_reply(letter.reply, self._cell.name, sealed.headers, len(sealed.data))
            if tel is not None
            else None
        )
        self.admission.answered(letter.message_id, sealed)
        try:
            await rt.publish(letter.reply, sealed)
        except ActorsError as exc:
            if isinstance(exc, CodecError):  # too large for the server, say
                await rt.send_error(
                    letter.reply, type(exc).__name__, f"reply not sent: {exc}", "sdk"
                )
            else:
                log.warning("actor %s: reply lost: %r", self._cell.path, exc)
        finally:
            if span is not None:
                span.end()

    async def _open_stream(self, letter: Letter) -> ReplyStream | None:
        """Start the producing end of a streaming ask; None when it was refused."""
        rt = self._rt
        window, window_bytes = letter.window(rt.stream_window, rt.stream_window_bytes)
        task = asyncio.current_task()
        assert task is not None
        stream = ReplyStream(rt, letter.reply, window, window_bytes, task)
        try:
            await stream.open()
        except ActorsError as exc:
            log.warning("actor %s: cannot open a streaming reply: %r", self._cell.path, exc)
            await rt.send_error(
                letter.reply, type(exc).__name__, f"stream not opened: {exc}", "sdk"
            )
            await stream.close()
            return None
        self.streams.add(stream)
        return stream

    async def _end_stream(self, stream: ReplyStream, result: object) -> None:
        try:
            await stream.end(result, result is not None)
        except CodecError as exc:
            log.error("actor %s: cannot send the end of its stream: %s", self._cell.path, exc)
            await stream.fail(type(exc).__name__, f"final part not sent: {exc}", "sdk")
        except ActorsError as exc:
            log.warning("actor %s: end of stream lost: %r", self._cell.path, exc)


def _take_back_cancel() -> None:
    """Withdraw a cancel that the handler caught instead of ending with it.

    A deadline (or a stream's consumer) cancelled the handler, and it returned or raised
    something else: the worker task would keep the request counted for every handling
    after (``Task.cancelling()`` above 0), which a handler or a library reading it would
    take for a cancel under way.
    """
    task = asyncio.current_task()
    assert task is not None
    task.uncancel()


def _cancelled_by_us(limit: Deadline, stream: ReplyStream | None) -> bool:
    """Whether the handler's deadline or its stream's consumer cancelled the worker task."""
    return stream.cancel_requested if stream is not None else limit.expired


_TEMPLATES: Final = {
    "agent": AGENT_TEMPLATE,
    "events": EVENT_TEMPLATE,
    "status": STATUS_TEMPLATE,
}


def _trace_id(span: Any, letter: Letter) -> str:
    """The trace (hex) of a handling: its span's, or, unsampled, the one it came with."""
    if span is not None:
        return format(span.get_span_context().trace_id, "032x")
    parts = letter.headers.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def _template(subject: str) -> str:
    return _TEMPLATES.get(subject_kind(subject), WORKFLOW_TEMPLATE)
