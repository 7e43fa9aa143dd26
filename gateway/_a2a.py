"""The gateway's A2A side: each exposed agent is an A2A agent (a2a-sdk's JSON-RPC binding).

Routes, behind the same credential, rate and size rules as the plain API (:mod:`._http`):

* ``GET /a2a/<name>/.well-known/agent-card.json``: the agent card. Its interfaces point at
  ``/a2a/<name>/`` (JSON-RPC, protocol 1.0 and 0.3); its name is the agent's, its
  description the actor class's docstring, and its skills the ``@message`` classes the
  class lists in an optional ``accepts`` attribute (else one generic skill). The class is
  found when the actor runs in the gateway's own process.
* ``POST /a2a/<name>/``: JSON-RPC, v1 method names (``SendMessage``,
  ``SendStreamingMessage``, ``GetTask``, ``CancelTask``...) and v0.3 ones
  (``message/send``, ``message/stream``, ``tasks/get``, ``tasks/cancel``...).

Theory of operation:

* The tenant is the credential's (:meth:`Gateway.caller`); A2A's own ``tenant`` field is
  ignored. Each (tenant, agent) has its own a2a-sdk request handler and task store, so a
  tenant never sees another's tasks.
* Every request is a task. ``message/send`` is an ask: the reply is the task's one
  artifact, and the task completes. ``message/stream`` is an ``ask_stream``: each part is
  an artifact update (one artifact, appended to), then the completed status.
* A task lives as long as its ask: the gateway's timeout is its deadline. ``tasks/cancel``
  cancels the ask where it waits; a streaming handler is cancelled on its side too (the
  stream's cancel). A finished task keeps its final state for ``tasks/get``.
* Our errors (AskTimeout, RemoteError, NoResponders, CodecError...) fail the task with a
  status message naming the type (:mod:`._a2a_parts`); malformed JSON-RPC gets a JSON-RPC
  error from a2a-sdk's dispatcher. Never a traceback.
* The caller's trace context (``traceparent``...) is the ask's parent.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, final

import anyio
from a2a.auth.user import User
from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    Part,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    Task,
    TaskState,
)
from opentelemetry import context as otel_context
from opentelemetry import propagate
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from motadata_actors._errors import ActorsError

from ._a2a_parts import error_message, part_of, value_of
from ._http import ADMITTED, PROBLEM_TYPE, Problem

if TYPE_CHECKING:
    from starlette.types import Message, Receive

    from motadata_actors.actors import ActorSystem, AskStream

    from ._app import Gateway

__all__ = ("A2AServer", "card_for")

_STREAMING: Final = frozenset({"SendStreamingMessage", "message/stream"})
_MODES: Final = ["text/plain", "application/json"]
KEEP_TASKS: Final = 10_000
_BATCH: Final = 256  # parts at most in one artifact update of a streamed reply


def _version() -> str:
    try:
        return importlib.metadata.version("motadata-actors")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].strip()


def _skills(cls: type | None, name: str) -> list[AgentSkill]:
    skills = []
    for message in getattr(cls, "accepts", ()) if cls is not None else ():
        wire = getattr(message, "__sdk_wire_name__", None)
        if isinstance(message, type) and wire is not None:
            skills.append(AgentSkill(
                id=wire, name=message.__name__, tags=["message", wire],
                description=_doc(message) or f"Ask {name} with a {wire} message (JSON data)",
                input_modes=["application/json"], output_modes=_MODES,
            ))  # fmt: skip
    if skills:
        return skills
    description = (_doc(cls) if cls is not None else "") or f"Ask agent {name}"
    return [AgentSkill(id=name, name=name, description=description, tags=["ask"])]


def card_for(cls: type | None, name: str, url: str, *, secured: bool) -> AgentCard:
    """The agent card of ``name`` (of class ``cls`` when known), served at ``url``."""
    card = AgentCard(
        name=name,
        description=(_doc(cls) if cls is not None else "") or f"motadata-actors agent {name}",
        version=_version(),
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=v)
            for v in ("1.0", "0.3")
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=_MODES,
        default_output_modes=_MODES,
        skills=_skills(cls, name),
    )
    if secured:
        card.security_schemes["bearer"].CopyFrom(
            SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="bearer"))
        )
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    return card


class _Tenant(User):
    """The caller, known by its credential's tenant (task stores scope tasks by it)."""

    def __init__(self, tenant: str) -> None:
        self._tenant = tenant

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._tenant


class _ContextBuilder(DefaultServerCallContextBuilder):
    def build_user(self, request: Request) -> User:
        return _Tenant(request.scope[ADMITTED])


class _Tasks(InMemoryTaskStore):
    """The in-memory task store, keeping the newest ``KEEP_TASKS`` tasks."""

    def __init__(self) -> None:
        super().__init__()
        self._order: dict[str, ServerCallContext] = {}

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await super().save(task, context)
        if task.id not in self._order:
            self._order[task.id] = context
            if len(self._order) > KEEP_TASKS:
                oldest = next(iter(self._order))
                await self.delete(oldest, self._order.pop(oldest))


