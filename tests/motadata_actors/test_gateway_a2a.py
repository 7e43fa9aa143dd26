"""The gateway's A2A side, driven by a2a-sdk's own client, and our A2ARef against it.

Every test serves ``Gateway(...).app`` with a real uvicorn on a free loopback port, over
real actor systems on the NATS fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from a2a.client import (
    AgentCardResolutionError,
    Client,
    ClientConfig,
    ClientFactory,
)
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from motadata_actors import (
    Actor,
    ActorSystem,
    AskTimeout,
    ConfigError,
    ConnectionLost,
    Context,
    NoResponders,
    RemoteError,
    message,
)
from motadata_actors.gateway import A2ARef, Gateway
from motadata_actors.mailbox import NatsServer

from ..conftest import connect

pytestmark = pytest.mark.anyio

TOKEN_A = "token-of-tenant-a-0123456789"
TOKEN_B = "token-of-tenant-b-0123456789"


@message("a2atest.plan.v1")
class Plan:
    """A goal to plan for."""

    goal: str
    steps: int = 3


class Planner(Actor):
    """Plans the steps toward a goal.

    Not part of the card: only the first paragraph is.
    """

    accepts = (Plan,)

    def __init__(self, tenant: str = "") -> None:
        self.tenant = tenant

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "fail":
            raise ValueError("no plan for that")
        if msg == "slow":
            await asyncio.sleep(5)
        if isinstance(msg, Plan):
            return {"plan": msg.goal, "steps": msg.steps, "tenant": self.tenant}
        return {"plan": msg, "tenant": self.tenant, "typed": False}


class Writer(Actor):
    """Writes a draft, one word at a time."""

    def __init__(self, stopped: asyncio.Event) -> None:
        self.stopped = stopped

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "forever":
            try:
                n = 0
                while True:
                    yield f"tick {n}"
                    n += 1
                    await asyncio.sleep(0.02)
            finally:  # cancelled (or closed): the handler stopped
                self.stopped.set()
        for word in str(msg).split():
            yield word


CLASSES: dict[str, type] = {"planner": Planner, "writer": Writer}


class World:
    """What the fixtures made: the systems and what the actors report."""

    def __init__(self, systems: dict[str, ActorSystem], stopped: asyncio.Event) -> None:
        self.systems = systems
        self.stopped = stopped


@pytest.fixture
async def world(nats_server: NatsServer) -> AsyncIterator[World]:
    """Two tenants on one server, each with a planner (that says whose it is) and a writer."""
    stopped = asyncio.Event()
    async with (
        ActorSystem("a2a-ta", transport=await connect(nats_server), handle_signals=False) as a,
        ActorSystem("a2a-tb", transport=await connect(nats_server), handle_signals=False) as b,
    ):
        for system in (a, b):
            tenant = system.tenant
            await system.spawn(lambda t=tenant: Planner(t), name="planner")  # type: ignore[misc]
            await system.spawn(lambda: Writer(stopped), name="writer")
        yield World({"ta": a, "tb": b}, stopped)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (checked every few milliseconds), or fail."""
    with anyio.fail_after(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL; stop it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: server.started or task.done())
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def ask_message(*parts: Part) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(role=Role.ROLE_USER, message_id="m-" + str(id(parts)), parts=parts)
    )


