"""AsyncAPI documents of a tenant, validated against the official AsyncAPI 3.0.0 schema.

The schema is the one the AsyncAPI initiative publishes on npm (``@asyncapi/specs``,
``schemas/3.0.0.json``): fetched once at a pinned version, its sha512 checked against the
registry's ``dist.integrity``, kept in pytest's cache (outside git). A test fails, never
skips, when it cannot be had.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT7

from motadata_actors import (
    Actor,
    ActorSystem,
    ConfigError,
    Context,
    InProcessTransport,
    Settings,
    SubjectError,
)
from motadata_actors.__main__ import main
from motadata_actors.asyncapi import (
    AgentInfo,
    asyncapi_document,
    system_document,
    tenant_document,
)
from motadata_actors.codecs import TypeRegistry, field, json_schema, message
from motadata_actors.mailbox import NatsServer

from ..conftest import start_child, stop_child

SPECS_VERSION = "6.11.1"
SPECS_TARBALL = f"https://registry.npmjs.org/@asyncapi/specs/-/specs-{SPECS_VERSION}.tgz"
# `npm view @asyncapi/specs@6.11.1 dist.integrity`
SPECS_INTEGRITY = (
    "sha512-A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/"
    "klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ=="
)


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _tarball(cache: Path) -> bytes:
    kept = cache / f"asyncapi-specs-{SPECS_VERSION}.tgz"
    if kept.exists() and _integrity(kept.read_bytes()) == SPECS_INTEGRITY:
        return kept.read_bytes()
    try:
        with urllib.request.urlopen(SPECS_TARBALL, timeout=60) as response:
            data: bytes = response.read()
    except OSError as exc:
        pytest.fail(f"the AsyncAPI schema could not be fetched from {SPECS_TARBALL}: {exc}")
    if _integrity(data) != SPECS_INTEGRITY:
        pytest.fail(f"{SPECS_TARBALL} does not match its published integrity {SPECS_INTEGRITY}")
    partial = kept.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(kept)  # atomic: another test run may be filling the cache too
    return data


@pytest.fixture(scope="session")
def asyncapi_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON Schema (``@asyncapi/specs``, pinned and checked)."""
    cache = getattr(request.config, "cache", None)  # -p no:cacheprovider: for this run only
    folder = cache.mkdir("asyncapi-specs") if cache is not None else None
    data = _tarball(folder or tmp_path_factory.mktemp("asyncapi-specs"))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile("package/schemas/3.0.0.json")
        assert member is not None
        schema: dict[str, Any] = json.load(member)
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return schema


def _offline(uri: str) -> referencing.Resource[Any]:
    # Every definition is inline, keyed by its $id: nothing may be fetched from the web.
    raise referencing.exceptions.NoSuchResource(ref=uri)


@pytest.fixture(scope="session")
def validate(asyncapi_schema: dict[str, Any]) -> Callable[[dict[str, Any]], list[str]]:
    """A check of a document: the official schema's errors, then dangling references and
    operations naming messages their channel does not have (rules the schema cannot say).
    """
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=_offline)
    registry = registry.with_resource(
        asyncapi_schema["$id"], DRAFT7.create_resource(asyncapi_schema)
    ).crawl()
    validator = jsonschema.Draft7Validator(asyncapi_schema, registry=registry)

    def check(document: dict[str, Any]) -> list[str]:
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(document)
        ]
        for where, ref in _refs(document, ""):
            if _resolve(document, ref) is None:
                errors.append(f"{where}: dangling $ref {ref}")
        for name, op in document.get("operations", {}).items():
            channel = _resolve(document, op["channel"]["$ref"]) or {}
            for m in op.get("messages", []):
                if _resolve(document, m["$ref"]) not in channel.get("messages", {}).values():
                    errors.append(f"operations/{name}: {m['$ref']} is not its channel's")
        return errors

    return check


