"""Streaming replies: ``ref.ask_stream(msg)`` on one side, ``ctx.stream(part)`` on the other.

Theory of operation:

* The asker subscribes a fresh inbox, then sends the request with that inbox as its reply
  subject, a credit window (parts and bytes; it marks a streaming ask) and the deadline of
  the whole stream.
* The handler's process subscribes the stream's control subject (``<inbox>.ctl``) and
  publishes each part to the inbox, numbered from 1. The last message ends the stream:
  the handler's return value (an empty body when there is none), or its error.
* Flow control is a credit window (:mod:`motadata_actors.mailbox._credit` has its rules):
  the consumer reports what it has *taken from the iterator*; a producer at the limit
  waits.
* Closing the iterator early (``break`` inside ``async with``, ``aclose``, a cancelled
  task, or the iterator being dropped) sends a cancel on the control subject: the handler
  is cancelled where it is. The deadline ends both ends: the consumer raises
  :class:`AskTimeout`, the handler is cancelled as for an ask that overran.
* The consumer checks every part's number: a missing or reordered part ends the stream
  with :class:`StreamError`.

A streaming ask is never retried: parts already taken cannot be taken back.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Self, final

import anyio
import anyio.abc

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    NoResponders,
    StreamError,
    TransportClosed,
)
from motadata_actors.mailbox import Incoming, Mailbox, Subscription
from motadata_actors.mailbox._credit import CreditWindow, TakenReport
from motadata_actors.mailbox._envelope import (
    MAX_WINDOW,
    Letter,
    Sealed,
    cancel,
    credit,
    seal_end,
    seal_error,
    seal_part,
)
from motadata_actors.mailbox._subjects import control_subject, drop_inbox, keep_inbox, new_inbox
from motadata_actors.telemetry._logging import get_logger

from ._clock import Timer
from ._runtime import Runtime

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ("MAX_WINDOW", "AskStream", "ReplyStream")

log = get_logger("stream")

_CONTROL_BOX: Final = 16


@final
class ReplyStream:
    """The producing end of one streaming reply; opened by the dispatcher per streaming ask.

    Its watcher (a task it owns: started by :meth:`open`, cancelled and awaited by
    :meth:`close`) reads the control subject: credit, a cancel, or the server's
    no-responders status for a probing part (the consumer is gone), taken as a cancel.
    """

    __slots__ = (
        "_box",
        "_cancel_requested",
        "_lock",
        "_rt",
        "_sub",
        "_wake",
        "_watcher",
        "cancelled",
        "control",
        "reply",
        "running",
        "task",
        "window",
    )

    def __init__(
        self, rt: Runtime, reply: str, window: int, window_bytes: int, task: asyncio.Task[Any]
    ) -> None:
        self._rt = rt
        self.reply = reply
        self.control = control_subject(reply)
        self.window = CreditWindow(window, window_bytes)
        self.cancelled = False
        """Whether the consumer closed the stream early (or is gone)."""
        self.running = False  # set while the handler runs: only then may it be cancelled
        self.task = task
        """The handler's task, cancelled when the consumer cancels."""
        self._cancel_requested = False
        self._wake: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()  # parts from concurrent tasks go out one at a time
        self._sub: Subscription | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._box: Mailbox[Incoming] = Mailbox(_CONTROL_BOX)

    @property
    def outstanding(self) -> int:
        """Parts sent and not yet taken by the consumer (never above the window)."""
        return self.window.outstanding

    @property
    def sent(self) -> int:
        """Parts sent."""
        return self.window.sent

    @property
    def cancel_requested(self) -> bool:
        """Whether the handler's task was cancelled (by the consumer or the deadline)."""
        return self._cancel_requested

    def cancel_handler(self) -> bool:
        """Cancel the running handler, once whoever asks (the consumer or the deadline).

        Returns whether this call did it: the caller that did owns the one ``uncancel``.
        """
        if not self.running or self._cancel_requested:
            return False
        self._cancel_requested = True
        self.task.cancel()
        return True

    async def open(self) -> None:
        """Listen on the control subject before the first part goes out.

        Raises:
            SubjectError: the reply subject is not one to publish on.
        """
        keep_inbox(self.reply)  # checked once here, not for every part
        self._sub = await self._rt.transport.subscribe(self.control, mailbox=self._box)
        self._watcher = asyncio.create_task(self._watch(), name=f"stream-control:{self.reply}")

    async def _watch(self) -> None:
        async for msg in self._box:
            try:
                letter = Letter.open(msg)
            except CodecError:
                continue  # not a control message of ours
            if letter.cancels_stream or letter.no_responders:
                self.cancelled = True
                self._notify()
                self.cancel_handler()
                return
            taken = letter.stream_seq
            if taken is not None and taken > 0 and self.window.report(taken):
                self._notify()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def send(self, part: object) -> None:
        """Publish the next part once the consumer's window has room for it.

        Raises:
            EncodeError: ``part`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``part`` exceeds the size limit (nothing was sent).
        """
        rt = self._rt
        window = self.window
        async with self._lock:
            seq, probe = window.next_part()
            sealed = rt.finish(seal_part(part, rt.codecs.default, seq))
            size = len(sealed.data)
            while not window.has_room(size):
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake  # the consumer cancelling cancels this task too
            await rt.transport.publish(
                self.reply, sealed.data, headers=sealed.headers, reply=self.control if probe else ""
            )
            window.sent_part(size)  # counted once it went out: a refused part leaves no gap

    async def end(self, result: object, has_result: bool) -> None:
        """Publish the last message: the handler's return value, or an empty body."""
        rt = self._rt
        sealed = seal_end(result, rt.codecs.default, self.window.sent + 1, has_result=has_result)
        if has_result:
            rt.finish(sealed)
        await rt.transport.publish(self.reply, sealed.data, headers=sealed.headers)

    async def fail(self, type_name: str, message: str, origin: str) -> None:
        """Publish the last message as an error; never raises."""
        sealed = seal_error(
            type_name, message[:4096], origin, self._rt.codecs.default,
            stream_end=self.window.sent + 1,
        )  # fmt: skip
        await self._rt.send(self.reply, sealed)

    async def close(self) -> None:
        """Stop listening on the control subject; the watcher is done when this returns."""
        drop_inbox(self.reply)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except ActorsError as exc:
                log.debug("stream control %s: unsubscribe: %r", self.reply, exc)