@contextlib.asynccontextmanager
async def official(
    base: str, name: str, *, streaming: bool, token: str | None = None
) -> AsyncIterator[Client]:
    """a2a-sdk's client for agent ``name``, built from its card."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        config = ClientConfig(httpx_client=http, streaming=streaming)
        yield await ClientFactory(config).create_from_url(f"{base}/a2a/{name}")


async def send(client: Client, *parts: Part) -> list[StreamResponse]:
    return [r async for r in client.send_message(ask_message(*parts))]


def data_of(part: Part) -> Any:
    return json_format.MessageToDict(part.data)


async def test_the_card_names_the_agent_its_skills_and_its_endpoint(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["planner", "writer"], classes=CLASSES)
    async with serving(gateway.app) as base, httpx.AsyncClient() as http:
        # the official resolver and factory accept it (a client needs a usable interface)
        client = await ClientFactory(ClientConfig(httpx_client=http)).create_from_url(
            f"{base}/a2a/planner"
        )
        await client.close()
        r = await http.get(f"{base}/a2a/planner/.well-known/agent-card.json")
        assert r.status_code == 200
        body = r.json()
        assert body["name"] == "planner"
        assert body["description"] == "Plans the steps toward a goal."
        assert [s["id"] for s in body["skills"]] == ["a2atest.plan.v1"]
        assert body["skills"][0]["description"] == "A goal to plan for."
        assert body["capabilities"]["streaming"] is True
        interfaces = {i["protocolVersion"]: i["url"] for i in body["supportedInterfaces"]}
        assert interfaces == {"1.0": f"{base}/a2a/planner/", "0.3": f"{base}/a2a/planner/"}
        assert body["url"] == f"{base}/a2a/planner/"  # what a v0.3 client reads
        # the writer lists no message types: one generic skill
        r = await http.get(f"{base}/a2a/writer/.well-known/agent-card.json")
        skills = r.json()["skills"]
        assert [(s["id"], s["description"]) for s in skills] == [
            ("writer", "Writes a draft, one word at a time.")
        ]
        assert (await http.get(f"{base}/a2a/hidden/.well-known/agent-card.json")).status_code == 404


async def test_message_send_is_an_ask_and_the_task_keeps_its_result(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["planner"], classes=CLASSES)
    async with serving(gateway.app) as base, official(base, "planner", streaming=False) as client:
        [response] = await send(client, Part(text="ship it"))
        task = response.task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        [artifact] = task.artifacts
        assert data_of(artifact.parts[0]) == {
                "plan": "ship it", "tenant": "a2a-ta", "typed": False,
            }  # fmt: skip
        # a data part naming a message type arrives as that type
        typed = Part(data=json_format.ParseDict({"goal": "x", "steps": 4}, Part().data))
        typed.metadata.update({"sdkMessageType": "a2atest.plan.v1"})
        [response] = await send(client, typed)
        assert data_of(response.task.artifacts[0].parts[0])["steps"] == 4
        # tasks/get of a finished task: its final state and artifact
        got = await client.get_task(GetTaskRequest(id=task.id))
        assert got.status.state == TaskState.TASK_STATE_COMPLETED
        assert data_of(got.artifacts[0].parts[0])["plan"] == "ship it"
        assert [m.parts[0].text for m in got.history][:1] == ["ship it"]


async def test_message_stream_sends_each_part_then_completes(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["writer"])
    async with serving(gateway.app) as base, official(base, "writer", streaming=True) as client:
        responses = await send(client, Part(text="one two three"))
    kinds = [r.WhichOneof("payload") for r in responses]
    words = [
        p.text for r in responses if r.HasField("artifact_update")
        for p in r.artifact_update.artifact.parts
    ]  # fmt: skip
    assert words == ["one", "two", "three"]
    updates = [r.artifact_update for r in responses if r.HasField("artifact_update")]
    # Parts that came while an update was made share the next one: one to three updates.
    assert [u.append for u in updates] == [False] + [True] * (len(updates) - 1)
    assert kinds[-1] == "status_update"
    assert responses[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_tasks_cancel_stops_the_streaming_handler(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["writer"])
    async with serving(gateway.app) as base, official(base, "writer", streaming=True) as client:
        stream = client.send_message(ask_message(Part(text="forever")))
        task_id = ""
        async for response in stream:
            if response.HasField("artifact_update"):
                task_id = response.artifact_update.task_id
                break
        assert task_id
        assert not world.stopped.is_set()
        cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        await asyncio.wait_for(world.stopped.wait(), 10)  # the actor's handler stopped
        await stream.aclose()  # type: ignore[attr-defined]
        got = await client.get_task(GetTaskRequest(id=task_id))
        assert got.status.state == TaskState.TASK_STATE_CANCELED
        assert got.artifacts[0].parts[0].text == "tick 0"
        with pytest.raises(TaskNotCancelableError):  # a finished task stays as it ended
            await client.cancel_task(CancelTaskRequest(id=task_id))


async def test_the_token_decides_the_tenant(world: World) -> None:
    gateway = Gateway(world.systems, expose=["planner"], tokens={TOKEN_A: "ta", TOKEN_B: "tb"})
    async with serving(gateway.app) as base:
        with pytest.raises(AgentCardResolutionError) as refused:
            async with official(base, "planner", streaming=False):
                pass
        assert refused.value.status_code == 401
        async with httpx.AsyncClient() as raw:  # the endpoint itself refuses too
            r = await raw.post(f"{base}/a2a/planner/", json={"jsonrpc": "2.0", "id": 1})
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
            card_url = f"{base}/a2a/planner/.well-known/agent-card.json"
            card = await raw.get(card_url, headers={"Authorization": f"Bearer {TOKEN_A}"})
            assert "bearer" in card.json()["securitySchemes"]
        tasks: dict[str, Task] = {}
        for token, tenant in ((TOKEN_A, "a2a-ta"), (TOKEN_B, "a2a-tb")):
            async with official(base, "planner", streaming=False, token=token) as client:
                # the request's own tenant field changes nothing
                request = ask_message(Part(text="x"))
                request.tenant = "a2a-ta"
                [response] = [r async for r in client.send_message(request)]
                assert data_of(response.task.artifacts[0].parts[0])["tenant"] == tenant
                tasks[token] = response.task
        # one tenant never sees another's task
        async with official(base, "planner", streaming=False, token=TOKEN_B) as client:
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id=tasks[TOKEN_A].id))


async def test_errors_fail_the_task_with_our_type_names(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["planner", "ghost"], timeout=0.5)
    async with serving(gateway.app) as base:
        cases = [("planner", "fail", "RemoteError"), ("planner", "slow", "AskTimeout"),
                 ("ghost", "x", "NoResponders")]  # fmt: skip
        for name, text, error in cases:
            async with official(base, name, streaming=False) as client:
                [response] = await send(client, Part(text=text))
            status = response.task.status
            assert status.state == TaskState.TASK_STATE_FAILED, (name, text)
            meta = json_format.MessageToDict(status.message.metadata)
            assert meta["sdkError"] == error
            assert status.message.parts[0].text.startswith(f"{error}: ")
            if error == "RemoteError":
                assert meta["remoteType"] == "ValueError"
                assert meta["remoteMessage"] == "no plan for that"


async def test_malformed_json_rpc_gets_json_rpc_errors_and_v03_names_work(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["planner"], classes=CLASSES)
    async with serving(gateway.app) as base, httpx.AsyncClient() as http:
        url = f"{base}/a2a/planner/"
        cases = [
            (b"{not json", -32700),
            (b"[]", -32600),
            (b'{"jsonrpc": "2.0", "id": 1, "method": "no/such"}', -32601),
            (b'{"jsonrpc": "2.0", "id": 2, "method": "message/send", "params": 3}', -32600),
        ]
        for body, code in cases:
            r = await http.post(url, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 200, (body, r.text)
            assert r.json()["error"]["code"] == code, (body, r.text)
            assert "Traceback" not in r.text
        # the v0.3 method name, as a v0.3 client sends it (no A2A-Version header)
        v03 = {
            "jsonrpc": "2.0", "id": 3, "method": "message/send",
            "params": {"message": {"kind": "message", "role": "user", "messageId": "m1",
                                   "parts": [{"kind": "text", "text": "legacy"}]}},
        }  # fmt: skip
        r = await http.post(url, json=v03)
        result = r.json()["result"]
        assert result["status"]["state"] == "completed"
        assert result["artifacts"][0]["parts"][0]["data"]["plan"] == "legacy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a2a_ref_asks_and_streams_like_a_ref(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["planner", "writer"], timeout=0.5)
    async with serving(gateway.app) as base:
        async with A2ARef(f"{base}/a2a/planner", timeout=5) as planner:
            assert await planner.ask(Plan(goal="ship")) == {
                "plan": "ship", "steps": 3, "tenant": "a2a-ta",
            }  # fmt: skip
            assert (await planner.card()).name == "planner"
            with pytest.raises(RemoteError) as failed:
                await planner.ask("fail")
            assert failed.value.type_name == "ValueError"
            assert failed.value.message == "no plan for that"
            with pytest.raises(AskTimeout):  # the gateway's ask timed out: the same type here
                await planner.ask("slow")
        with pytest.raises(AskTimeout):  # ours ran out first
            await A2ARef(f"{base}/a2a/planner", timeout=0.2).ask("slow")
        writer = A2ARef(f"{base}/a2a/writer")
        async with writer.ask_stream("a b c") as parts:
            assert [p async for p in parts] == ["a", "b", "c"]
        with pytest.raises(NoResponders):  # not exposed: 404
            await A2ARef(f"{base}/a2a/hidden").ask("x")
    nobody = A2ARef(f"http://127.0.0.1:{free_port()}/a2a/planner", attempts=2, timeout=2)
    with pytest.raises(NoResponders):
        await nobody.ask("x")


async def test_a2a_ref_closing_a_stream_early_cancels_the_remote_task(world: World) -> None:
    gateway = Gateway(world.systems["ta"], expose=["writer"])
    async with serving(gateway.app) as base:
        async with A2ARef(f"{base}/a2a/writer").ask_stream("forever") as parts:
            async for part in parts:
                assert part == "tick 0"
                break
        await asyncio.wait_for(world.stopped.wait(), 10)


async def test_a2a_ref_stream_cut_before_its_task_ended_is_an_error(world: World) -> None:
    # The gateway going away mid-stream ended its events with no final status, and the
    # iteration ended as if the reply were whole (44 parts of 200, no error); a broken
    # connection was a RemoteError. Both are a ConnectionLost now.
    gateway = Gateway(world.systems["ta"], expose=["writer"])
    seen: list[Any] = []
    cut = asyncio.Event()

    async def cutting(scope: Any, receive: Any, send: Any) -> None:
        async def send_until_cut(message: Any) -> None:
            if cut.is_set() and message["type"] == "http.response.body":
                raise OSError("the connection was cut (injected)")
            await send(message)

        await gateway.app(scope, receive, send_until_cut)

    async def read(base: str) -> None:
        async with A2ARef(f"{base}/a2a/writer", timeout=60).ask_stream("forever") as parts:
            async for part in parts:
                seen.append(part)

    async with serving(cutting) as base:
        reading = asyncio.create_task(read(base))
        await wait_for(lambda: len(seen) >= 3)
        cut.set()
        with anyio.fail_after(30), pytest.raises(ConnectionLost, match="broke"):
            await reading
    seen.clear()
    gateway = Gateway(world.systems["ta"], expose=["writer"])  # a gateway is served once
    async with serving(gateway.app) as base:
        reading = asyncio.create_task(read(base))
        await wait_for(lambda: len(seen) >= 3)
    with anyio.fail_after(30), pytest.raises(ConnectionLost, match="before the task did"):
        await reading


async def test_a2a_ref_refused_credential_is_a_config_error(world: World) -> None:
    gateway = Gateway(world.systems, expose=["planner"], tokens={TOKEN_A: "ta", TOKEN_B: "tb"})
    async with serving(gateway.app) as base:
        with pytest.raises(ConfigError, match="401"):
            await A2ARef(f"{base}/a2a/planner").ask("x")
        reply = await A2ARef(f"{base}/a2a/planner", token=TOKEN_B).ask("x")
        assert reply["tenant"] == "a2a-tb"


def recording(app: Any, seen: list[dict[str, str]]) -> Callable[..., Awaitable[None]]:
    """``app``, noting the headers of each request to it."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    return wrapper


