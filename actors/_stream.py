"""Streaming replies: ``ref.ask_stream(msg)`` on one side, ``ctx.stream(part)`` on the other.

Theory of operation:

* The asker subscribes a fresh inbox, then sends the request with that inbox as its reply
  subject, ``Sdk-Stream-Window: <W> <B>`` (parts and bytes; the header marks a streaming
  ask) and ``Sdk-Timeout-Ms`` (the deadline of the whole stream).
* The handler's process subscribes the stream's control subject, ``<inbox>.ctl``, and
  publishes each part to the inbox with ``Sdk-Stream-Seq: n`` (from 1). The last message
  carries ``Sdk-Stream-End``: the handler's return value (an empty body when there is
  none), or its error (``Sdk-Error``, as for a plain ask).
* Flow control is a credit window: the producer may be at most ``W`` parts, and ``B``
  bytes of bodies, ahead of what the consumer has *taken from the iterator*. The
  consumer reports its progress on the control subject (``Sdk-Stream-Seq: n``) every
  ``W/2`` parts or ``B/2`` bytes; a producer at the limit waits. A part that does not fit
  in what is left of ``B`` still goes while less than ``B/2`` is out (else, with the
  consumer waiting for ``B/2`` before it reports, neither side would move). So a slow
  reader holds at most ``W`` parts and ``B`` bytes (``B/2`` plus one part when parts
  are larger than the rest of the window).
* Closing the iterator early (``break`` inside ``async with``, ``aclose``, a cancelled
  task, or the iterator being dropped) sends ``Sdk-Stream-End: cancel`` on the control
  subject: the handler is cancelled where it is. The deadline ends both ends: the consumer
  raises :class:`AskTimeout`, the handler is cancelled as for an ask that overran.
* The consumer checks every part's sequence number: a missing or reordered part ends the
  stream with :class:`StreamError`.

A streaming ask is never retried: parts already taken cannot be taken back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, final

import anyio

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    NoResponders,
    StreamError,
)
from motadata_actors.mailbox import (
    CONTENT_TYPE,
    ERROR,
    STREAM_END,
    STREAM_SEQ,
    TIMEOUT_MS,
    Incoming,
    Mailbox,
    Subscription,
    decode_body,
    drop_inbox,
    encode_body,
    inbox_prefix,
    keep_inbox,
    received_headers,
)
from motadata_actors.telemetry import get_logger

from ._runtime import Runtime

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ("AskStream", "ReplyStream", "control_subject", "parse_window", "window_header")

log = get_logger("stream")

_CANCEL: Final = "cancel"
_STATUS: Final = "Status"  # the header nats-server's no-responders status comes in
MAX_WINDOW: Final = 10_000
_dropped: set[asyncio.Task[None]] = set()  # cancels sent for iterators nobody closed


def window_header(window: int, window_bytes: int) -> str:
    """``Sdk-Stream-Window``'s value: ``<parts> <bytes>``."""
    return f"{window} {window_bytes}"


def parse_window(text: str, parts: int, size: int) -> tuple[int, int]:
    """Parts and bytes from ``Sdk-Stream-Window``; the defaults for what is malformed."""
    fields = text.split()
    with contextlib.suppress(ValueError, IndexError):
        parts = max(1, min(MAX_WINDOW, int(fields[0])))
    with contextlib.suppress(ValueError, IndexError):
        size = max(1, int(fields[1]))
    return parts, size


def _expire(ref: weakref.ref[AskStream]) -> None:
    stream = ref()
    if stream is not None:
        stream.expire()


def control_subject(reply: str) -> str:
    """The subject a stream's consumer reports progress and cancels on: ``<inbox>.ctl``."""
    return f"{reply}.ctl"