def _refs(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{where}/{i}")


def _resolve(document: Any, ref: str) -> Any:
    if not ref.startswith("#/"):
        return None
    node = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# -- the schema check itself can fail -----------------------------------------------


def test_the_check_rejects_invalid_documents(
    validate: Callable[[dict[str, Any]], list[str]],
) -> None:
    good = asyncapi_document("acme", [AgentInfo("planner")], {})
    assert validate(good) == []

    broken = json.loads(json.dumps(good))
    del broken["info"]["version"]
    assert any("'version' is a required property" in e for e in validate(broken))

    broken = json.loads(json.dumps(good))
    broken["asyncapi"] = "2.6.0"
    assert validate(broken)

    broken = json.loads(json.dumps(good))
    broken["operations"]["planner.ask"]["action"] = "publish"  # AsyncAPI 2's verb
    assert any(e.startswith("operations/planner.ask") for e in validate(broken))

    broken = json.loads(json.dumps(good))
    broken["components"]["messages"]["any"]["payload"] = {"type": "strin"}
    assert any(e.startswith("components/messages/any") for e in validate(broken))

    broken = json.loads(json.dumps(good))
    broken["channels"]["agent.planner"]["messages"]["any"] = {"$ref": "#/components/messages/x"}
    assert "/channels/agent.planner/messages/any: dangling $ref #/components/messages/x" in (
        validate(broken)
    )

    broken = json.loads(json.dumps(good))
    broken["operations"]["planner.tell"]["messages"] = [
        {"$ref": "#/channels/replies/messages/reply"}
    ]
    assert any("is not its channel's" in e for e in validate(broken))


# -- the document, from values ------------------------------------------------------

registry = TypeRegistry()


@message("shop.item.v1", registry=registry)
class Item:
    """One line of an order."""

    sku: str = field(proto=1)
    quantity: int = field(proto=2, default=1)


@message("shop.order.v1", registry=registry)
class Order:
    """An order to place."""

    items: list[Item] = field(proto=1)
    note: str | None = field(proto=2, default=None)


@message("shop.tree.v1", registry=registry)
class Tree:
    """A node that holds nodes of its own kind."""

    label: str = field(proto=1)
    children: list[Tree] = field(proto=2, factory=list)


def _schemas(*classes: type) -> dict[str, Any]:
    return {cls.__sdk_wire_name__: json_schema(cls) for cls in classes}  # type: ignore[attr-defined]


def test_a_tenant_with_typed_untyped_durable_and_keyed_agents_and_events(
    validate: Callable[[dict[str, Any]], list[str]],
) -> None:
    agents = [
        AgentInfo("shop", accepts=("shop.order.v1",), events=("shop_order_v1",),
                  description="Takes orders.", class_name="app.Shop", replicas=2),
        AgentInfo("echo", events=("*", "sdk~progress", "audit")),
        AgentInfo("ledger", mailbox="durable", accepts=("shop.order.v1", "*")),
        AgentInfo("chat", mailbox="keyed", accepts=("shop.tree.v1", "chat.unknown.v1")),
    ]  # fmt: skip
    doc = asyncapi_document(
        "acme", agents, _schemas(Item, Order, Tree),
        servers=["nats://alice:s3cret@127.0.0.1:14222", "tls://127.0.0.1:14443"],
        content_type="application/msgpack",
    )  # fmt: skip
    assert validate(doc) == []
    assert doc["asyncapi"] == "3.0.0" and doc["defaultContentType"] == "application/msgpack"
    assert doc["servers"] == {
        "nats-1": {"host": "127.0.0.1:14222", "protocol": "nats"},  # no credentials
        "nats-2": {"host": "127.0.0.1:14443", "protocol": "nats"},
    }
    assert "s3cret" not in json.dumps(doc)
    channels, operations = doc["channels"], doc["operations"]
    components = doc["components"]

    shop = channels["agent.shop"]
    assert shop["address"] == "sdk.agent.{from}.shop.acme" and "from" in shop["parameters"]
    assert list(shop["messages"]) == ["shop.order.v1"]
    assert shop["x-sdk-replicas"] == 2 and shop["x-sdk-class"] == "app.Shop"
    assert shop["description"].startswith("Takes orders.")
    assert operations["shop.tell"]["action"] == "receive" and "reply" not in operations["shop.tell"]
    ask = operations["shop.ask"]
    assert ask["action"] == "receive" and ask["reply"]["channel"] == {"$ref": "#/channels/replies"}
    assert "address" not in ask["reply"]  # a core ask's reply goes to the NATS reply subject
    assert channels["replies"]["address"] == "_INBOX_acme.{inbox}"

    # A typed message: envelope headers with its wire name, its schema as the payload.
    order = components["messages"]["shop.order.v1"]
    assert order["contentType"] == "application/msgpack"
    assert order["payload"] == {"$ref": "#/components/schemas/shop.order.v1"}
    assert order["summary"] == "An order to place."
    assert order["headers"]["allOf"][1]["properties"]["Sdk-Message-Type"]["const"] == (
        "shop.order.v1"
    )
    assert order["correlationId"]["location"] == "$message.header#/Sdk-Correlation-Id"
    envelope = components["schemas"]["Sdk-Envelope"]["properties"]
    assert {"Content-Type", "Sdk-Message-Id", "Sdk-Timeout-Ms", "traceparent"} <= set(envelope)
    assert envelope["Sdk-Tenant-Id"]["const"] == "acme"
    # Nested and self-referencing classes: references into components, no $defs left.
    schemas = components["schemas"]
    assert schemas["shop.order.v1"]["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/shop.item.v1"
    }
    assert schemas["shop.tree.v1"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/shop.tree.v1"
    }
    assert "$defs" not in json.dumps(doc) and "$schema" not in json.dumps(doc)

    # Untyped: any value; subscribed events: typed, untyped, all, and status events.
    assert list(channels["agent.echo"]["messages"]) == ["any"]
    assert components["messages"]["any"]["payload"] == {}
    assert channels["events.shop_order_v1"]["address"] == "sdk.events.shop_order_v1.acme"
    assert list(channels["events.shop_order_v1"]["messages"]) == ["shop.order.v1"]
    assert list(channels["events.audit"]["messages"]) == ["any"]
    assert channels["events"]["address"] == "sdk.events.{event_type}.acme"
    assert {operations[f"events.{t}.{a}"]["action"] for t in ("audit", "shop_order_v1")
            for a in ("send", "receive")} == {"send", "receive"}  # fmt: skip
    assert "Subscribed by shop" in operations["events.shop_order_v1.receive"]["summary"]
    assert operations["status.progress.receive"]["summary"] == "Followed by echo."
    assert channels["status.lifecycle"]["address"] == "sdk.status.lifecycle.acme"
    assert operations["status.lifecycle.send"]["action"] == "send"
    assert channels["dead_letters"]["address"] == "sdk.dlq.{to}.acme"
    dead = components["messages"]["dead_letter"]["headers"]["allOf"][1]
    assert dead["required"] == ["Sdk-Dead-Reason"]

    # Durable: the reply inbox travels in Sdk-Reply-To; "*" adds plain values.
    assert operations["ledger.ask"]["reply"]["address"]["location"] == (
        "$message.header#/Sdk-Reply-To"
    )
    assert list(channels["agent.ledger"]["messages"]) == ["any", "shop.order.v1"]
    # Keyed: the key inside the <to> token; a type missing from the registry is still a
    # message, with an open payload.
    chat = channels["agent.chat"]
    assert chat["address"] == "sdk.agent.{from}.chat~{key}.acme"
    assert set(chat["parameters"]) == {"from", "key"}
    assert components["messages"]["chat.unknown.v1"]["payload"] == {}


def test_schema_names_that_are_no_components_keys_are_renamed(
    validate: Callable[[dict[str, Any]], list[str]],
) -> None:
    # A nested class without a wire name is a $defs entry under its qualified name, which
    # may hold "<locals>": as a schema from another process's registry could.
    foreign = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "far.box.v1",
        "type": "object",
        "properties": {"thing": {"$ref": "#/$defs/test_x.<locals>.Thing"}},
        "$defs": {
            "far.box.v1": {},
            "test_x.<locals>.Thing": {"title": "Thing", "type": "object"},
        },
    }
    doc = asyncapi_document(
        "acme", [AgentInfo("box", accepts=("far.box.v1",))], {"far.box.v1": foreign}
    )
    assert validate(doc) == []
    schemas = doc["components"]["schemas"]
    assert schemas["far.box.v1"]["properties"]["thing"] == {
        "$ref": "#/components/schemas/test_x._locals_.Thing"
    }
    assert schemas["test_x._locals_.Thing"]["title"] == "Thing"


