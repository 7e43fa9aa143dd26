"""ActorRef: the address of an actor, and the ``tell`` and ``ask`` verbs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    MailboxFull,
    NoResponders,
    RemoteError,
    ReplayError,
    StreamError,
    TenantError,
)
from motadata_actors.mailbox import (
    ATTEMPT,
    CORRELATION_ID,
    ERROR,
    MESSAGE_ID,
    REPLY_TO,
    STREAM_WINDOW,
    TIMEOUT_MS,
    DurableTransport,
    agent_subject,
    check_id,
    dead_letter_headers,
    decode_body,
    decode_error,
    dlq_subject,
    encode_body,
    new_message_id,
    received_headers,
)

from ._policy import AskPolicy
from ._runtime import (
    AGENT_TEMPLATE,
    MAILBOX_KINDS,
    MailboxKind,
    Runtime,
    current_context,
    needs_durable,
)
from ._stream import MAX_WINDOW, AskStream, window_header

if TYPE_CHECKING:
    from ._actor import Context

__all__ = ("ActorRef",)

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

    __slots__ = ("_overrides", "_policy", "_rt", "_subjects", "mailbox", "name")

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        policy: AskPolicy | None = None,
        *,
        mailbox: MailboxKind = "core",
    ) -> None:
        self.name = check_id(name, "agent name")
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
        return f"<ActorRef {self.name!r}{kind} tenant={self._rt.tenant!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.name == self.name and other._rt is self._rt

    def __hash__(self) -> int:
        return hash((self.name, id(self._rt)))

    @property
    def policy(self) -> AskPolicy:
        """The ask policy this ref applies when a call does not override it."""
        return self._policy

    def _prepare(self, msg: object) -> tuple[str, str, dict[str, str], bytes]:
        # Sizes are checked alike on both sides: the codec refuses a body over
        # SDK_MAX_MESSAGE_SIZE, the transport headers plus body over the server's
        # max_payload (so the connection is never dropped); the receiver checks the same,
        # and its headers against SDK_MAX_HEADER_SIZE.
        rt = self._rt
        ctx = current_context.get()
        headers = {MESSAGE_ID: new_message_id()}
        if ctx is None:
            sender = rt.client_id
        else:
            sender = ctx.actor
            headers[CORRELATION_ID] = ctx.correlation_id
        subject = self._subjects.get(sender)
        if subject is None:
            subject = self._subjects[sender] = agent_subject(sender, self.name, rt.tenant)
        return sender, subject, headers, encode_body(msg, rt.codecs.default, headers)

    async def tell(self, msg: object) -> None:
        """Send ``msg`` and return without waiting for it to be handled.

        To a core mailbox this is at most once: it returns once the message is on its
        way. To a durable mailbox it returns once JetStream stored the message, which is
        then handled at least once.

        Raises:
            EncodeError: ``msg`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``msg`` exceeds the size limit (nothing was sent).
            ConnectionLost: the connection to NATS is broken (durable: no acknowledgement
                came, so the message may or may not be stored).
            NoResponders: durable only: no durable mailbox of this name was ever spawned.
        """
        rt = self._rt
        sender, subject, headers, data = self._prepare(msg)
        publish = rt.transport.publish if self.mailbox == "core" else self._durable().publish
        tel = rt.telemetry
        if tel is None:
            await publish(subject, data, headers=headers)
            return
        span = tel.start_send(subject, AGENT_TEMPLATE, sender, self.name, headers, len(data))
        try:
            await publish(subject, data, headers=headers)
        except BaseException as exc:
            if span is not None:
                tel.fail(span, exc)
            raise
        finally:
            if span is not None:
                span.end()

    async def ask(
        self,
        msg: object,
        *,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        attempts: int | None = None,
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

        Raises:
            AskTimeout: no reply in time (after every attempt).
            NoResponders: no actor of this name serves the tenant.
            RemoteError: the handler raised; carries its type name and message.
            CodecError: ``msg`` or the reply cannot be encoded or decoded.
            ConnectionLost: the connection to NATS is broken.
            ConfigError: a timeout or attempt count that is not a positive number.
        """
        rt = self._rt
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
                    raise AskTimeout(f"ask to {self.name!r}: the handler's deadline has passed")
                budget = left
        sender, subject, headers, data = self._prepare(msg)
        tel = rt.telemetry
        if tel is None:
            return await self._ask(subject, headers, data, policy, budget, None)
        span = tel.start_send(subject, AGENT_TEMPLATE, sender, self.name, headers, len(data))
        started = rt.clock.now()
        error: BaseException | None = None
        try:
            return await self._ask(subject, headers, data, policy, budget, span)
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

        Raises:
            ConfigError: ``timeout`` or ``window`` out of range.
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
        sender, subject, headers, data = self._prepare(msg)
        headers[STREAM_WINDOW] = window_header(window, window_bytes)
        tel = rt.telemetry
        span = None
        if tel is not None:
            span = tel.start_send(subject, AGENT_TEMPLATE, sender, self.name, headers, len(data))
        if self.mailbox == "core":

            async def send(inbox: str, headers: dict[str, str], data: bytes) -> None:
                await rt.transport.publish(subject, data, headers=headers, reply=inbox)

        else:
            durable = self._durable()

            async def send(inbox: str, headers: dict[str, str], data: bytes) -> None:
                await durable.publish(subject, data, headers={**headers, REPLY_TO: inbox})

        return AskStream(
            self.name, rt, send, headers, data, budget, window, window_bytes, self._error, span
        )

    async def _ask(
        self,
        subject: str,
        headers: dict[str, str],
        data: bytes,
        policy: AskPolicy,
        budget: float,
        span: Any,
    ) -> Any:
        rt = self._rt
        if self.mailbox == "durable":
            # Stored, so never resent: a redelivery answers it if the first one fails.
            headers[TIMEOUT_MS] = str(max(1, round(budget * 1000)))
            try:
                reply = await self._durable().request(
                    subject, data, headers=headers, timeout=budget
                )
            except AskTimeout:
                rt.events.record("timeout", self.name, f"durable ask after {budget:.3g}s")
                raise AskTimeout(
                    f"ask to durable {self.name!r} got no reply within {budget:.3g}s (the "
                    "request stays stored until handled or dead-lettered as expired)"
                ) from None
            return self._reply_value(reply.data, reply.headers)
        clock = rt.clock
        deadline = clock.now() + budget
        per_attempt = policy.per_attempt()
        last: ActorsError | None = None
        attempt = 0
        for attempt in range(1, policy.attempts + 1):
            left = deadline - clock.now()
            if left <= 0:
                break
            wait = min(per_attempt, left)
            headers[TIMEOUT_MS] = str(max(1, round(wait * 1000)))
            if attempt > 1:
                headers[ATTEMPT] = str(attempt)
                if span is not None:
                    span.set_attribute("sdk.attempt", attempt)
            try:
                reply = await rt.transport.request(subject, data, headers=headers, timeout=wait)
            except (AskTimeout, NoResponders) as exc:
                last = exc
                if isinstance(exc, AskTimeout):
                    rt.events.record("timeout", self.name, f"attempt {attempt} after {wait:.3g}s")
                if span is not None:
                    span.add_event(type(exc).__name__, {"sdk.attempt": attempt})
                if not policy.retryable(exc) or attempt == policy.attempts:
                    break
                pause = min(policy.backoff.delay(attempt - 1), deadline - clock.now())
                if pause <= 0:
                    break
                rt.events.record("retry", self.name, f"attempt {attempt + 1} after {exc!r}")
                await clock.sleep(pause)
                continue
            return self._reply_value(reply.data, reply.headers)
        await self._dead_letter(subject, headers, data, last, attempt)
        if isinstance(last, NoResponders):
            raise NoResponders(
                f"no actor named {self.name!r} serves tenant {rt.tenant!r} "
                f"on {rt.transport.description}{rt.no_responders_hint}"
            ) from None
        tries = f" in {attempt} attempts" if attempt > 1 else ""
        raise AskTimeout(f"ask to {self.name!r} got no reply within {budget:.3g}s{tries}") from None

    async def _dead_letter(
        self,
        subject: str,
        headers: dict[str, str],
        data: bytes,
        last: ActorsError | None,
        attempts: int,
    ) -> None:
        """Publish an ask whose retries ran out to ``sdk.dlq.<to>.<tenant>``."""
        rt = self._rt
        why = type(last).__name__ if last is not None else "no time left"
        reason = f"ask failed after {attempts} attempt(s): {why}"
        dead = dead_letter_headers(headers, reason)
        try:
            await rt.transport.publish(dlq_subject(self.name, rt.tenant), data, headers=dead)
        except ActorsError:
            return
        rt.events.record("dead_letter", self.name, reason)

    def _check_not_self(self, ctx: Context) -> None:
        """Refuse at once an ask that would wait on the very handler making it."""
        if ctx._alone and ctx.actor == self.name:
            raise ConfigError(
                f"actor {self.name!r} asked itself from its own handler: with concurrency=1 "
                "the ask would wait for the handler that is waiting for it (until the "
                "timeout). Call the logic directly, tell yourself instead, or spawn with "
                "concurrency=2 or more"
            )

    def _durable(self) -> DurableTransport:
        return needs_durable(self._rt, f"{self.name!r} has a durable mailbox, which")

    def _reply_value(self, data: bytes, headers: dict[str, str] | None) -> Any:
        headers = received_headers(headers)
        if headers is not None:
            if ERROR in headers:
                raise self._error(data, headers)
        elif data.startswith(b'{"stream":') and b'"seq":' in data:
            # JetStream's acknowledgement, not a reply: the agent's inbox is captured by a
            # durable mailbox, and this core ask raced its PubAck.
            raise ConfigError(
                f"{self.name!r} has a durable mailbox: ask it through a durable ref "
                f"(system.ref({self.name!r}, mailbox='durable') or ctx.ref(..., "
                "mailbox='durable')). This request was stored and will be handled, but "
                "its reply cannot reach a core ask"
            )
        return decode_body(data, headers, self._rt.codecs)

    def _error(self, data: bytes, headers: dict[str, str]) -> ActorsError:
        type_name, message, origin = decode_error(data, headers, self._rt.codecs)
        if origin == "sdk" and type_name in _SDK_ERRORS:
            return _SDK_ERRORS[type_name](f"rejected by {self.name!r}: {message}")
        return RemoteError(type_name, message, actor=self.name)