@final
class ReplyStream:
    """The producing end of one streaming reply; made by the actor cell per streaming ask.

    Parts go out with the control subject as their reply subject (the first, and one in
    every quarter window): when the consumer's inbox has no subscriber any more (it
    stopped, its process died, or it cancelled before this side listened), the server
    answers such a part with a no-responders status on the control subject, which this
    side takes as a cancel.
    """

    __slots__ = (
        "_box",
        "_bytes",
        "_cancel_requested",
        "_credit",
        "_half_bytes",
        "_lock",
        "_probe_every",
        "_rt",
        "_sizes",
        "_sub",
        "_watcher",
        "acked",
        "cancelled",
        "control",
        "reply",
        "running",
        "sent",
        "task",
        "window",
        "window_bytes",
    )

    def __init__(
        self, rt: Runtime, reply: str, window: int, window_bytes: int, task: asyncio.Task[Any]
    ) -> None:
        self._rt = rt
        self.reply = reply
        self.control = control_subject(reply)
        self.window = window
        self.window_bytes = window_bytes
        self._half_bytes = max(1, window_bytes // 2)  # the consumer reports at least this often
        self._probe_every = max(1, window // 4)
        self._sizes: deque[int] = deque()  # body sizes of the parts not yet taken
        self._bytes = 0
        self.sent = 0
        """Parts published so far."""
        self.acked = 0
        """Parts the consumer reported taken."""
        self.cancelled = False
        """Whether the consumer closed the stream early (or is gone)."""
        self.running = False  # set by the cell while the handler runs: only then cancel it
        self.task = task
        """The handler's task, cancelled when the consumer cancels."""
        self._cancel_requested = False
        self._credit: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()  # parts from concurrent tasks go out one at a time
        self._sub: Subscription | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._box: Mailbox[Incoming] = Mailbox(16)

    @property
    def outstanding(self) -> int:
        """Parts sent and not yet taken by the consumer (never above :attr:`window`)."""
        return self.sent - self.acked

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
                headers = received_headers(msg.headers) or {}
            except CodecError:
                continue  # not a control message of ours
            if headers.get(STREAM_END) == _CANCEL or headers.get(_STATUS) == "503":
                self.cancelled = True
                self._wake()
                self.cancel_handler()
                return
            try:
                taken = int(headers.get(STREAM_SEQ, ""))
            except ValueError:
                continue
            taken = min(taken, self.sent)
            if taken > self.acked:
                sizes = self._sizes
                for _ in range(taken - self.acked):
                    self._bytes -= sizes.popleft()
                self.acked = taken
                self._wake()

    def _wake(self) -> None:
        credit = self._credit
        if credit is not None and not credit.done():
            credit.set_result(None)

    async def send(self, part: object) -> None:
        """Publish the next part once the consumer's window has room for it.

        Raises:
            EncodeError: ``part`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``part`` exceeds the size limit (nothing was sent).
        """
        rt = self._rt
        headers: dict[str, str] = {}
        data = encode_body(part, rt.codecs.default, headers)
        size = len(data)
        async with self._lock:
            # Past the byte window only while half of it is out: the consumer reports
            # every half window, so a large part after small ones cannot wait forever.
            while self.sent - self.acked >= self.window or (
                self._bytes + size > self.window_bytes and self._bytes >= self._half_bytes
            ):
                self._credit = asyncio.get_running_loop().create_future()
                await self._credit  # the consumer cancelling cancels this task too
            seq = self.sent + 1
            headers[STREAM_SEQ] = str(seq)
            # The control subject as reply subject on the first part and every quarter
            # window after: enough for the server to tell us the consumer is gone
            # (within a window), without the longer command on every part.
            if seq == 1 or seq % self._probe_every == 0:
                await rt.transport.publish(self.reply, data, headers=headers, reply=self.control)
            else:
                await rt.transport.publish(self.reply, data, headers=headers)
            self.sent = seq  # only once it went out: a refused part leaves no gap
            self._sizes.append(size)
            self._bytes += size

    async def end(self, result: object, has_result: bool) -> None:
        """Publish the last message: the handler's return value, or an empty body."""
        rt = self._rt
        headers: dict[str, str] = {}
        data = encode_body(result, rt.codecs.default, headers) if has_result else b""
        headers[STREAM_SEQ] = str(self.sent + 1)
        headers[STREAM_END] = "1"
        await rt.transport.publish(self.reply, data, headers=headers)

    async def fail(self, type_name: str, message: str, origin: str) -> None:
        """Publish the last message as an error (``Sdk-Error``); never raises."""
        end = {STREAM_SEQ: str(self.sent + 1), STREAM_END: "1"}
        await self._rt.send_error(self.reply, type_name, message, origin, end)

    async def close(self) -> None:
        """Stop listening on the control subject."""
        drop_inbox(self.reply)
        if self._watcher is not None:
            self._watcher.cancel()
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except ActorsError as exc:
                log.debug("stream control %s: unsubscribe: %r", self.reply, exc)


@final
class AskStream(AsyncIterator[Any]):
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
    """

    def __init__(
        self,
        ref_name: str,
        rt: Runtime,
        send: Callable[[str, dict[str, str], bytes], Awaitable[None]],
        headers: dict[str, str],
        data: bytes,
        budget: float,
        window: int,
        window_bytes: int,
        error: Callable[[bytes, dict[str, str]], ActorsError],
        span: Span | None,
    ) -> None:
        self._name = ref_name
        self._rt = rt
        self._send = send
        self._headers = headers
        self._data = data
        self._budget = budget
        self.window = window
        """How many parts the producer may send ahead of what was taken."""
        self.window_bytes = window_bytes
        """How many bytes of bodies the producer may send ahead of what was taken."""
        self._ack_every = max(1, window // 2)
        self._ack_bytes = max(1, window_bytes // 2)
        self._unreported = 0  # bytes of bodies taken since the last report
        self._error = error
        self._span = span
        self._inbox = f"{inbox_prefix(rt.tenant)}.{uuid.uuid4().hex}"
        self._control_subject = control_subject(self._inbox)
        self._box: Mailbox[Incoming] = Mailbox(window + 4)
        self._sub: Subscription | None = None
        self._started = False
        self._done = False
        self._taken = 0  # parts handed out
        self._reported = 0  # parts reported taken to the producer
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Task[Any] | None = None
        self._expired = False

    @property
    def received(self) -> int:
        """Parts handed out so far (the final value included)."""
        return self._taken

    @property
    def done(self) -> bool:
        """Whether the stream ended (completed, failed, timed out or closed)."""
        return self._done

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _start(self) -> None:
        self._started = True
        rt = self._rt
        loop = asyncio.get_running_loop()
        # A weak reference: the loop must not keep a dropped iterator alive until then.
        self._timer = loop.call_at(loop.time() + self._budget, _expire, weakref.ref(self))
        try:
            self._sub = await rt.transport.subscribe(self._inbox, mailbox=self._box)
            self._headers[TIMEOUT_MS] = str(max(1, round(self._budget * 1000)))
            await self._send(self._inbox, self._headers, self._data)
        except BaseException as exc:
            await self._finish(exc)
            raise

    def expire(self) -> None:
        """The deadline passed: wake the waiting reader (it raises :class:`AskTimeout`)."""
        self._expired = True
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
        box = self._box
        if self._deadline_passed():
            raise await self._timed_out()
        task = self._waiter = asyncio.current_task()
        try:
            msg = await box.receive()
        except asyncio.CancelledError:
            if self._deadline_passed() and task is not None and task.uncancel() == 0:
                raise await self._timed_out() from None
            await self._cancel()  # our caller was cancelled: so is the producer
            raise
        except StopAsyncIteration:  # the mailbox closed under us: the system stopped
            await self._finish(None)
            raise
        finally:
            self._waiter = None
        return await self._part(msg)

    async def _part(self, msg: Incoming) -> Any:
        try:
            headers = received_headers(msg.headers) or {}
        except CodecError as exc:
            await self._cancel(exc)
            raise
        expected = self._taken + 1
        if headers.get(_STATUS) == "503":
            nobody = NoResponders(
                f"no actor named {self._name!r} serves tenant {self._rt.tenant!r} "
                f"on {self._rt.transport.description}{self._rt.no_responders_hint}"
            )
            await self._finish(nobody)
            raise nobody
        seq = headers.get(STREAM_SEQ)
        if ERROR in headers and seq in (None, str(expected)):
            # The handler failed (its stream ends here), or the actor refused the request
            # before any stream began (a plain error reply, with no sequence number).
            error = self._error(msg.data, headers)
            await self._finish(error)
            raise error
        if seq != str(expected):
            broken = StreamError(
                f"stream from {self._name!r}: expected part {expected}, got "
                f"{seq if seq is not None else 'a message without Sdk-Stream-Seq'}"
            )
            await self._cancel(broken)
            raise broken
        last = STREAM_END in headers
        if last and CONTENT_TYPE not in headers:
            await self._finish(None)
            raise StopAsyncIteration  # the handler returned nothing to add
        try:
            value = decode_body(msg.data, headers, self._rt.codecs)
        except ActorsError as exc:
            await self._cancel(exc)
            raise
        self._taken = expected
        if last:
            await self._finish(None)
        else:
            self._unreported += len(msg.data)
            if expected - self._reported >= self._ack_every or self._unreported >= self._ack_bytes:
                await self._report()
        return value

    async def _report(self) -> None:
        """Tell the producer how many parts were taken: it may send that many more."""
        self._reported = self._taken
        self._unreported = 0
        await self._control({STREAM_SEQ: str(self._taken)})

    async def _timed_out(self) -> AskTimeout:
        late = AskTimeout(
            f"stream from {self._name!r} did not end within {self._budget:.3g}s "
            f"({self._taken} part(s) received)"
        )
        await self._cancel(late)
        return late

    async def _control(self, headers: dict[str, str]) -> None:
        try:
            await self._rt.transport.publish(self._control_subject, b"", headers=headers)
        except ActorsError as exc:
            log.debug("stream from %s: control message lost: %r", self._name, exc)

    async def _cancel(self, error: BaseException | None = None) -> None:
        """Tell the producer to stop, and end this side (also from a cancelled task)."""
        with anyio.CancelScope(shield=True):
            if not self._done:
                await self._control({STREAM_END: _CANCEL})
            await self._finish(error)

    async def _finish(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(ActorsError):
                await sub.unsubscribe()
        span = self._span
        if span is not None:
            span.set_attribute("sdk.stream.parts", self._taken)
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
        # Dropped mid-stream without aclose (a bare `break`): cancel the producer anyway.
        if not self._started or self._done:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._cancel())
        _dropped.add(task)
        task.add_done_callback(_dropped.discard)
