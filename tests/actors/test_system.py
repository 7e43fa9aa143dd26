"""Actors over both transports: tell, ask, errors, bad input; and the system's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import attrs
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    AskTimeout,
    CodecError,
    ConfigError,
    Context,
    NoResponders,
    RemoteError,
    SubjectError,
    message,
)
from motadata_actors.mailbox import (
    CONTENT_TYPE,
    CORRELATION_ID,
    DEAD_REASON,
    MESSAGE_ID,
    MESSAGE_TYPE,
    TENANT_ID,
    TIMEOUT_MS,
    Incoming,
    InProcessTransport,
    Mailbox,
    NatsServer,
    Transport,
)

from ..conftest import connect

pytestmark = pytest.mark.anyio


@message("tests.greet.v1")
class Greet:
    who: str
    punctuation: str = "!"


@message("tests.strict.v1")
class Strict:
    n: int = attrs.field(validator=attrs.validators.instance_of(int))


class Greeter(Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.got = anyio.Event()

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.seen.append(msg)
        self.got.set()
        if isinstance(msg, Greet):
            return Greet(who=f"hello {msg.who}", punctuation=msg.punctuation)
        if msg == "boom":
            raise KeyError("no such thing")
        if msg == "slow":
            await anyio.sleep(10)
        if msg == "unencodable reply":
            return object()
        if msg == "ctx":
            return {
                "sender": ctx.sender,
                "is_ask": ctx.is_ask,
                "has_deadline": ctx.deadline is not None,
                "time_left_positive": (ctx.time_left() or 0) > 0,
                "message_id": ctx.message_id,
            }
        return msg


@pytest.fixture
async def system(transport: Transport, tenant: str) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(tenant, transport=transport) as system:
        yield system


async def tap(system: ActorSystem, subject: str) -> Mailbox[Incoming]:
    box: Mailbox[Incoming] = Mailbox(100)
    await system.transport.subscribe(subject, mailbox=box)
    return box


async def test_ask_returns_the_typed_reply(system: ActorSystem) -> None:
    ref = await system.spawn(Greeter, name="greeter")
    reply = await ref.ask(Greet(who="ada"), timeout=5)
    assert reply == Greet(who="hello ada")
    assert await ref.ask({"n": [1, 2.5, None, True, "s"]}, timeout=5) == {
        "n": [1, 2.5, None, True, "s"]
    }


async def test_tell_is_delivered_on_the_agent_subject_with_sparse_headers(
    system: ActorSystem, tenant: str
) -> None:
    greeter = Greeter()
    ref = await system.spawn(lambda: greeter, name="greeter")
    wire = await tap(system, f"sdk.agent.*.greeter.{tenant}")
    await ref.tell(Greet(who="bob"))
    with anyio.fail_after(5):
        await greeter.got.wait()
        msg = await wire.receive()
    assert greeter.seen == [Greet(who="bob")]
    assert msg.subject == f"sdk.agent.client.greeter.{tenant}"
    # Only what carries information: the type. JSON is the default (no Content-Type), and
    # a core tell is never resent (no Sdk-Message-Id).
    assert msg.headers == {MESSAGE_TYPE: "tests.greet.v1"}


async def test_ask_carries_its_timeout_and_the_handler_sees_its_context(
    system: ActorSystem, tenant: str
) -> None:
    ref = await system.spawn(Greeter, name="greeter")
    wire = await tap(system, f"sdk.agent.*.greeter.{tenant}")
    info = await ref.ask("ctx", timeout=3)
    assert info["sender"] == "client"
    assert info["is_ask"] and info["has_deadline"] and info["time_left_positive"]
    msg = await wire.receive()
    assert msg.headers is not None
    assert msg.headers[TIMEOUT_MS] == "3000"
    assert msg.headers[MESSAGE_ID] == info["message_id"]
    assert MESSAGE_TYPE not in msg.headers  # an untyped message has no type header


async def test_handler_exception_is_a_remote_error_and_the_actor_lives_on(
    system: ActorSystem,
) -> None:
    ref = await system.spawn(Greeter, name="greeter")
    with anyio.fail_after(3), pytest.raises(RemoteError) as info:
        await ref.ask("boom", timeout=10)
    assert info.value.type_name == "KeyError"
    assert "no such thing" in info.value.message
    assert info.value.actor == "greeter"
    assert await ref.ask("still there", timeout=5) == "still there"


async def test_ask_to_an_unknown_actor_fails_fast_with_no_responders(system: ActorSystem) -> None:
    with anyio.fail_after(10), pytest.raises(NoResponders, match="no actor named 'ghost'"):
        await system.ref("ghost").ask("x", timeout=60)  # far longer: it does not wait


async def test_ask_timeout_raises_in_time(system: ActorSystem) -> None:
    ref = await system.spawn(Greeter, name="greeter")
    start = anyio.current_time()
    with pytest.raises(AskTimeout, match=r"within 0\.3s"):
        await ref.ask("slow", timeout=0.3)
    elapsed = anyio.current_time() - start
    assert 0.3 <= elapsed < 5, elapsed  # the upper bound only catches a hang
    assert isinstance(AskTimeout("x"), TimeoutError)


async def test_handler_past_the_deadline_is_cancelled_and_the_actor_goes_on(
    system: ActorSystem,
) -> None:
    greeter = Greeter()
    ref = await system.spawn(lambda: greeter, name="greeter")
    with pytest.raises(AskTimeout):
        await ref.ask("slow", timeout=0.2)
    # The slow handler is cancelled at its deadline, so the next ask is answered
    # long before the 10 s the handler would have slept.
    with anyio.fail_after(5):
        assert await ref.ask("next", timeout=5) == "next"


async def test_bad_tokens_and_bad_values_are_typed_errors_at_the_call_site(
    system: ActorSystem,
) -> None:
    with pytest.raises(SubjectError):
        system.ref("Bad.Name")
    with pytest.raises(SubjectError):
        await system.spawn(Greeter, name="a b")
    ref = await system.spawn(Greeter, name="greeter")
    with pytest.raises(CodecError):
        await ref.tell(object())
    with pytest.raises(CodecError):
        await ref.ask({1, 2}, timeout=1)
    with pytest.raises(ConfigError):
        await ref.ask("x", timeout=-1)
    assert await ref.ask("ok", timeout=5) == "ok"


async def test_unencodable_reply_is_a_codec_error_for_the_asker(system: ActorSystem) -> None:
    ref = await system.spawn(Greeter, name="greeter")
    with pytest.raises(CodecError, match="rejected by 'greeter'"):
        await ref.ask("unencodable reply", timeout=5)
    assert await ref.ask("ok", timeout=5) == "ok"


@pytest.mark.parametrize(
    ("data", "headers", "reason"),
    [
        (
            b"\xff\xfe not json",
            {CONTENT_TYPE: "application/json"},
            "DecodeError: json cannot decode an untyped message: malformed body",
        ),
        (b"{}", {CONTENT_TYPE: "application/x-unknown"}, "CodecError: unsupported Content-Type"),
        (b"{}", {MESSAGE_TYPE: "nobody.knows.v1"}, "CodecError: unknown message type"),
        (b'{"who": 1}', {MESSAGE_TYPE: "tests.greet.v2"}, "CodecError: unknown message type"),
        (b'{"x": 1}', {MESSAGE_TYPE: "tests.greet.v1"}, "missing required field 'who'"),
        (
            b'{"n": "one"}',
            {MESSAGE_TYPE: "tests.strict.v1"},
            "json cannot decode 'tests.strict.v1': expected int, got str at $.n",
        ),
        (b'"x"', {TENANT_ID: "other"}, "TenantError: Sdk-Tenant-Id 'other'"),
    ],
)
async def test_bad_input_is_rejected_dead_lettered_and_survived(
    system: ActorSystem, tenant: str, data: bytes, headers: dict[str, str], reason: str
) -> None:
    greeter = Greeter()
    ref = await system.spawn(lambda: greeter, name="greeter")
    dead = await tap(system, f"sdk.dlq.greeter.{tenant}")
    subject = f"sdk.agent.mallory.greeter.{tenant}"
    expected = "TenantError" if TENANT_ID in headers else ("CodecError", "DecodeError")
    # As an ask: the asker gets a typed error, not a timeout.
    reply = await system.transport.request(subject, data, headers=headers, timeout=5)
    assert reply.headers is not None
    assert reply.headers["Sdk-Error"] in expected
    # As a tell: logged and dead-lettered.
    await system.transport.publish(subject, data, headers=headers)
    with anyio.fail_after(5):
        letters = [await dead.receive(), await dead.receive()]
    for letter in letters:
        assert letter.data == data
        assert letter.headers is not None
        assert reason in letter.headers[DEAD_REASON]
    assert greeter.seen == []
    assert await ref.ask("alive", timeout=5) == "alive"


async def test_matching_tenant_header_is_accepted(system: ActorSystem, tenant: str) -> None:
    await system.spawn(Greeter, name="greeter")
    reply = await system.transport.request(
        f"sdk.agent.x.greeter.{tenant}", b'"hi"', headers={TENANT_ID: tenant}, timeout=5
    )
    assert reply.data == b'"hi"'


async def test_foreign_client_without_headers_is_json(system: ActorSystem, tenant: str) -> None:
    await system.spawn(Greeter, name="greeter")
    reply = await system.transport.request(f"sdk.agent.x.greeter.{tenant}", b'{"a": 1}', timeout=5)
    assert reply.data == b'{"a":1}'


class Relay(Actor):
    """Asks the greeter on behalf of its asker, so messages form a conversation."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return await ctx.ref("greeter").ask(msg, timeout=5)