def test_bad_names_are_refused() -> None:
    with pytest.raises(SubjectError):
        asyncapi_document("Acme Corp", [], {})
    with pytest.raises(SubjectError):
        asyncapi_document("acme", [AgentInfo("no.dots")], {})


def test_status_reports_merge_by_agent() -> None:
    reports = [
        {"agents": [{"name": "shop", "mailbox": "durable", "accepts": ["shop.order.v1"],
                     "class": "app.Shop", "doc": "Takes orders."},
                    {"name": "echo", "mailbox": "core", "handled": 3}]},
        {"agents": [{"name": "shop", "mailbox": "durable", "accepts": ["shop.item.v1"],
                     "events": ["audit"]}, {"bogus": 1}]},
    ]  # fmt: skip
    shop, echo = AgentInfo.from_reports(reports)[::-1]
    assert shop == AgentInfo("shop", "durable", ("shop.item.v1", "shop.order.v1"), ("audit",),
                             "Takes orders.", "app.Shop", 2)  # fmt: skip
    assert echo == AgentInfo("echo", "core", None, (), "", "", 1)


# -- from a system in this process --------------------------------------------------


class Shop(Actor):
    """Takes orders and answers how many lines they have."""

    accepts: ClassVar[tuple[type, ...]] = (Order,)
    events = ("shop_order_v1",)

    async def on_start(self) -> None:
        await self.subscribe("restock")  # at run time: the document shows it too

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return len(msg.items)


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