@final
class _Executor(AgentExecutor):
    """Runs each task as an ask (or an ask_stream) to one agent of one tenant."""

    def __init__(self, system: ActorSystem, name: str, timeout: float) -> None:
        self._system = system
        self._name = name
        self._timeout = timeout
        self._running: dict[str, tuple[anyio.CancelScope, anyio.Event]] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None:
            history = [context.message] if context.message is not None else []
            await event_queue.enqueue_event(
                new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            )
        headers: Mapping[str, str] = context.call_context.state.get("headers", {})
        traced = "traceparent" in headers
        token = otel_context.attach(propagate.extract(headers)) if traced else None
        scope, done = anyio.CancelScope(), anyio.Event()
        self._running[task_id] = (scope, done)
        try:
            await updater.start_work()
            with scope:
                await self._ask(context, updater)
                return
            await updater.cancel()  # only reached when tasks/cancel cancelled the scope
        except ActorsError as exc:
            await updater.failed(error_message(exc, task_id, context_id))
        finally:
            del self._running[task_id]
            done.set()
            if token is not None:
                otel_context.detach(token)

    async def _ask(self, context: RequestContext, updater: TaskUpdater) -> None:
        codecs = self._system.codecs
        value = value_of(context.message.parts if context.message else (), codecs)
        ref = self._system.ref(self._name)
        if context.call_context.state.get("method") in _STREAMING:
            async with ref.ask_stream(value, timeout=self._timeout) as parts:
                await self._relay(parts, updater)
        else:
            reply = await ref.ask(value, timeout=self._timeout)
            await updater.add_artifact(
                [part_of(reply, codecs)], artifact_id="reply", name="reply", last_chunk=True
            )
        await updater.complete()

    async def _relay(self, parts: AskStream, updater: TaskUpdater) -> None:
        """The stream's parts as artifact updates, batched.

        Each part that came while the last update was being made goes into the next one
        (up to ``_BATCH`` parts).

        a2a-sdk copies the whole task (the reply so far) for every event: one event per
        part made a long stream quadratic (8,000 parts took 11.7 s, 0.2 s over NATS).
        Batched, a fast stream makes few events and a slow one still one per part.
        """
        codecs = self._system.codecs
        batch: list[Part] = []
        append = False

        async def flush() -> None:
            nonlocal append
            await updater.add_artifact(batch, artifact_id="reply", name="reply", append=append)
            batch.clear()
            append = True

        try:
            async for part in parts:
                batch.append(part_of(part, codecs))
                if not (parts.waiting and len(batch) < _BATCH):
                    await flush()
        except ActorsError:
            if batch:  # the parts before the error are delivered, as over NATS
                await flush()
            raise
        if batch:
            await flush()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the task's ask and wait until the task says CANCELED.

        A task not running here has nothing to stop: a2a-sdk marks it CANCELED itself.
        """
        running = self._running.get(context.task_id or "")
        if running is not None:
            scope, done = running
            scope.cancel()
            await done.wait()


def _replay(body: bytes, receive: Receive) -> Receive:
    """The ASGI ``receive`` of a body already read (then the client's own, for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _problem(problem: Problem, request: Request) -> Response:
    return Response(
        problem.body(request.url.path), status_code=problem.status, media_type=PROBLEM_TYPE,
        headers=problem.headers,
    )  # fmt: skip


@final
class A2AServer:
    """The A2A routes of a :class:`Gateway` (made by ``Gateway.app``).

    Args:
        gateway: whose credentials, limits and systems apply.
        timeout: a task's deadline, in seconds.
    """

    def __init__(self, gateway: Gateway, *, timeout: float) -> None:
        self._gateway = gateway
        self._timeout = timeout
        self._secured = gateway.admission.has_tokens
        self._dispatchers: dict[tuple[str, str], JsonRpcDispatcher] = {}
        self._handlers: list[DefaultRequestHandler] = []

    def routes(self) -> list[Route]:
        """The Starlette routes under ``/a2a/``."""
        return [
            Route("/a2a/{name}/.well-known/agent-card.json", self._card, methods=["GET"]),
            Route("/a2a/{name}/", self._rpc, methods=["POST"]),
            Route("/a2a/{name}", self._rpc, methods=["POST"]),
        ]

    async def aclose(self) -> None:
        """Stop every running task (a2a-sdk's handlers drain their active tasks)."""
        handlers, self._handlers = self._handlers, []
        self._dispatchers.clear()
        for handler in handlers:
            await handler.aclose()

    def _admit(self, request: Request) -> tuple[str, str]:
        gateway = self._gateway
        tenant = gateway.caller(request)
        return tenant, gateway.admission.agent(request.path_params["name"])

    async def _card(self, request: Request) -> Response:
        try:
            _, name = self._admit(request)
        except Problem as problem:
            return _problem(problem, request)
        url = f"{request.base_url}a2a/{name}/"
        card = card_for(self._gateway.actor_class(name), name, url, secured=self._secured)
        return JSONResponse(agent_card_to_dict(card))

    async def _rpc(self, request: Request) -> Response:
        try:
            tenant, name = self._admit(request)
            body = await self._gateway.read_body(request)
        except Problem as problem:
            return _problem(problem, request)
        dispatcher = self._dispatchers.get((tenant, name))
        if dispatcher is None:
            system = self._gateway.system_of(tenant)
            card = card_for(self._gateway.actor_class(name), name, f"/a2a/{name}/", secured=False)
            handler = DefaultRequestHandler(
                agent_executor=_Executor(system, name, self._timeout),
                task_store=_Tasks(),
                agent_card=card,
            )
            self._handlers.append(handler)
            dispatcher = self._dispatchers[(tenant, name)] = JsonRpcDispatcher(
                handler, context_builder=_ContextBuilder(), enable_v0_3_compat=True
            )
        scope = {**request.scope, ADMITTED: tenant}
        return await dispatcher.handle_requests(Request(scope, _replay(body, request.receive)))