def _expire(ref: weakref.ref[AskStream]) -> None:
    stream = ref()
    if stream is not None:
        stream.expire()


@final
class AskStream(AsyncIterator[Any], anyio.abc.AsyncResource):
    """The parts of a streaming reply, in order; made by :meth:`ActorRef.ask_stream`.

    Iterate it with ``async for``; the request is sent when iteration starts. Use it as
    an ``async with`` block (or call :meth:`aclose`) when you may stop early, so the
    handler is cancelled at once rather than when the iterator is garbage-collected.

    Raises (from iteration):
        AskTimeout: the stream did not end within its deadline.
        NoResponders: no actor of this name serves the tenant.
        RemoteError: the handler raised; the parts before it were delivered.
        StreamError: a part went missing or came out of order.
        CodecError: a part cannot be decoded.
        TransportClosed: the asking system stopped (or its transport closed) before the
            stream ended: never a silent end.
    """

    def __init__(
        self,
        ref_name: str,
        rt: Runtime,
        send: Callable[[str, Sealed], Awaitable[None]],
        request: Sealed,
        budget: float,
        window: int,
        window_bytes: int,
        error: Callable[[Letter], ActorsError],
        span: Span | None,
    ) -> None:
        self._name = ref_name
        self._rt = rt
        self._send = send
        self._request = request
        self._budget = budget
        self.window = window
        """How many parts the producer may send ahead of what was taken."""
        self.window_bytes = window_bytes
        """How many bytes of bodies the producer may send ahead of what was taken."""
        self._report = TakenReport(window, window_bytes)
        self._error = error
        self._span = span
        self._inbox = new_inbox(rt.tenant)
        self._control_subject = control_subject(self._inbox)
        self._box: Mailbox[Incoming] = Mailbox(window + 4)
        self._sub: Subscription | None = None
        self._started = False
        self._done = False
        self._timer: Timer | None = None
        self._waiter: asyncio.Task[Any] | None = None
        self._expired = False
        self._aborted: ActorsError | None = None

    @property
    def received(self) -> int:
        """Parts handed out so far (the final value included)."""
        return self._report.taken

    @property
    def waiting(self) -> int:
        """Messages of the stream arrived and not taken yet: the next come without waiting.

        A part each, or the stream's end.
        """
        return self._box.qsize()

    @property
    def done(self) -> bool:
        """Whether the stream ended (completed, failed, timed out or closed)."""
        return self._done

    def __aiter__(self) -> Self:
        return self

    async def _start(self) -> None:
        self._started = True
        rt = self._rt
        clock = rt.clock
        # A weak reference: the clock must not keep a dropped iterator alive until then.
        weak = weakref.ref(self)
        self._timer = clock.call_at(clock.now() + self._budget, lambda: _expire(weak))
        rt.streams.add(self)
        try:
            self._sub = await rt.transport.subscribe(self._inbox, mailbox=self._box)
            self._request.attempt(1, self._budget)
            await self._send(self._inbox, self._request)
        except BaseException as exc:
            await self._finish(exc)
            raise

    def expire(self) -> None:
        """The deadline passed: wake the waiting reader (it raises :class:`AskTimeout`)."""
        self._expired = True
        if self._waiter is not None:
            self._waiter.cancel()

    def abort(self, error: ActorsError) -> None:
        """The system is stopping: wake the waiting reader (it raises ``error``)."""
        if not self._done:
            self._aborted = error
            if self._waiter is not None:
                self._waiter.cancel()

    def _deadline_passed(self) -> bool:
        # A method, not the attribute: type checkers would take the flag, tested once,
        # for a constant across the await that the deadline timer interrupts.
        return self._expired

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        if not self._started:
            await self._start()
        if self._aborted is not None:
            raise await self._cut(self._aborted)
        if self._deadline_passed():
            raise await self._timed_out()
        task = self._waiter = asyncio.current_task()
        try:
            msg = await self._box.receive()
        except asyncio.CancelledError:
            ours = self._deadline_passed() or self._aborted is not None
            if ours and task is not None and task.uncancel() == 0:
                if self._aborted is not None:
                    raise await self._cut(self._aborted) from None
                raise await self._timed_out() from None
            await self._cancel()  # our caller was cancelled: so is the producer
            raise
        except StopAsyncIteration:  # the mailbox closed under us: the transport closed
            raise await self._cut(TransportClosed("the transport closed")) from None
        finally:
            self._waiter = None
        return await self._part(msg)

    async def _part(self, msg: Incoming) -> Any:
        try:
            letter = Letter.open(msg)
        except CodecError as exc:
            await self._cancel(exc)
            raise
        expected = self._report.taken + 1
        if letter.no_responders:
            rt = self._rt
            nobody = NoResponders(
                f"no actor named {self._name!r} serves tenant {rt.tenant!r} "
                f"on {rt.transport.description}{rt.no_responders_hint}"
            )
            await self._finish(nobody)
            raise nobody
        seq = letter.stream_seq
        if letter.error is not None and seq in (None, expected):
            # The handler failed (its stream ends here), or the actor refused the request
            # before any stream began (a plain error reply, with no part number).
            error = self._error(letter)
            await self._finish(error)
            raise error
        if seq != expected:
            broken = StreamError(
                f"stream from {self._name!r}: expected part {expected}, got "
                f"{seq if seq is not None else 'a message without a part number'}"
            )
            await self._cancel(broken)
            raise broken
        last = letter.ends_stream
        if last and not letter.has_body:
            await self._finish(None)
            raise StopAsyncIteration  # the handler returned nothing to add
        try:
            value = letter.body(self._rt.codecs)
        except ActorsError as exc:
            await self._cancel(exc)
            raise
        if last:
            self._report.taken += 1
            await self._finish(None)
        else:
            due = self._report.take(len(letter.data))
            if due is not None:
                await self._control(credit(due))
        return value

    async def _cut(self, why: ActorsError) -> TransportClosed:
        """The stream ends unfinished (never silently): the error to raise."""
        cut = TransportClosed(
            f"stream from {self._name!r} cut after {self._report.taken} part(s): {why}"
        )
        await self._cancel(cut)
        return cut

    async def _timed_out(self) -> AskTimeout:
        late = AskTimeout(
            f"stream from {self._name!r} did not end within {self._budget:.3g}s "
            f"({self._report.taken} part(s) received)"
        )
        await self._cancel(late)
        return late

    async def _control(self, sealed: Sealed) -> None:
        try:
            await self._rt.transport.publish(
                self._control_subject, sealed.data, headers=sealed.headers
            )
        except ActorsError as exc:
            log.debug("stream from %s: control message lost: %r", self._name, exc)

    async def _cancel(self, error: BaseException | None = None) -> None:
        """Tell the producer to stop, and end this side (also from a cancelled task)."""
        with anyio.CancelScope(shield=True):
            if not self._done:
                await self._control(cancel())
            await self._finish(error)

    async def _finish(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self._rt.streams.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(ActorsError):
                await sub.unsubscribe()
        span = self._span
        if span is not None:
            span.set_attribute("sdk.stream.parts", self._report.taken)
            tel = self._rt.telemetry
            if error is not None and tel is not None:
                tel.fail(span, error)
            span.end()

    async def aclose(self) -> None:
        """Stop early: the handler is cancelled; parts not yet taken are discarded."""
        if self._started:
            await self._cancel()
        else:
            self._done = True
            if self._span is not None:
                self._span.end()

    def __del__(self) -> None:
        # Dropped mid-stream without aclose (a bare `break`): cancel the producer anyway,
        # from the system's task group (it owns the task; nothing is left behind).
        if self._started and not self._done:
            self._rt.run_soon(self._cancel)
