"""ActorRef: the address of an actor, and the ``tell`` and ``ask`` verbs."""

from __future__ import annotations

import math
from typing import Any, final

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    NoResponders,
    RemoteError,
    TenantError,
)
from motadata_actors.mailbox import (
    CORRELATION_ID,
    ERROR,
    MESSAGE_ID,
    TIMEOUT_MS,
    agent_subject,
    check_id,
    check_size,
    decode_body,
    decode_error,
    encode_body,
    new_message_id,
)

from ._runtime import Runtime, current_context

__all__ = ("ActorRef",)

# Errors the framework itself reports in an error reply, rebuilt as the same type.
_SDK_ERRORS: dict[str, type[ActorsError]] = {
    "CodecError": CodecError,
    "DecodeError": CodecError,
    "EncodeError": CodecError,
    "MessageTooLarge": CodecError,
    "TenantError": TenantError,
}


@final
class ActorRef:
    """The address of an actor: ``tell`` it, ``ask`` it.

    Refs are made by the system (:meth:`ActorSystem.spawn`, :meth:`ActorSystem.ref`,
    :meth:`Context.ref`), never by users. A ref is just an address: the actor may
    live in this process or in another one on the same NATS server.
    """

    __slots__ = ("_rt", "_subjects", "name")

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.name = check_id(name, "agent name")
        self._rt = runtime
        self._subjects: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r} tenant={self._rt.tenant!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.name == self.name and other._rt is self._rt

    def __hash__(self) -> int:
        return hash((self.name, id(self._rt)))

    def _prepare(self, msg: object) -> tuple[str, dict[str, str], bytes]:
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
        data = encode_body(msg, rt.codecs.default, headers)
        check_size(data, headers, rt.max_size)
        return subject, headers, data

    async def tell(self, msg: object) -> None:
        """Send ``msg`` and return without waiting for it to be handled (at most once).

        Raises:
            CodecError: ``msg`` cannot be encoded (nothing was sent).
            MessageTooLarge: ``msg`` exceeds the server's size limit (nothing was sent).
            ConnectionLost: the connection to NATS is broken.
        """
        subject, headers, data = self._prepare(msg)
        await self._rt.transport.publish(subject, data, headers=headers)

    async def ask(self, msg: object, *, timeout: float | None = None) -> Any:
        """Send ``msg`` and return the handler's reply.

        Args:
            msg: the message; a typed message (``@message``) or plain values.
            timeout: seconds to wait for the reply; the system default when omitted.
                Inside a handler, never longer than that handler's own time left.

        Raises:
            AskTimeout: no reply in time.
            NoResponders: no actor of this name serves the tenant.
            RemoteError: the handler raised; carries its type name and message.
            CodecError: ``msg`` or the reply cannot be encoded or decoded.
            ConnectionLost: the connection to NATS is broken.
        """
        rt = self._rt
        if timeout is None:
            timeout = rt.ask_timeout
        elif not isinstance(timeout, (int, float)) or not timeout > 0 or math.isinf(timeout):
            raise ConfigError(f"ask timeout must be a positive number of seconds, not {timeout!r}")
        ctx = current_context.get()
        if ctx is not None:
            left = ctx.time_left()
            if left is not None and left < timeout:
                if left <= 0:
                    raise AskTimeout(f"ask to {self.name!r}: the handler's deadline has passed")
                timeout = left
        subject, headers, data = self._prepare(msg)
        headers[TIMEOUT_MS] = str(max(1, round(timeout * 1000)))
        try:
            reply = await rt.transport.request(subject, data, headers=headers, timeout=timeout)
        except NoResponders:
            raise NoResponders(
                f"no actor named {self.name!r} serves tenant {rt.tenant!r} "
                f"on {rt.transport.description}{rt.no_responders_hint}"
            ) from None
        except AskTimeout:
            raise AskTimeout(f"ask to {self.name!r} got no reply within {timeout:.3g}s") from None
        reply_headers = reply.headers
        if reply_headers is not None and ERROR in reply_headers:
            raise self._error(reply.data, reply_headers)
        return decode_body(reply.data, reply_headers, rt.codecs)

    def _error(self, data: bytes, headers: dict[str, str]) -> ActorsError:
        type_name, message, origin = decode_error(data, headers, self._rt.codecs)
        if origin == "sdk" and type_name in _SDK_ERRORS:
            return _SDK_ERRORS[type_name](f"rejected by {self.name!r}: {message}")
        return RemoteError(type_name, message, actor=self.name)