async def test_the_trace_context_travels_in_the_http_headers(
    world: World, nats_server: NatsServer
) -> None:
    gateway = Gateway(world.systems["ta"], expose=["planner"], classes=CLASSES)
    seen: list[dict[str, str]] = []
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serving(recording(gateway.app, seen)) as base:
        # outside any actor: the current span's context
        with provider.get_tracer("test").start_as_current_span("outer") as outer:
            await A2ARef(f"{base}/a2a/planner").ask("x")
        trace_id = f"{outer.get_span_context().trace_id:032x}"
        posts = [h for h in seen if "traceparent" in h]
        assert posts, seen
        assert all(h["traceparent"].split("-")[1] == trace_id for h in posts)

        # inside a handler of a system with telemetry on: a CLIENT span per call
        class Relay(Actor):
            async def on_message(self, msg: Any, ctx: Context) -> Any:
                return await A2ARef(f"{base}/a2a/planner").ask(msg)

        seen.clear()
        async with ActorSystem(
            "a2a-tc", transport=await connect(nats_server), handle_signals=False,
            tracer_provider=provider,
        ) as traced:  # fmt: skip
            relay = await traced.spawn(Relay, name="relay")
            assert (await relay.ask("via relay", timeout=10))["plan"] == "via relay"
        [client_span] = [s for s in exporter.get_finished_spans() if s.name == "SendMessage a2a"]
        assert client_span.kind == trace.SpanKind.CLIENT
        span_id = f"{client_span.context.span_id:016x}"
        assert any(h.get("traceparent", "").split("-")[2:3] == [span_id] for h in seen), seen