@message("other.note.v1", registry=TypeRegistry())
class Note:
    text: str = field(proto=1)


class Noter(Actor):
    """Takes notes of a type the system's registry does not hold."""

    accepts: ClassVar[tuple[type, ...]] = (Note, str)


@pytest.mark.anyio
async def test_the_document_of_a_system_in_this_process(
    validate: Callable[[dict[str, Any]], list[str]], tenant: str
) -> None:
    async with ActorSystem(
        tenant, transport=InProcessTransport(), settings=Settings(enable_nats=False),
        registry=registry, handle_signals=False,
    ) as system:  # fmt: skip
        shop = await system.spawn(Shop, name="shop")
        await system.spawn(lambda: Echo(), name="echo", mailbox="core")
        workers = await system.spawn_supervisor(name="workers")
        await workers.spawn(Noter, name="noter")
        assert await shop.ask(Order(items=[Item("tea")]), timeout=5) == 1
        doc = system_document(system)
        reports = await system.status(wait=0.2)

    assert validate(doc) == []
    assert "servers" not in doc  # the in-process transport has none
    channels = doc["channels"]
    assert set(channels) >= {"agent.shop", "agent.echo", "agent.noter", "events.restock"}
    assert list(channels["agent.shop"]["messages"]) == ["shop.order.v1"]
    assert channels["agent.shop"]["x-sdk-class"].endswith("test_asyncapi.Shop")
    assert channels["agent.shop"]["description"].startswith("Takes orders and answers")
    assert list(channels["agent.echo"]["messages"]) == ["any"]  # its class is known late
    assert channels["agent.echo"]["x-sdk-class"].endswith("test_asyncapi.Echo")
    assert "description" not in channels["agent.echo"] or not channels["agent.echo"][
        "description"
    ].startswith("Base class")  # Actor's own docstring is not Echo's
    assert list(channels["agent.noter"]["messages"]) == ["any", "other.note.v1"]
    assert "events.shop_order_v1" in channels
    schemas = doc["components"]["schemas"]
    assert {"shop.order.v1", "shop.item.v1", "shop.tree.v1", "other.note.v1"} <= set(schemas)
    assert {"sdk.lifecycle.v1", "sdk.progress.v1"} <= set(schemas)  # status events
    # The status report carries the same description, for the live document.
    (report,) = reports
    by_name = {a["name"]: a for a in report["agents"]}
    assert by_name["shop"]["accepts"] == ["shop.order.v1"]
    assert by_name["shop"]["events"] == ["restock", "shop_order_v1"]
    assert by_name["noter"]["accepts"] == ["*", "other.note.v1"]
    assert "accepts" not in by_name["echo"] and "events" not in by_name["echo"]


# -- live, from every process of a tenant, over NATS ---------------------------------

SHOP_PROCESS = textwrap.dedent('''
    import asyncio, sys
    from motadata_actors import Actor, ActorSystem
    from motadata_actors.codecs import TypeRegistry, field, message

    reg = TypeRegistry()

    @message("shop.item.v1", registry=reg)
    class Item:
        """One line of an order."""
        sku: str = field(proto=1)

    @message("shop.order.v1", registry=reg)
    class Order:
        """An order to place."""
        items: list[Item] = field(proto=1)

    class Shop(Actor):
        """Takes orders."""
        accepts = (Order,)
        events = ("shop_order_v1",)
        async def on_message(self, msg, ctx):
            return len(msg.items)

    async def main():
        async with ActorSystem(sys.argv[1], registry=reg) as system:
            await system.spawn(Shop, name="shop", mailbox="durable")
            while await system._runtime.schemas.known("shop.order.v1") is None:
                await asyncio.sleep(0.05)  # published in the background
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
''')