async def test_actor_to_actor_subject_names_the_sender_and_keeps_the_conversation(
    system: ActorSystem, tenant: str
) -> None:
    await system.spawn(Greeter, name="greeter")
    relay = await system.spawn(Relay, name="relay")
    wire = await tap(system, f"sdk.agent.*.*.{tenant}")
    assert await relay.ask(Greet(who="cy"), timeout=5) == Greet(who="hello cy")
    first, second = await wire.receive(), await wire.receive()
    assert first.subject == f"sdk.agent.client.relay.{tenant}"
    assert second.subject == f"sdk.agent.relay.greeter.{tenant}"
    assert first.headers and second.headers
    assert second.headers[CORRELATION_ID] == first.headers[MESSAGE_ID]
    assert int(second.headers[TIMEOUT_MS]) <= 5000


class Counter(Actor):
    def __init__(self) -> None:
        self.values: list[int] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        await anyio.lowlevel.checkpoint()  # yield inside the handler: still one message at a time
        self.values.append(msg)
        return len(self.values)


async def test_messages_are_handled_one_at_a_time_in_order(system: ActorSystem) -> None:
    counter = Counter()
    ref = await system.spawn(lambda: counter, name="counter")
    for i in range(200):
        await ref.tell(i)
    assert await ref.ask(200, timeout=10) == 201
    assert counter.values == list(range(201))


