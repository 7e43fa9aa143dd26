"""Our agents from outside: an A2A client and an MCP client, both the official SDKs.

A planner (a typed request, one answer) and a writer (a streamed answer) run as usual.
A gateway exposes them on a loopback port; then:

* the official ``a2a-sdk`` client reads the writer's agent card, asks the planner
  (``message/send``) and reads the writer's answer as it streams (``message/stream``);
* the official ``mcp`` client lists both agents as tools, with the input schema of the
  planner's request, and calls them.

    pip install 'motadata-actors[gateway]'
    python examples/gateway_clients.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import mcp
from a2a.client import ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest
from google.protobuf import json_format

from motadata_actors import Actor, ActorSystem, Context
from motadata_actors.codecs import field, message
from motadata_actors.gateway import Gateway


@message("example.plan_request.v1")
class PlanRequest:
    """What to plan: a goal, and how many steps."""

    goal: str = field(proto=1)
    steps: int = field(proto=2, default=3)


class Planner(Actor):
    """Plans the steps toward a goal."""

    accepts = (PlanRequest,)

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        """Answer a plan: typed (MCP) or a plain JSON request (an A2A data part)."""
        if isinstance(msg, dict):
            msg = PlanRequest(**msg)
        return {"goal": msg.goal, "plan": [f"step {i + 1}" for i in range(msg.steps)]}


class Writer(Actor):
    """Writes a short answer, one word at a time."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        """Stream the answer word by word."""
        for word in f"a short answer about {msg}".split():
            yield word


def _request(part: Part) -> SendMessageRequest:
    return SendMessageRequest(message=Message(role=Role.ROLE_USER, message_id="m1", parts=[part]))


async def a2a_client(base: str) -> None:
    """The official a2a-sdk client: a card, a streamed answer, an ask."""
    async with httpx.AsyncClient(timeout=30) as http:
        factory = ClientFactory(ClientConfig(httpx_client=http, streaming=True))
        writer = await factory.create_from_url(f"{base}/a2a/writer")
        card = (await http.get(f"{base}/a2a/writer/.well-known/agent-card.json")).json()
        print(f"a2a | card: {card['name']}: {card['description']}")
        words = []
        async for response in writer.send_message(_request(Part(text="NATS"))):
            if response.HasField("artifact_update"):
                words += [p.text for p in response.artifact_update.artifact.parts]
                print(f"a2a | streamed so far: {' '.join(words)}")
        await writer.close()
        asking = ClientFactory(ClientConfig(httpx_client=http, streaming=False))
        planner = await asking.create_from_url(f"{base}/a2a/planner")
        data = json_format.ParseDict({"goal": "ship it", "steps": 2}, Part().data)
        async for response in planner.send_message(_request(Part(data=data))):
            if response.HasField("task"):
                answer = json_format.MessageToDict(response.task.artifacts[0].parts[0].data)
                print(f"a2a | planner answered: {dict(sorted(answer.items()))}")
        await planner.close()


async def mcp_client(base: str) -> None:
    """The official mcp client: the tools, their schemas, a call."""
    async with mcp.Client(f"{base}/mcp") as client:
        tools = (await client.list_tools()).tools
        for tool in tools:
            print(f"mcp | tool {tool.name}: {tool.description}")
        planner = next(tool for tool in tools if tool.name == "planner")
        print(f"mcp | planner takes: {sorted(planner.input_schema['properties'])}")
        result = await client.call_tool("planner", {"goal": "write the docs", "steps": 1})
        print(f"mcp | planner answered: {result.structured_content}")


async def main() -> None:
    """Run the agents and a gateway for them; use both clients; stop."""
    import uvicorn

    async with ActorSystem("acme") as system:
        await system.spawn(Planner, name="planner")
        await system.spawn(Writer, name="writer")
        gateway = Gateway(
            system, expose=["planner", "writer"], classes={"planner": Planner, "writer": Writer}
        )
        server = uvicorn.Server(  # port 0: a free one, read back once it listens
            uvicorn.Config(gateway.app, host="127.0.0.1", port=0, log_level="warning")
        )
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        print(f"main | gateway on {base}")
        try:
            await a2a_client(base)
            await mcp_client(base)
        finally:
            server.should_exit = True
            await serving
    print("main | done")


if __name__ == "__main__":
    asyncio.run(main())