CHAT_PROCESS = textwrap.dedent('''
    import asyncio, sys
    from motadata_actors import Actor, ActorSystem

    class Echo(Actor):
        events = ("*", "sdk~lifecycle")
        async def on_message(self, msg, ctx):
            return msg

    class Chat(Actor):
        """One conversation per key."""
        async def on_message(self, msg, ctx):
            return msg

    async def main():
        async with ActorSystem(sys.argv[1]) as system:
            await system.spawn(Echo, name="echo")
            await system.spawn_keyed(Chat, kind="chat")
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
''')


def test_the_command_writes_the_document_of_two_processes(
    fresh_nats_server: NatsServer,
    tenant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    validate: Callable[[dict[str, Any]], list[str]],
) -> None:
    url = fresh_nats_server.url
    children = [start_child(script, tenant, env={"NATS_URL": url})
                for script in (SHOP_PROCESS, CHAT_PROCESS)]  # fmt: skip
    try:
        monkeypatch.setenv("NATS_URL", url)
        out = tmp_path / "asyncapi.json"
        assert main(["asyncapi", "--tenant", tenant, "--out", str(out), "--wait", "1.5"]) == 0
        said = capsys.readouterr().out
        assert said.startswith(f"wrote {out}: AsyncAPI 3.0.0 of tenant {tenant!r}, 3 agent(s)")
        doc = json.loads(out.read_text())
        # The same on stdout, from the real entry point.
        printed = subprocess.run(
            [sys.executable, "-m", "motadata_actors", "asyncapi", "--tenant", tenant],
            capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "NATS_URL": url},
        )  # fmt: skip
        assert printed.returncode == 0, printed.stderr
        again = json.loads(printed.stdout)
    finally:
        for child in children:
            stop_child(child)

    for document in (doc, again):
        assert validate(document) == []
        assert set(document["channels"]) >= {"agent.shop", "agent.echo", "agent.chat"}
    host = url.removeprefix("nats://")
    assert doc["servers"] == {"nats-1": {"host": host, "protocol": "nats"}}
    channels, schemas = doc["channels"], doc["components"]["schemas"]
    # The shop's process alone knows its types: their schemas came from the registry.
    assert list(channels["agent.shop"]["messages"]) == ["shop.order.v1"]
    assert channels["agent.shop"]["x-sdk-mailbox"] == "durable"
    assert channels["agent.shop"]["description"].startswith("Takes orders.")
    assert doc["operations"]["shop.ask"]["reply"]["address"]["location"] == (
        "$message.header#/Sdk-Reply-To"
    )
    assert schemas["shop.order.v1"]["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/shop.item.v1"
    }
    assert schemas["shop.item.v1"]["required"] == ["sku"]
    assert doc["components"]["messages"]["shop.order.v1"]["summary"] == "An order to place."
    assert list(channels["events.shop_order_v1"]["messages"]) == ["shop.order.v1"]
    # The other process: an untyped agent following every event and the life cycle,
    # and a keyed kind.
    assert list(channels["agent.echo"]["messages"]) == ["any"]
    assert channels["events"]["address"] == f"sdk.events.{{event_type}}.{tenant}"
    assert doc["operations"]["status.lifecycle.receive"]["summary"] == "Followed by echo."
    assert channels["agent.chat"]["address"] == f"sdk.agent.{{from}}.chat~{{key}}.{tenant}"
    assert channels["agent.chat"]["x-sdk-mailbox"] == "keyed"


def test_the_command_needs_nats_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    assert main(["asyncapi", "--tenant", "acme"]) == 1
    assert "set NATS_URL" in capsys.readouterr().err


@pytest.mark.anyio
async def test_a_tenant_with_no_processes_has_the_fixed_channels_only(
    nats_server: NatsServer,
    tenant: str,
    validate: Callable[[dict[str, Any]], list[str]],
) -> None:
    doc = await tenant_document(Settings(nats_urls=(nats_server.url,)), tenant, wait=0.3)
    assert validate(doc) == []
    assert set(doc["channels"]) == {"replies", "status.lifecycle", "status.progress",
                                    "dead_letters"}  # fmt: skip
    with pytest.raises(ConfigError, match="NATS_URL"):
        await tenant_document(Settings(enable_nats=False), tenant)


def test_help_describes_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "motadata_actors", "asyncapi", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "AsyncAPI 3.0.0" in out.stdout and "--tenant" in out.stdout and "accepts" in out.stdout