class _Arrived:
    """A stream whose parts have all arrived (``waiting`` as an AskStream's), then fails."""

    def __init__(self, count: int, error: Exception | None = None) -> None:
        self._left = count
        self._error = error
        self.taken = 0

    @property
    def waiting(self) -> int:
        return self._left + (self._error is not None)

    def __aiter__(self) -> _Arrived:
        return self

    async def __anext__(self) -> int:
        if self._left == 0:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        self._left -= 1
        self.taken += 1
        return self.taken


class _Updates:
    """Records the artifact updates a task would get."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.appends: list[bool] = []

    async def add_artifact(self, parts: list[Any], **kwargs: Any) -> None:
        self.sizes.append(len(parts))
        self.appends.append(kwargs["append"])


async def test_parts_that_came_meanwhile_go_into_one_update(world: World) -> None:
    # One update per part: a2a-sdk copies the whole task per event, so 8,000 parts took
    # 11.7 s (0.2 s over NATS) and 20,000 did not end within 30 s.
    from motadata_actors.gateway._a2a import _BATCH, _Executor

    executor = _Executor(world.systems["ta"], "writer", 5)
    updates = _Updates()
    await executor._relay(_Arrived(600), updates)  # type: ignore[arg-type]
    assert updates.sizes == [_BATCH, _BATCH, 600 - 2 * _BATCH]
    assert updates.appends == [False, True, True]
    failed, updates = _Arrived(10, RemoteError("ValueError", "gone")), _Updates()
    with pytest.raises(RemoteError):
        await executor._relay(failed, updates)  # type: ignore[arg-type]
    assert updates.sizes == [10]  # what came before the error is delivered first