class Watcher(Actor):
    events = ("greeted",)

    def __init__(self) -> None:
        self.events_seen: list[Any] = []
        self.got = anyio.Event()

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.events_seen.append((ctx.subject, msg))
        self.got.set()


async def test_events_reach_subscribed_actors(system: ActorSystem, tenant: str) -> None:
    watcher = Watcher()
    await system.spawn(lambda: watcher, name="watcher")
    await system.publish({"who": "ann"}, event_type="greeted")
    with anyio.fail_after(5):
        await watcher.got.wait()
    assert watcher.events_seen == [(f"sdk.events.greeted.{tenant}", {"who": "ann"})]
    with pytest.raises(SubjectError, match="needs event_type"):
        await system.publish({"untyped": True})


class Lifecycle(Actor):
    log: ClassVar[list[str]] = []

    async def on_start(self) -> None:
        self.log.append(f"start {self.name}")

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.log.append(f"msg {self.name} {msg}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_actors_stop_newest_first_after_finishing_their_mailbox(
    transport: Transport, tenant: str
) -> None:
    Lifecycle.log = []
    async with ActorSystem(tenant, transport=transport) as system:
        a = await system.spawn(Lifecycle, name="a")
        await system.spawn(Lifecycle, name="b")
        await a.tell(1)
        await a.tell(2)
    log = Lifecycle.log
    assert log[:2] == ["start a", "start b"]
    assert sorted(log[2:]) == ["msg a 1", "msg a 2", "stop a", "stop b"]
    # Newest first; a finishes what was sent to it before it stops.
    assert log.index("stop b") < log.index("stop a")
    assert log.index("msg a 1") < log.index("msg a 2") < log.index("stop a")


class FailsToStart(Actor):
    async def on_start(self) -> None:
        raise RuntimeError("no config")


async def test_spawn_fails_when_on_start_raises_and_the_name_is_free_again(
    system: ActorSystem,
) -> None:
    with pytest.raises(RuntimeError, match="no config"):
        await system.spawn(FailsToStart, name="fragile")
    with anyio.fail_after(10), pytest.raises(NoResponders):
        await system.ref("fragile").ask("x", timeout=60)  # far longer: it does not wait
    ref = await system.spawn(Greeter, name="fragile")
    assert await ref.ask("y", timeout=5) == "y"


async def test_stop_by_name(system: ActorSystem) -> None:
    ref = await system.spawn(Greeter, name="greeter")
    assert await system.stop("greeter") == 1
    with anyio.fail_after(10), pytest.raises(NoResponders):
        await ref.ask("x", timeout=60)  # far longer: it does not wait


