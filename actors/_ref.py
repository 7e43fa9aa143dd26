"""ActorRef: the address of an actor, and the ``tell`` and ``ask`` verbs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    MailboxFull,
    MessageExpired,
    NoResponders,
    RemoteError,
    ReplayError,
    SealError,
    StreamError,
    TenantError,
)
from motadata_actors.mailbox import (
    DurableStore,
    Incoming,
    agent_subject,
    check_id,
    keyed_name,
    new_message_id,
)
from motadata_actors.mailbox._envelope import (
    NOT_SHARED,
    Claimed,
    Letter,
    Sealed,
    SharedMessage,
    is_pub_ack_body,
    seal,
    user_headers,
)

from ._claims import claims_off
from ._clock import SystemClock
from ._deadline import Deadline
from ._policy import AskAttempts, AskPolicy
from ._runtime import AGENT_TEMPLATE, MAILBOX_KINDS, MailboxKind, Runtime, current_context
from ._status_events import ProgressCallback, ProgressListener
from ._streaming import MAX_WINDOW, AskStream

if TYPE_CHECKING:
    from ._actor import Context

__all__ = ("ActorRef",)

_UNBOUNDED: Final = 1e9  # the transport's timeout when the system's clock decides
_Request = Callable[..., Awaitable[Incoming]]  # transport.request or a durable store's

# Errors the framework itself reports in an error reply, rebuilt as the same type.
_SDK_ERRORS: dict[str, type[ActorsError]] = {
    "CodecError": CodecError,
    "DecodeError": CodecError,
    "EncodeError": CodecError,
    "MessageTooLarge": CodecError,
    "TenantError": TenantError,
    "MailboxFull": MailboxFull,
    "ReplayError": ReplayError,
    "StreamError": StreamError,
    "SealError": SealError,
    "MessageExpired": MessageExpired,
}


@final
class ActorRef:
    """The address of an actor: ``tell`` it, ``ask`` it.

    Refs are made by the system (:meth:`ActorSystem.spawn`, :meth:`ActorSystem.ref`,
    :meth:`Supervisor.spawn`, :meth:`Context.ref`), never by users. A ref is just an
    address: the actor may live in this process or in another one on the same server.
    It carries the ask policy of the supervisor that made it, and its mailbox kind: tells
    and asks to a durable mailbox are stored by JetStream before they count as sent.
    """

    __slots__ = ("_overrides", "_policy", "_rt", "_subjects", "_to", "key", "mailbox", "name")

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        policy: AskPolicy | None = None,
        *,
        mailbox: MailboxKind = "core",
        key: str | None = None,
    ) -> None:
        self.name = check_id(name, "agent name")
        """The agent's name, or a keyed agent's kind."""
        self.key = key
        """A keyed agent's key (None for a plain agent)."""
        self._to = self.name if key is None else keyed_name(name, key)
        if key is not None and mailbox != "core":
            raise ConfigError("keyed agents have core mailboxes: drop mailbox= with key=")
        if mailbox not in MAILBOX_KINDS:
            raise ConfigError(f"mailbox must be 'core' or 'durable', not {mailbox!r}")
        self.mailbox: MailboxKind = mailbox
        """``core`` or ``durable``."""
        self._rt = runtime
        self._policy = policy if policy is not None else runtime.ask_policy
        self._subjects: dict[str, str] = {}
        self._overrides: dict[tuple[float | None, float | None, int | None], AskPolicy] = {}

    def __repr__(self) -> str:
        kind = " durable" if self.mailbox == "durable" else ""
        return f"<ActorRef {self._to!r}{kind} tenant={self._rt.tenant!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._to == self._to and other._rt is self._rt

    def __hash__(self) -> int:
        return hash((self._to, id(self._rt)))

    @property
    def address(self) -> str:
        """The ``<to>`` token: the name, or ``<kind>~<key>`` for a keyed agent."""
        return self._to

    @property
    def policy(self) -> AskPolicy:
        """The ask policy this ref applies when a call does not override it."""
        return self._policy

    def _prepare(
        self,
        msg: object,
        headers: Mapping[str, str] | None = None,
        codec: str | None = None,
        *,
        identified: bool = True,
        share: bool = False,
    ) -> tuple[str, str, Sealed]:
        # Sizes are checked alike on both sides: the codec refuses a body over
        # SDK_MAX_MESSAGE_SIZE, the transport headers plus body over the server's
        # max_payload (so the connection is never dropped); the receiver checks the same,
        # and its headers against SDK_MAX_HEADER_SIZE.
        rt = self._rt
        ctx = current_context.get()
        if ctx is None:
            sender, correlation = rt.client_id, None
        else:
            sender, correlation = ctx.actor, ctx.correlation_id or None
        subject = self._subjects.get(sender)
        if subject is None:
            subject = self._subjects[sender] = agent_subject(sender, self._to, rt.tenant)
        sealed = seal(
            msg, rt.codecs.default if codec is None else rt.codecs.named(codec),
            message_id=new_message_id() if identified else None, correlation_id=correlation,
            extra=user_headers(headers) if headers is not None else None,
            share=rt.share if share else 0,
        )  # fmt: skip
        return sender, subject, rt.finish(sealed)

    def _span(self, sender: str, subject: str, sealed: Sealed) -> Any:
        tel = self._rt.telemetry
        assert tel is not None
        return tel.start_send(
            subject, AGENT_TEMPLATE, sender, self.name, sealed.headers, len(sealed.data),
            sealed.message_id, sealed.correlation_id,
        )  # fmt: skip

    async def tell(
        self,
        msg: object,
        *,
        headers: Mapping[str, str] | None = None,
        codec: str | None = None,
        ttl: float | None = None,
    ) -> None:
        """Send ``msg`` and return without waiting for it to be handled.

        To a core mailbox this is at most once: it returns once the message is on its
        way. To a durable mailbox it returns once JetStream stored the message, which is
        then handled at least once.

        Args:
            msg: the message; a typed message (``@message``) or plain values.
            headers: headers of your own, sent along and read by the handler from
                ``ctx.headers`` (``Sdk-*``, ``Nats-*``, ``Content-Type`` and the trace
                context are reserved).
            codec: ``json``, ``msgpack``, ``cbor`` or ``protobuf`` for this message (the
                process default, ``CODEC_TYPE``, when omitted); the receiver decodes by
                ``Content-Type``.
            ttl: seconds the message may wait: past them the receiver drops it unhandled
                and dead-letters it as expired (:class:`~motadata_actors.MessageExpired`);
                a durable one is also removed from its stream then (whole seconds).

        Raises:
            ConfigError: a reserved or malformed header, or a ``ttl`` that is not a
                positive number.
            CodecError: an unknown codec.
            EncodeError: ``msg`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``msg`` exceeds the size limit (nothing was sent).
            ConnectionLost: the connection to NATS is broken (durable: no acknowledgement
                came, so the message may or may not be stored).
            NoResponders: durable only: no durable mailbox of this name was ever spawned.
        """
        rt = self._rt
        # A core tell is never resent, so an id would identify nothing: it goes without one
        # unless sealed (a sealed message's id is what refuses a replayed copy).
        core = self.mailbox == "core"
        identified = not core or rt.codecs.keys is not None
        sender, subject, sealed = self._prepare(
            msg, headers, codec, identified=identified, share=core
        )
        if rt.claims is not None:  # a body over SDK_CLAIM_ABOVE goes to the object store
            await rt.claims.check_in(sealed)
        if ttl is not None:
            if not (isinstance(ttl, (int, float)) and 0 < ttl < 1e9):
                raise ConfigError(f"ttl must be a positive number of seconds, not {ttl!r}")
            sealed.expire_after(ttl)
        sending: Awaitable[object]
        if core:
            sending = rt.publish(subject, sealed)
        else:
            sending = self._durable().publish(subject, sealed.data, headers=sealed.headers)
        tel = rt.telemetry
        if tel is None:
            await sending
            return
        span = self._span(sender, subject, sealed)
        await tel.traced(span, sending)

    async def ask(
        self,
        msg: object,
        *,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        codec: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Send ``msg`` and return the handler's reply, retrying per the ask policy.

        Every attempt carries the same ``Sdk-Message-Id`` (a receiver that already
        answered it replies from its cache instead of handling it twice), the attempt
        number in ``Sdk-Attempt`` from the second on, and the time it may take in
        ``Sdk-Timeout-Ms``. Retries never outlive ``timeout``.

        Args:
            msg: the message; a typed message (``@message``) or plain values.
            timeout: seconds for the whole ask, all attempts (the policy's if omitted).
                Inside a handler, never longer than that handler's own time left.
            attempt_timeout: seconds for one attempt.
            attempts: how many attempts at most.
            headers: headers of your own (see :meth:`tell`).
            codec: the codec of this message (see :meth:`tell`).
            on_progress: called with each :class:`~motadata_actors.actors.Progress` the
                handler reports (``await ctx.progress(...)``), in order, all before the
                ask returns; a function or a coroutine function. The reports travel to an
                inbox of this ask's own (``Sdk-Progress-To``). A callback that raises is
                logged, and the ask goes on.

        Raises:
            AskTimeout: no reply in time (after every attempt).
            NoResponders: no actor of this name serves the tenant.
            RemoteError: the handler raised; carries its type name and message.
            CodecError: ``msg`` or the reply cannot be encoded or decoded.
            ConnectionLost: the connection to NATS is broken.
            ConfigError: a timeout or attempt count that is not a positive number, a
                reserved or malformed header, or an ``on_progress`` that is not callable.
        """
        rt = self._rt
        if on_progress is not None and not callable(on_progress):
            raise ConfigError(f"on_progress must be callable, not {on_progress!r}")
        if timeout is None and attempt_timeout is None and attempts is None:
            policy = self._policy
        else:
            # Validating a policy costs more than the rest of an in-process ask: keep
            # the few an application uses.
            key = (timeout, attempt_timeout, attempts)
            cached = self._overrides.get(key)
            if cached is None:
                cached = self._policy.with_overrides(
                    timeout=timeout, attempt_timeout=attempt_timeout, attempts=attempts
                )
                if len(self._overrides) >= 16:
                    self._overrides.clear()
                self._overrides[key] = cached
            policy = cached
        budget = policy.timeout
        ctx = current_context.get()
        if ctx is not None:
            self._check_not_self(ctx)
            left = ctx.time_left()
            if left is not None and left < budget:
                if left <= 0:
                    raise AskTimeout(f"ask to {self._to!r}: the handler's deadline has passed")
                budget = left
        sender, subject, sealed = self._prepare(msg, headers, codec, share=self.mailbox == "core")
        if rt.claims is not None:  # a body over SDK_CLAIM_ABOVE goes to the object store
            budget -= await rt.claims.check_in(sealed, within=budget)  # out of the ask's time
            if budget <= 0:
                raise AskTimeout(f"ask to {self._to!r}: storing its body took all its time")
        tel = rt.telemetry
        if tel is None:
            if on_progress is None:
                return await self._ask(subject, sealed, policy, budget, None)
            return await self._ask_reporting(subject, sealed, policy, budget, None, on_progress)
        span = self._span(sender, subject, sealed)
        started = rt.clock.now()
        error: BaseException | None = None
        try:
            if on_progress is None:
                return await self._ask(subject, sealed, policy, budget, span)
            return await self._ask_reporting(subject, sealed, policy, budget, span, on_progress)
        except BaseException as exc:
            error = exc
            if span is not None:
                tel.fail(span, exc)
            raise
        finally:
            tel.ask_finished(self.name, rt.clock.now() - started, error)
            if span is not None:
                span.end()

    def ask_stream(
        self,
        msg: object,
        *,
        timeout: float | None = None,
        window: int | None = None,
        window_bytes: int | None = None,
        headers: Mapping[str, str] | None = None,
        codec: str | None = None,
    ) -> AskStream:
        """Ask for a streaming reply: an async iterator of the handler's parts, in order.

        The handler streams with ``yield`` (an async generator ``on_message``) or
        :meth:`Context.stream`; its return value, when not None, comes last. Any other
        handler's reply arrives as the one part. The request is sent when iteration
        starts; it is never retried.

        Example::

            async with writer.ask_stream(Draft(topic="NATS"), timeout=30) as parts:
                async for token in parts:
                    print(token, end="")

        Args:
            msg: the request.
            timeout: seconds for the whole stream, from the request to the last part
                (the policy's ask timeout if omitted; inside a handler, never longer than
                its own time left).
            window: parts the handler may send ahead of what this iterator has handed
                out (``SDK_STREAM_WINDOW`` if omitted): memory stays bounded however
                slowly the parts are read.
            window_bytes: the same bound in bytes of bodies, one part at least
                (``SDK_STREAM_WINDOW_BYTES`` if omitted).
            headers: headers of your own (see :meth:`tell`).
            codec: the codec of the request (see :meth:`tell`).

        Raises:
            ConfigError: ``timeout`` or ``window`` out of range, or a reserved or malformed
                header.
            EncodeError: ``msg`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``msg`` exceeds the size limit (nothing was sent).
        """
        rt = self._rt
        if timeout is not None and not (isinstance(timeout, (int, float)) and 0 < timeout < 1e9):
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if window is None:
            window = rt.stream_window
        elif type(window) is not int or not 1 <= window <= MAX_WINDOW:
            raise ConfigError(
                f"window must be a whole number from 1 to {MAX_WINDOW}, not {window!r}"
            )
        if window_bytes is None:
            window_bytes = rt.stream_window_bytes
        elif type(window_bytes) is not int or window_bytes < 1:
            raise ConfigError(f"window_bytes must be a whole number >= 1, not {window_bytes!r}")
        budget = float(timeout) if timeout is not None else self._policy.timeout
        ctx = current_context.get()
        if ctx is not None:
            self._check_not_self(ctx)
            left = ctx.time_left()
            if left is not None and left < budget:
                budget = max(0.0, left)
        sender, subject, sealed = self._prepare(msg, headers, codec)
        sealed.streaming(window, window_bytes)
        span = self._span(sender, subject, sealed) if rt.telemetry is not None else None
        if self.mailbox == "core":

            async def send(inbox: str, request: Sealed) -> None:
                await rt.transport.publish(
                    subject, request.data, headers=request.headers, reply=inbox
                )

        else:
            durable = self._durable()

            async def send(inbox: str, request: Sealed) -> None:
                await durable.publish(subject, request.data, headers=request.replying_to(inbox))

        return AskStream(
            self.name, rt, send, sealed, budget, window, window_bytes, self._error, span
        )

    async def _ask_reporting(
        self,
        subject: str,
        sealed: Sealed,
        policy: AskPolicy,
        budget: float,
        span: Any,
        on_progress: ProgressCallback,
    ) -> Any:
        """An ask whose handler's progress reports are handed to ``on_progress``."""
        listener = ProgressListener(self._rt, on_progress)
        await listener.open()
        sealed.report_progress(listener.inbox)
        try:
            result = await self._ask(subject, sealed, policy, budget, span)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await listener.close(deliver=False)
            raise
        await listener.close(deliver=True)
        return result

    async def _ask(
        self, subject: str, sealed: Sealed, policy: AskPolicy, budget: float, span: Any
    ) -> Any:
        rt = self._rt
        if self.mailbox == "durable":
            # Stored, so never resent: a redelivery answers it if the first one fails.
            sealed.attempt(1, budget)
            try:
                reply = await self._request(self._durable().request, subject, sealed, budget)
            except AskTimeout:
                rt.events.record("timeout", self._to, f"durable ask after {budget:.3g}s")
                raise AskTimeout(
                    f"ask to durable {self._to!r} got no reply within {budget:.3g}s (the "
                    "request stays stored until handled or dead-lettered as expired)"
                ) from None
            value = self._reply_value(reply)
            return await self._claimed_reply(value) if type(value) is Claimed else value
        clock = rt.clock
        # On the event loop's clock the transport's own timeout is that clock: asked
        # directly, with no extra frame or timer on this per-ask path.
        on_loop = type(clock) is SystemClock
        request = rt.transport.request
        now = clock.now()
        attempts = AskAttempts(policy, budget, now)
        while (wait := attempts.next(now)) is not None:
            sealed.attempt(attempts.number, wait)
            if span is not None and attempts.number > 1:
                span.set_attribute("sdk.attempt", attempts.number)
            try:
                if on_loop:
                    reply = await self._sending(request, subject, sealed, wait)
                else:
                    reply = await self._request(request, subject, sealed, wait)
            except (AskTimeout, NoResponders) as exc:
                if isinstance(exc, AskTimeout):
                    rt.events.record(
                        "timeout", self._to, f"attempt {attempts.number} after {wait:.3g}s"
                    )
                if span is not None:
                    span.add_event(type(exc).__name__, {"sdk.attempt": attempts.number})
                pause = attempts.failed(exc, clock.now())
                if pause is None:
                    break
                rt.events.record("retry", self._to, f"attempt {attempts.number + 1} after {exc!r}")
                await clock.sleep(pause)
                now = clock.now()
                continue
            value = self._reply_value(reply)
            return await self._claimed_reply(value) if type(value) is Claimed else value
        last = attempts.last
        tries = attempts.number
        why = type(last).__name__ if last is not None else "no time left"
        reason = f"ask failed after {tries} attempt(s): {why}"
        if await rt.dead_letter(self._to, sealed.encoded(), sealed.headers, reason):
            rt.events.record("dead_letter", self._to, reason)
        if isinstance(last, NoResponders):
            raise NoResponders(
                f"no actor named {self._to!r} serves tenant {rt.tenant!r} "
                f"on {rt.transport.description}{rt.no_responders_hint}"
            ) from None
        times = f" in {tries} attempts" if tries > 1 else ""
        raise AskTimeout(f"ask to {self._to!r} got no reply within {budget:.3g}s{times}") from None

    async def _request(
        self, request: _Request, subject: str, sealed: Sealed, timeout: float
    ) -> Incoming:
        """Send an ask and wait for its reply, the timeout decided by the system's clock.

        On the event loop's clock the transport's own timeout is that clock (no extra
        timer); under another one (a :class:`ManualClock`) the clock cancels the request.

        Raises:
            AskTimeout: no reply within ``timeout`` on the clock.
        """
        clock = self._rt.clock
        if type(clock) is SystemClock:
            return await self._sending(request, subject, sealed, timeout)
        with Deadline(clock, clock.now() + timeout) as limit:
            try:
                return await self._sending(request, subject, sealed, _UNBOUNDED)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not limit.expired or task is None:
                    raise
                task.uncancel()
                raise AskTimeout(f"no reply within {timeout:.3g}s on the system's clock") from None

    def _sending(
        self, request: _Request, subject: str, sealed: Sealed, timeout: float
    ) -> Awaitable[Incoming]:
        """``request`` of ``sealed`` (await it); a shared value goes as itself, in process."""
        if sealed.value is not NOT_SHARED:
            local = self._rt.local
            assert local is not None
            return local.request_shared(subject, sealed, timeout=timeout)
        return request(subject, sealed.data, headers=sealed.headers, timeout=timeout)

    def _check_not_self(self, ctx: Context) -> None:
        """Refuse at once an ask that would wait on the very handler making it."""
        if ctx._alone and ctx.actor == self._to:
            raise ConfigError(
                f"actor {self._to!r} asked itself from its own handler: with concurrency=1 "
                "the ask would wait for the handler that is waiting for it (until the "
                "timeout). Call the logic directly, tell yourself instead, or spawn with "
                "concurrency=2 or more"
            )

    def _durable(self) -> DurableStore:
        return self._rt.durable(f"{self._to!r} has a durable mailbox, which")

    def _reply_value(self, reply: Incoming) -> Any:
        if not reply.headers:  # a plain reply: no error, claim or type to read
            if type(reply) is SharedMessage:
                return reply.take(self._rt.codecs)
            if not is_pub_ack_body(reply.data):
                return self._rt.codecs.for_content_type(None).decode(reply.data)
        letter = Letter.open(reply)
        if letter.error is not None:
            raise self._error(letter)
        if letter.is_pub_ack:
            # JetStream's acknowledgement, not a reply: the agent's inbox is captured by a
            # durable mailbox, and this core ask raced its PubAck.
            raise ConfigError(
                f"{self._to!r} has a durable mailbox: ask it through a durable ref "
                f"(system.ref({self.name!r}, mailbox='durable') or ctx.ref(..., "
                "mailbox='durable')). This request was stored and will be handled, but "
                "its reply cannot reach a core ask"
            )
        return letter.body(self._rt.codecs, claims=True)

    async def _claimed_reply(self, claimed: Claimed) -> Any:
        """A reply kept in the object store: fetched, decoded, deleted."""
        claims = self._rt.claims
        if claims is None:
            raise claims_off(claimed)
        return await claims.take(claimed)

    def _error(self, letter: Letter) -> ActorsError:
        type_name, message, origin = letter.error_details(self._rt.codecs)
        if origin == "sdk" and type_name in _SDK_ERRORS:
            return _SDK_ERRORS[type_name](f"rejected by {self._to!r}: {message}")
        return RemoteError(type_name, message, actor=self._to)
