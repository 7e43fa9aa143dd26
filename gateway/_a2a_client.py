"""A2ARef: a remote A2A agent, asked like an actor (a2a-sdk's client underneath).

Theory of operation:

* The agent card is fetched from ``<url>/.well-known/agent-card.json`` on first use and
  kept; a2a-sdk's client picks the interface (JSON-RPC, protocol 1.0 or 0.3).
* :meth:`A2ARef.ask` sends ``message/send`` and waits for the task to end (polling
  ``tasks/get`` when the agent answers before it has): a completed task's artifacts are
  the reply. Attempts, their timeouts and the backoff follow an :class:`AskPolicy`; every
  attempt carries the same message id. :meth:`A2ARef.ask_stream` sends
  ``message/stream`` and hands out each artifact part as it comes; it is never retried,
  and closing it early (or its deadline) cancels the remote task.
* Errors are ours, as for a NATS ask: :class:`AskTimeout`; :class:`NoResponders` when
  nothing answers at the URL (connection refused, 404); :class:`ConfigError` for a refused
  credential; :class:`RemoteError` for a failed task or a JSON-RPC error (a gateway of
  ours sends its error types back as such, see :mod:`._a2a_parts`).
* Inside a handler the ask never outlives the handler's own deadline, and, when the
  system's telemetry is on, each call is a CLIENT span. The W3C trace context (the span's,
  or the current one) always travels in the HTTP headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, final

import anyio
from opentelemetry import propagate, trace

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    ConfigError,
    ConnectionLost,
    NoResponders,
    RemoteError,
)
from motadata_actors.actors import AskPolicy, Backoff
from motadata_actors.actors._policy import AskAttempts
from motadata_actors.actors._runtime import current_context
from motadata_actors.codecs import Codecs

if TYPE_CHECKING:
    import httpx
    from a2a.client import Client
    from a2a.types.a2a_pb2 import AgentCard, Message, StreamResponse, Task

__all__ = ("A2ARef", "A2AStream")

INSTALL: Final = "pip install 'motadata-actors[gateway]'"
_DONE: Final = frozenset({"TASK_STATE_COMPLETED"})
_ENDED: Final = frozenset(
    {"TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED",
     "TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"}
)  # fmt: skip
_CANCEL_WAIT: Final = 2.0


def _sdk() -> Any:
    try:
        import a2a.client
        import a2a.types.a2a_pb2
        import a2a.utils.errors
        import httpx

        from . import _a2a_parts
    except ImportError:
        raise ConfigError(f"A2A needs a2a-sdk and httpx: {INSTALL}") from None
    return a2a, httpx, _a2a_parts


def _state(task: Task) -> str:
    from a2a.types.a2a_pb2 import TaskState

    return TaskState.Name(task.status.state)


def _translate(exc: Exception, url: str) -> ActorsError:
    """Our error for an a2a-sdk client error."""
    import httpx
    from a2a.client import A2AClientTimeoutError

    if isinstance(exc, A2AClientTimeoutError):
        return AskTimeout(f"the A2A agent at {url} did not answer in time")
    cause = exc.__cause__
    status: int | None = getattr(exc, "status_code", None)
    if status is None and isinstance(cause, httpx.HTTPStatusError):
        status = cause.response.status_code
    if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout)) or status in (404, 502, 503):
        return NoResponders(f"no A2A agent answers at {url}: {exc}")
    if status in (401, 403):
        return ConfigError(f"the A2A agent at {url} refused the credential (HTTP {status})")
    if isinstance(cause, httpx.TransportError):  # the connection broke mid-call
        return ConnectionLost(f"the connection to the A2A agent at {url} broke: {cause!r}")
    return RemoteError(type(exc).__name__, str(getattr(exc, "message", exc)))


@final
class A2ARef:
    """A remote A2A agent, asked like an :class:`~motadata_actors.ActorRef`.

    Any A2A agent will do; a gateway of ours serves each exposed agent at
    ``http://<host>/a2a/<name>/``. Use it as ``async with`` to share one connection pool
    across calls; otherwise each call opens its own.

    Example::

        planner = A2ARef("https://gw.example/a2a/planner", token=TOKEN, timeout=10)
        plan = await planner.ask({"goal": "ship"})
        async with planner.ask_stream("draft it") as parts:
            async for part in parts:
                print(part)

    Args:
        url: the agent's base URL (its card is at ``<url>/.well-known/agent-card.json``).
        timeout: seconds for a whole ask, all attempts (and for a whole stream).
        attempts: how many times an ask is sent (after AskTimeout or NoResponders).
        attempt_timeout: seconds for one attempt (``timeout / attempts`` when None).
        backoff: the pause between attempts.
        token: a bearer token sent with every request.
        headers: more HTTP headers sent with every request.
        codecs: the codecs (and typed-message registry) values are converted with.
        telemetry: a CLIENT span per call: None inside a handler whose system has
            telemetry on, True always (the global tracer provider), False never.

    Raises:
        ConfigError: a timeout or attempt count that is not a positive number.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        attempts: int = 1,
        attempt_timeout: float | None = None,
        backoff: Backoff | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        codecs: Codecs | None = None,
        telemetry: bool | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        """The agent's base URL."""
        self.policy = AskPolicy(
            timeout=timeout, attempts=attempts, attempt_timeout=attempt_timeout,
            backoff=backoff or Backoff(0.05, 1.0),
        )  # fmt: skip
        """The ask policy of :meth:`ask`."""
        self._headers = dict(headers or {})
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._codecs = codecs if codecs is not None else Codecs()
        self._telemetry = telemetry
        self._card: AgentCard | None = None
        self._shared: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<A2ARef {self.url!r}>"

    async def __aenter__(self) -> Self:
        _, httpx, _ = _sdk()
        self._shared = httpx.AsyncClient(headers=self._headers, timeout=None)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.aclose()

    async def aclose(self) -> None:
        """Close the shared connection pool (the ref stays usable, one pool per call)."""
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.aclose()

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._shared is not None:
            yield self._shared
            return
        _, httpx, _ = _sdk()
        async with httpx.AsyncClient(headers=self._headers, timeout=None) as http:
            yield http

    async def _client(self, http: httpx.AsyncClient, *, streaming: bool) -> Client:
        a2a, _, _ = _sdk()
        try:
            if self._card is None:
                self._card = await a2a.client.A2ACardResolver(http, self.url).get_agent_card()
            config = a2a.client.ClientConfig(httpx_client=http, streaming=streaming)
            client: Client = a2a.client.ClientFactory(config).create(self._card)
        except a2a.client.A2AClientError as exc:
            raise _translate(exc, self.url) from None
        except ValueError as exc:  # no transport in common
            raise ConfigError(f"the A2A agent at {self.url}: {exc}") from None
        return client

    async def card(self) -> AgentCard:
        """The agent's card (fetched once).

        Raises:
            NoResponders: nothing answers at the URL.
            ConfigError: the credential was refused.
        """
        async with self._http() as http:
            await self._client(http, streaming=False)
        assert self._card is not None
        return self._card

    def _message(self, value: object) -> Message:
        a2a, _, parts = _sdk()
        pb = a2a.types.a2a_pb2
        message: Message = pb.Message(
            role=pb.Role.ROLE_USER, message_id=uuid.uuid4().hex,
            parts=[parts.part_of(value, self._codecs)],
        )  # fmt: skip
        return message

    def _budget(self, timeout: float) -> float:
        ctx = current_context.get()
        left = ctx.time_left() if ctx is not None else None
        if left is not None and left < timeout:
            if left <= 0:
                raise AskTimeout(f"ask to {self.url}: the handler's deadline has passed")
            return left
        return timeout

    @contextlib.contextmanager
    def _traced(self, method: str) -> Iterator[dict[str, str]]:
        """The headers of one call (the trace context in them), inside its span if any."""
        headers: dict[str, str] = {}
        tracer = None
        if self._telemetry is not False:
            ctx = current_context.get()
            tel = ctx._rt.telemetry if ctx is not None else None
            if tel is not None:
                tracer = tel.tracer
            elif self._telemetry:
                tracer = trace.get_tracer("motadata_actors")
        if tracer is None:
            propagate.inject(headers)
            yield headers
            return
        span = tracer.start_span(
            f"{method} a2a", kind=trace.SpanKind.CLIENT,
            attributes={"rpc.system": "jsonrpc", "rpc.method": method, "url.full": self.url},
        )  # fmt: skip
        propagate.inject(headers, context=trace.set_span_in_context(span))
        try:
            yield headers
        except GeneratorExit:  # a stream closed early: not a failure
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()

    async def ask(
        self, value: object, *, timeout: float | None = None, attempts: int | None = None
    ) -> Any:
        """Send ``value`` and return the agent's reply, retrying per the policy.

        ``value`` becomes one part (text for a ``str``, data for the rest); the reply is
        the completed task's one artifact part (a list when there are several) or the
        agent's message.

        Args:
            value: the request.
            timeout: seconds for the whole ask, all attempts (the ref's when None).
            attempts: how many attempts at most (the ref's when None).

        Raises:
            AskTimeout: no reply in time (after every attempt).
            NoResponders: nothing answers at the URL.
            RemoteError: the task failed, or the agent answered a JSON-RPC error.
            ConfigError: the credential was refused, or a bad timeout or attempt count.
        """
        policy = self.policy.with_overrides(timeout=timeout, attempts=attempts)
        budget = self._budget(policy.timeout)
        message = self._message(value)
        loop = asyncio.get_running_loop()
        tries = AskAttempts(policy, budget, loop.time())
        last: ActorsError = AskTimeout(f"ask to {self.url}: no time left")
        with self._traced("SendMessage") as headers:
            while (wait := tries.next(loop.time())) is not None:
                try:
                    async with asyncio.timeout(wait):
                        return await self._send(message, headers)
                except TimeoutError as exc:  # asyncio's, or an AskTimeout of the agent's
                    last = (
                        exc
                        if isinstance(exc, AskTimeout)
                        else AskTimeout(f"ask to {self.url} got no reply within {wait:.3g}s")
                    )
                except NoResponders as exc:
                    last = exc
                pause = tries.failed(last, loop.time())
                if pause is None:
                    break
                await asyncio.sleep(pause)
            raise last

    async def _send(self, message: Message, headers: dict[str, str]) -> Any:
        a2a, _, parts = _sdk()
        pb = a2a.types.a2a_pb2
        context = a2a.client.ClientCallContext(service_parameters=headers)
        async with self._http() as http:
            client = await self._client(http, streaming=False)
            try:
                result: StreamResponse | None = None
                request = pb.SendMessageRequest(message=message)
                async for response in client.send_message(request, context=context):
                    result = response
                assert result is not None
                if result.HasField("message"):
                    return _one(parts.values_of(result.message.parts, self._codecs))
                task = result.task
                pause = 0.05
                while _state(task) not in _DONE | _ENDED:  # answered early: poll
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)
                    task = await client.get_task(pb.GetTaskRequest(id=task.id), context=context)
            except a2a.client.A2AClientError as exc:
                raise _translate(exc, self.url) from None
            except a2a.utils.errors.A2AError as exc:  # a JSON-RPC error of the agent's
                raise RemoteError(type(exc).__name__, exc.message) from None
        if _state(task) in _ENDED:
            raise parts.error_of(_state(task), task.status.message)
        return _one([v for a in task.artifacts for v in parts.values_of(a.parts, self._codecs)])

    def ask_stream(self, value: object, *, timeout: float | None = None) -> A2AStream:
        """Ask for a streaming reply: an async iterator of the agent's parts, in order.

        Never retried. Use it as ``async with`` (or call ``aclose``) when you may stop
        early: the remote task is then cancelled at once.

        Args:
            value: the request.
            timeout: seconds for the whole stream (the ref's timeout when None).

        Raises (from iteration):
            AskTimeout: the stream did not end in time (the remote task is cancelled).
            NoResponders: nothing answers at the URL.
            RemoteError: the task failed; the parts before were delivered.
            ConfigError: the credential was refused.
            ConnectionLost: the stream ended before the task did (never a silent end).
        """
        budget = self.policy.timeout if timeout is None else timeout
        if not 0 < budget < float("inf"):
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
        return A2AStream(self._stream(self._message(value), budget))

    async def _stream(self, message: Message, budget: float) -> AsyncGenerator[Any, None]:
        a2a, _, parts = _sdk()
        pb = a2a.types.a2a_pb2
        codecs = self._codecs
        deadline = asyncio.get_running_loop().time() + self._budget(budget)
        task_id = ""
        ended = False
        with self._traced("SendStreamingMessage") as headers:
            context = a2a.client.ClientCallContext(service_parameters=headers)
            async with self._http() as http:
                client = await self._client(http, streaming=True)
                responses = client.send_message(pb.SendMessageRequest(message=message),
                                                context=context)  # fmt: skip
                try:
                    while True:
                        try:
                            async with asyncio.timeout_at(deadline):
                                response = await anext(responses)
                        except StopAsyncIteration:  # no final status: cut, not done
                            raise ConnectionLost(
                                f"stream from {self.url} ended before the task did "
                                "(the connection or the gateway went away)"
                            ) from None
                        except TimeoutError:
                            raise AskTimeout(
                                f"stream from {self.url} did not end within {budget:.3g}s"
                            ) from None
                        except a2a.client.A2AClientError as exc:
                            raise _translate(exc, self.url) from None
                        except a2a.utils.errors.A2AError as exc:
                            raise RemoteError(type(exc).__name__, exc.message) from None
                        kind = response.WhichOneof("payload")
                        if kind == "message":
                            ended = True
                            for v in parts.values_of(response.message.parts, codecs):
                                yield v
                            return
                        if kind == "artifact_update":
                            task_id = response.artifact_update.task_id
                            for v in parts.values_of(response.artifact_update.artifact.parts,
                                                     codecs):  # fmt: skip
                                yield v
                            continue
                        if kind == "status_update":
                            task_id, status = (
                                response.status_update.task_id,
                                response.status_update.status,
                            )
                        else:
                            task_id, status = response.task.id, response.task.status
                        state = pb.TaskState.Name(status.state)
                        if state in _ENDED:
                            ended = True
                            raise parts.error_of(state, status.message)
                        if state in _DONE:
                            ended = True
                            if kind == "task":  # a single answer: its artifacts at once
                                for a in response.task.artifacts:
                                    for v in parts.values_of(a.parts, codecs):
                                        yield v
                            return
                finally:
                    await responses.aclose()  # type: ignore[attr-defined]
                    if task_id and not ended:  # closed early, or out of time: cancel it
                        with (
                            anyio.CancelScope(shield=True),
                            anyio.move_on_after(_CANCEL_WAIT),
                            contextlib.suppress(Exception),
                        ):
                            await client.cancel_task(pb.CancelTaskRequest(id=task_id),
                                                     context=context)  # fmt: skip


def _one(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


@final
class A2AStream(AsyncIterator[Any]):
    """The parts of a streaming reply from an A2A agent; made by :meth:`A2ARef.ask_stream`.

    Iterate it with ``async for``; the request is sent when iteration starts. Use it as
    ``async with`` (or call :meth:`aclose`) when you may stop early.
    """

    def __init__(self, parts: AsyncGenerator[Any, None]) -> None:
        self._parts = parts

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        return await anext(self._parts)

    async def aclose(self) -> None:
        """Stop reading: the remote task is cancelled if it still runs."""
        await self._parts.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.aclose()