async def test_replicas_in_one_system_share_the_load(system: ActorSystem) -> None:
    counters = [Counter(), Counter()]
    for c in counters:
        await system.spawn(lambda c=c: c, name="worker")
    ref = system.ref("worker")
    for i in range(40):
        await ref.ask(i, timeout=5)
    assert sorted(v for c in counters for v in c.values) == list(range(40))
    assert all(c.values for c in counters)


async def test_enable_nats_false_uses_the_in_process_transport(
    tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_NATS", "false")
    async with ActorSystem(tenant) as system:
        assert isinstance(system.transport, InProcessTransport)
        assert system.embedded_server is None
        ref = await system.spawn(Greeter, name="greeter")
        assert await ref.ask("x", timeout=5) == "x"


async def test_nats_url_connects_there(
    tenant: str, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_URL", f"nats://127.0.0.1:1,{nats_server.url}")  # a dead one first
    monkeypatch.delenv("ENABLE_NATS", raising=False)
    async with ActorSystem(tenant) as system:
        assert system.embedded_server is None
        assert system.transport.server_name == nats_server.server_name  # type: ignore[attr-defined]
        ref = await system.spawn(Greeter, name="greeter")
        assert await ref.ask("x", timeout=5) == "x"


async def test_dead_server_is_a_connection_error(
    tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from motadata_actors import ConnectionLost

    server = NatsServer()
    server.start()
    url = server.url
    server.stop()
    monkeypatch.setenv("NATS_URL", url)
    with anyio.fail_after(20), pytest.raises(ConnectionLost, match="cannot connect"):
        async with ActorSystem(tenant):
            pass


async def test_the_system_is_unusable_outside_its_block(tenant: str) -> None:
    from motadata_actors import TransportClosed

    system = ActorSystem(tenant, transport=InProcessTransport())
    with pytest.raises(TransportClosed, match="async with"):
        system.ref("x")
    async with system:
        system.ref("x")
    with pytest.raises(TransportClosed):
        await system.spawn(Greeter, name="x")


async def test_shared_server_reached_by_another_system(
    nats_server: NatsServer, tenant: str
) -> None:
    """Two systems, two connections, one server: a ref reaches an actor spawned elsewhere."""
    a = await connect(nats_server)
    b = await connect(nats_server)
    async with ActorSystem(tenant, transport=a) as one, ActorSystem(tenant, transport=b) as two:
        await one.spawn(Greeter, name="greeter")
        assert await two.ref("greeter").ask("across", timeout=5) == "across"


class Welcomer(Actor):
    def __init__(self, greeting: str = "hello") -> None:
        self.greeting = greeting

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return f"{self.greeting} {msg}"


async def test_spawning_an_instance_says_to_pass_the_class_or_a_factory(tenant: str) -> None:
    async with ActorSystem(tenant, transport=InProcessTransport()) as system:
        with pytest.raises(
            ConfigError, match=r"not an instance: pass Welcomer, or lambda: Welcomer"
        ):
            await system.spawn(Welcomer("hi"), name="greeter")  # type: ignore[arg-type]
        ref = await system.spawn(lambda: Welcomer("hi"), name="greeter")
        assert await ref.ask("there", timeout=5) == "hi there"


class Narcissus(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "reflect":
            return await ctx.ref(ctx.actor).ask("mirror", timeout=30)
        if msg == "stream":
            async with ctx.ref(ctx.actor).ask_stream("mirror", timeout=30) as parts:
                return [p async for p in parts]
        return "image"


async def test_an_actor_asking_itself_is_told_at_once(transport: Transport, tenant: str) -> None:
    async with ActorSystem(tenant, transport=transport) as system:
        alone = await system.spawn(Narcissus, name="narcissus")
        with anyio.fail_after(5):  # not the 30 s the self-ask would have waited
            for question in ("reflect", "stream"):
                with pytest.raises(RemoteError, match="asked itself from its own handler"):
                    await alone.ask(question, timeout=30)
        # With room for two handlers at once, asking oneself works.
        pair = await system.spawn(Narcissus, name="pair", concurrency=2)
        assert await pair.ask("reflect", timeout=5) == "image"


async def test_statistics_name_actors_by_path_like_events(tenant: str) -> None:
    async with ActorSystem(tenant, transport=InProcessTransport()) as system:
        workers = await system.spawn_supervisor(name="workers")
        await workers.spawn(Welcomer, name="writer")
        await system.spawn(Welcomer, name="solo")
        paths = [s.path for s in system.statistics()]
        assert paths == ["/workers/writer", "/solo"]
        started = {e.actor for e in system.events("started")}
        assert set(paths) <= started
        assert await system.stop("solo") == 1
        assert [s.path for s in system.statistics()] == ["/workers/writer"]
