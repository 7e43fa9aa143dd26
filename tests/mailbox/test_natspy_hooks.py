"""Every private nats-py hook of ``mailbox/_natspy.py``, held to what we rely on.

A nats-py release that renames, retypes or changes one of them fails here, loudly and by
name, against a real nats-server, before it can silently break delivery. The first test
keeps this file and ``HOOKS`` in step: a hook added there without a check here fails.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.aio.transport
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from motadata_actors import AskTimeout, ConnectionLost, NoResponders
from motadata_actors.mailbox import Mailbox, NatsServer, NatsTransport
from motadata_actors.mailbox import _natspy as natspy
from motadata_actors.mailbox._deadlines import Deadlines
from motadata_actors.mailbox._tls_guard import GuardedTcp

from ..conftest import connect, wait_for

pytestmark = pytest.mark.anyio

CHECKED = {
    ("Client", "_transport"),
    ("Client", "_server_info"),
    ("Client", "options"),
    ("Subscription", "_pending_queue"),
    ("Subscription", "_id"),
    ("Client", "_send_unsubscribe"),
    ("Client", "_flush_pending"),
    ("Client", "_process_info"),
    ("Client", "_max_payload"),
    ("Client", "_process_err"),
    ("Client", "_process_headers"),
    ("Client", "_send_publish"),
    ("Client", "_send_command"),
    ("Client", "_flush_queue"),
    ("Client", "_flusher_task"),
    ("Client", "_send_ping"),
    ("Client", "stats"),
    ("Client", "_resp_map"),
    ("Client", "_resp_sub_prefix"),
    ("Client", "_init_request_sub"),
    ("Client", "_subs"),
}


def test_every_hook_is_listed_justified_and_checked_here() -> None:
    assert {(h.owner, h.name) for h in natspy.HOOKS} == CHECKED
    for hook in natspy.HOOKS:
        assert len(hook.why) > 40, f"{hook.name}: say why no public API does it"


def test_nats_py_is_imported_by_the_adapter_alone() -> None:
    # The library's layers (benchmarks import nats-py for their raw baselines).
    root = Path(__file__).resolve().parents[2]
    importers = set()
    for folder in ("motadata_actors", "actors", "mailbox", "codecs", "telemetry"):
        for path in (root / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )  # fmt: skip
                if any(n == "nats" or n.startswith("nats.") for n in names):
                    importers.add(f"{folder}/{path.name}")
    assert importers == {"mailbox/_natspy.py"}


# -- the version range ----------------------------------------------------------------------


def test_the_tested_range_is_declared_in_pyproject_and_holds_the_installed_nats_py() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert f"nats-py{natspy.NATS_PY_RANGE}" in deps
    assert natspy.check_version(nats.aio.client.__version__) is None


@pytest.mark.parametrize("version", ["2.15.9", "2.17.0", "3.0.0", "unknown"])
def test_a_nats_py_outside_the_range_warns_naming_the_range(version: str) -> None:
    with pytest.warns(RuntimeWarning, match=r"nats-py>=2\.16,<2\.17") as record:
        natspy.warn_if_untested(version)
    assert version in str(record[0].message)


@pytest.mark.parametrize("version", ["2.16.0", "2.16.3", "2.16.10rc1"])
def test_a_nats_py_inside_the_range_is_quiet(version: str) -> None:
    assert natspy.check_version(version) is None


# -- a raw connection, made the way the transport makes it ----------------------------------


@pytest.fixture
async def raw(nats_server: NatsServer) -> AsyncIterator[tuple[Client, GuardedTcp, list[Any]]]:
    errors: list[Any] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async def nothing() -> None:
        pass

    guard = GuardedTcp(require_tls=False)
    nc = natspy.new_client(guard)
    await natspy.connect(
        nc, [nats_server.url], on_error=on_error,
        on_slow_consumer=lambda sub, subject, reply: errors.append(("slow", sub, subject)),
        on_disconnected=nothing, on_reconnected=nothing, connect_timeout=2.0,
        reconnect_time_wait=0.25,
    )  # fmt: skip
    try:
        yield nc, guard, errors
    finally:
        await nc.close()


async def other(server: NatsServer) -> Client:
    return await nats.connect(server.url)


# -- Client._transport ----------------------------------------------------------------------


def test_the_guard_implements_every_method_of_nats_py_transport_interface() -> None:
    abstract = nats.aio.transport.Transport.__abstractmethods__
    assert abstract, "nats-py's Transport interface is gone"
    for name in abstract:
        ours = getattr(GuardedTcp, name, None)
        assert ours is not None, f"GuardedTcp lacks {name} of nats-py's Transport"
        theirs = getattr(nats.aio.transport.TcpTransport, name)
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(theirs).parameters
        ), f"Transport.{name} changed its parameters"
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs), name


async def test_client_transport_set_before_connect_carries_the_connection(
    raw: tuple[Client, GuardedTcp, list[Any]],
) -> None:
    nc, guard, _ = raw
    assert nc._transport is guard, "nats-py replaced the transport we set"
    assert guard._writer is not None and not guard.at_eof()
    await natspy.round_trip(nc)  # the PING and its PONG went through the guard


# -- Client._server_info, Client.options ----------------------------------------------------


async def test_server_info_holds_the_info_fields_we_read(
    raw: tuple[Client, GuardedTcp, list[Any]], nats_server: NatsServer
) -> None:
    nc, _, _ = raw
    info = natspy.server_info(nc)
    assert isinstance(nc._server_info, dict)
    assert info["server_name"] == nats_server.server_name
    assert "tls_available" in info or "tls_required" in info or "max_payload" in info


async def test_reconnect_options_are_read_on_every_reconnect(
    raw: tuple[Client, GuardedTcp, list[Any]],
) -> None:
    nc, _, _ = raw
    natspy.keep_reconnecting(nc, 0.5)
    assert nc.options["max_reconnect_attempts"] == -1
    assert nc.options["reconnect_time_wait"] == 0.5
    # nats-py reads both from the dict each time it picks a server to reconnect to.
    source = inspect.getsource(Client._select_next_server)
    assert 'self.options["max_reconnect_attempts"]' in source
    assert 'self.options["reconnect_time_wait"]' in source


# -- Subscription._pending_queue ------------------------------------------------------------


async def test_the_swapped_pending_queue_delivers_straight_into_the_mailbox_in_order(
    raw: tuple[Client, GuardedTcp, list[Any]], nats_server: NatsServer
) -> None:
    nc, _, errors = raw
    mailbox: Mailbox[Any] = Mailbox(1000)
    sub = await natspy.subscribe_into(nc, "hooks.order", None, mailbox)
    assert isinstance(sub, Subscription)
    assert sub._pending_queue is mailbox
    assert sub._wait_for_msgs_task is None, "no task per subscription"
    await natspy.round_trip(nc)
    pub = await other(nats_server)
    try:
        for i in range(500):
            await pub.publish("hooks.order", str(i).encode(), headers={"N": str(i)})
        await pub.flush()
    finally:
        await pub.close()
    await wait_for(lambda: mailbox.statistics().queued == 500, 5, "500 messages")
    got = [await mailbox.receive() for _ in range(500)]
    assert [m.data for m in got] == [str(i).encode() for i in range(500)]
    assert got[7].headers == {"N": "7"} and got[7].subject == "hooks.order"
    assert errors == []


async def test_past_the_mailbox_bound_nats_py_drops_and_names_our_subscription(
    nats_server: NatsServer,
) -> None:
    transport = await connect(nats_server)
    pub = await other(nats_server)
    try:
        mailbox: Mailbox[Any] = Mailbox(2)
        await transport.subscribe("hooks.slow", mailbox=mailbox)
        for _ in range(10):
            await pub.publish("hooks.slow", b"x")
        await pub.flush()
        await wait_for(lambda: mailbox.statistics().dropped == 8, 5, "8 drops counted")
        assert mailbox.statistics().queued == 2
    finally:
        await pub.close()
        await transport.aclose()


# -- Client._flush_queue, Client._flusher_task, Client.flush --------------------------------


async def test_a_round_trip_makes_a_new_subscription_known_to_the_server(
    raw: tuple[Client, GuardedTcp, list[Any]], nats_server: NatsServer
) -> None:
    nc, _, _ = raw
    assert isinstance(nc._flush_queue, asyncio.Queue), "Client._flush_queue changed"
    assert isinstance(nc._flusher_task, asyncio.Task), "Client._flusher_task changed"
    params = list(inspect.signature(Client._send_ping).parameters)
    assert params[:2] == ["self", "future"], "Client._send_ping(future) changed"
    pub = await other(nats_server)
    try:
        for i in range(20):  # each time: SUB, round trip, then a publish from elsewhere
            mailbox: Mailbox[Any] = Mailbox(10)
            await natspy.subscribe_into(nc, f"hooks.known.{i}", None, mailbox)
            await natspy.round_trip(nc)
            await pub.publish(f"hooks.known.{i}", b"now")
            await pub.flush()
            async with asyncio.timeout(2):
                assert (await mailbox.receive()).data == b"now"
    finally:
        await pub.close()


async def test_a_subscription_as_the_server_dies_ends_in_its_time(
    fresh_nats_server: NatsServer,
) -> None:
    # Gone just before the SUB's round trip: nats-py's flusher stops, and a flush queued
    # for it was waited for without a limit (a spawn hung for ever), deaf to a cancel.
    transport = await connect(fresh_nats_server)
    try:
        fresh_nats_server.kill()
        await asyncio.sleep(0)  # the read loop sees the end; the subscription starts after
        # Not under a cancel scope: nats-py swallowed the cancel, which hid the hang.
        subscribing = asyncio.create_task(transport.subscribe("hooks.dying", mailbox=Mailbox(10)))
        done, _ = await asyncio.wait({subscribing}, timeout=20)
        assert done, "the subscription hung (its round trip may take 10 s)"
        exc = subscribing.exception()
        # It returns (reconnecting, nats-py replays the SUBs it has) or says the link is gone.
        assert exc is None or isinstance(exc, ConnectionLost), exc
    finally:
        await transport.aclose()


async def test_a_close_while_reconnecting_leaves_no_subscription_task_behind(
    fresh_nats_server: NatsServer,
) -> None:
    # nats-py's close, reconnecting with something buffered, failed writing it before it
    # stopped its subscriptions' tasks: the reply inbox's reader outlived the exit.
    transport = await connect(fresh_nats_server)
    nc = transport.client
    with contextlib.suppress(NoResponders):
        await transport.request("hooks.nobody", b"?", timeout=2)  # makes the reply inbox
    readers = [s._wait_for_msgs_task for s in nc._subs.values() if s._wait_for_msgs_task]
    assert readers, "the reply inbox has a reader task"
    fresh_nats_server.kill()
    await wait_for(lambda: nc.is_reconnecting, 10, "nats-py to see the server gone")
    await nc.publish("hooks.buffered", b"x")  # buffered while reconnecting
    await transport.aclose()
    await asyncio.sleep(0)  # a cancelled task ends at its next turn
    assert all(task.done() for task in readers)
    assert nc._subs == {}


# -- Client._send_unsubscribe, Subscription._id ---------------------------------------------


async def test_unsubscribing_keeps_every_message_sent_before_and_stops_after(
    raw: tuple[Client, GuardedTcp, list[Any]], nats_server: NatsServer
) -> None:
    nc, _, errors = raw
    params = list(inspect.signature(Client._send_unsubscribe).parameters)
    assert params[:2] == ["self", "sid"], "Client._send_unsubscribe(sid) changed"
    mailbox: Mailbox[Any] = Mailbox(20_000)
    sub = await natspy.subscribe_into(nc, "hooks.drain", None, mailbox)
    assert isinstance(sub._id, int) and nc._subs.get(sub._id) is sub
    await natspy.round_trip(nc)
    pub = await other(nats_server)
    try:
        body = b"x" * 1024
        for _ in range(10_000):  # ~10 MB: much of it still in flight when we unsubscribe
            await pub.publish("hooks.drain", body)
        await pub.flush()  # the server has routed all of them to us
        await natspy.unsubscribe_keeping(nc, [sub])
        assert mailbox.statistics().queued == 10_000, "messages sent before UNSUB were lost"
        assert sub._id not in nc._subs
        await pub.publish("hooks.drain", b"late")
        await pub.flush()
        await natspy.round_trip(nc)
        assert mailbox.statistics().queued == 10_000, "delivered after unsubscribing"
    finally:
        await pub.close()
    assert errors == [], "the second UNSUB (of unsubscribe()) made the server complain"


async def test_the_transport_unsubscribes_and_closes_without_losing_what_was_sent(
    nats_server: NatsServer,
) -> None:
    subject = f"hooks.close.{uuid.uuid4().hex[:8]}"
    transport: NatsTransport = await connect(nats_server)
    pub = await other(nats_server)
    mailbox: Mailbox[Any] = Mailbox(20_000)
    try:
        await transport.subscribe(subject, mailbox=mailbox)
        for _ in range(5_000):
            await pub.publish(subject, b"y" * 512)
        await pub.flush()
    finally:
        await pub.close()
        await transport.aclose()
    assert mailbox.statistics().queued == 5_000


# -- Client._process_info, Client._max_payload, Client._process_err -------------------------


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """An account with a payload and a subscription limit (a tenant's quotas)."""
    conf = tmp_path_factory.mktemp("limits") / "server.conf"
    conf.write_text(
        "accounts { LIMITED { limits: {max_payload: 2048, max_subscriptions: 2}, "
        'users: [{user: "u", password: "p"}] } }\n'
    )
    with NatsServer(server_name=f"limits-{uuid.uuid4().hex[:8]}", args=["-c", str(conf)]) as s:
        yield s


async def test_the_account_limits_in_the_info_after_login_are_kept(
    limited_server: NatsServer,
) -> None:
    params = list(inspect.signature(Client._process_info).parameters)
    assert params[:3] == ["self", "info", "initial_connection"], "_process_info changed"
    assert list(inspect.signature(Client._process_err).parameters)[:2] == ["self", "err_msg"]
    errors: list[Any] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async def nothing() -> None:
        pass

    nc = natspy.new_client(None)
    await natspy.connect(
        nc, [limited_server.url], on_error=on_error, on_slow_consumer=lambda *_: None,
        on_disconnected=nothing, on_reconnected=nothing, connect_timeout=2.0,
        reconnect_time_wait=0.25, user="u", password="p",
    )  # fmt: skip
    try:
        await natspy.round_trip(nc)  # the INFO after the login came before this PONG
        assert natspy.server_info(nc)["server_name"] == limited_server.server_name
        assert natspy.server_info(nc)["max_payload"] > 2048  # the server's, first INFO
        assert (nc.max_payload, natspy.account(nc)) == (2048, "LIMITED")
        for i in range(3):
            await natspy.subscribe_into(nc, f"hooks.limit.{i}", None, Mailbox(1))
        await natspy.round_trip(nc)
        assert natspy.subscriptions_refused(nc) == 1
        assert [str(e) for e in errors] == ["nats: maximum subscriptions exceeded"]
        assert natspy.state(nc) == "connected", "nats-py closed the connection on the -ERR"
    finally:
        await nc.close()


_BLOCKS = [  # (block, whether it is plain: ours reads it; else nats-py's parser does)
    (b"NATS/1.0\r\nSdk-Message-Id: a.b.1\r\nSdk-Timeout-Ms: 5000\r\n\r\n", True),
    (b"NATS/1.0\r\nX-Empty:\r\nX-Colons: a:b: c\r\nX-Utf8: caf\xc3\xa9 \xff\r\n\r\n", True),
    (b"NATS/1.0\r\nName:Value\r\nName:again\r\n\r\n", True),
    (b"NATS/1.0\r\n\r\n", True),
    (b"NATS/1.0 503\r\n\r\n", False),
    (b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\n\r\n", False),
    (b"NATS/1.0\r\n Spaced : v\r\n\r\n", False),
    (b"NATS/1.0\r\nBad Name: v\r\n\r\n", False),
    (b"NATS/1.0\r\nno-colon\r\n\r\n", False),
    (b"NATS/1.0\r\nNon-\xc3\xa9scii: v\r\n\r\n", False),
]


@pytest.mark.parametrize(("block", "plain"), _BLOCKS)
async def test_our_header_parser_reads_what_nats_py_reads_or_hands_it_over(
    block: bytes, plain: bool
) -> None:
    params = list(inspect.signature(Client._process_headers).parameters)
    assert params == ["self", "headers"], "_process_headers changed"
    ours = natspy.parse_headers(block)
    assert (ours is not None) == plain
    if ours is not None:
        assert (ours or None) == await Client()._process_headers(block)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=24)), max_size=6))
async def test_any_block_our_parser_takes_reads_as_nats_py_reads_it(
    lines: list[tuple[bytes, bytes]],
) -> None:
    body = b"".join(n.replace(b"\r\n", b"") + b":" + v.replace(b"\r\n", b"") + b"\r\n"
                    for n, v in lines)  # fmt: skip
    block = b"NATS/1.0\r\n" + body + b"\r\n"
    ours = natspy.parse_headers(block)
    if ours is not None:
        assert (ours or None) == await Client()._process_headers(block)


async def test_a_connection_parses_headers_with_ours(nats_server: NatsServer) -> None:
    transport = await connect(nats_server)
    try:
        nc = transport.client
        assert nc._process_headers.__name__ == "quick_read"  # the hooks are in place
        assert nc._send_publish.__name__ == "quick_write"
        box: Mailbox[Any] = Mailbox(10)
        await transport.subscribe("hooks.headers", mailbox=box)
        await transport.publish("hooks.headers", b"x", headers={"A": "1", "B-2": " two "})
        got = await box.receive()
        assert got.headers == {"A": "1", "B-2": "two"}
    finally:
        await transport.aclose()


def test_our_header_writer_takes_plain_headers_and_hands_over_the_rest() -> None:
    params = list(inspect.signature(Client._send_publish).parameters)
    assert params == ["self", "subject", "reply", "payload", "payload_size", "headers"]
    plain = {"Sdk-Message-Id": "a.b.1", "X-Spaced": " v ", "X-Utf8": "café", "X-Empty": ""}
    block = natspy.header_block(plain)
    assert block is not None
    assert block.startswith(b"NATS/1.0\r\n") and block.endswith(b"\r\n\r\n")
    assert natspy.parse_headers(block) == {k: v.strip() for k, v in plain.items()}
    odd_ones = ({"Bad Name": "v"}, {"X": "a\r\nInjected: 1"}, {"X": "a\nb"}, {"X": 1},
                {"X": "\ud800"})  # fmt: skip
    for odd in odd_ones:
        assert natspy.header_block(odd) is None, odd  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}", fullmatch=True),
        st.text(
            st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=24
        ),
        max_size=6,
    )
)
def test_what_our_writer_writes_our_reader_reads(headers: dict[str, str]) -> None:
    block = natspy.header_block(headers)
    assert block is not None
    read = natspy.parse_headers(block)
    # Values are stripped of ASCII white space, as nats-py's reader strips them.
    assert read == {k: v.encode().strip().decode() for k, v in headers.items()}


async def test_odd_headers_still_go_through_nats_py(nats_server: NatsServer) -> None:
    transport = await connect(nats_server)
    try:
        nc = transport.client
        box: Mailbox[Any] = Mailbox(10)
        await transport.subscribe("hooks.odd", mailbox=box)
        await nc.publish("hooks.odd", b"x", headers={"X": "a\r\nInjected: 1"})
        got = await box.receive()
        assert got.headers == {"X": "a  Injected: 1"}  # nats-py blanks the line break
    finally:
        await transport.aclose()


# -- Client._resp_map, Client._resp_sub_prefix, Client._init_request_sub -------------------


async def test_our_request_is_answered_through_nats_py_reply_inbox(
    raw: tuple[Client, GuardedTcp, list[Any]], nats_server: NatsServer
) -> None:
    nc, _, errors = raw
    deadlines = Deadlines()
    responder = await other(nats_server)
    try:

        async def answer(msg: Any) -> None:
            await responder.publish(msg.reply, msg.data.upper(), headers={"X-Seen": msg.reply})

        await responder.subscribe("svc.echo", cb=answer)
        await responder.flush()
        reply = await natspy.request(nc, "svc.echo", b"hi", {"X-Ask": "1"}, 5, deadlines)
        assert reply.data == b"HI"
        # The reply came to nats-py's reply inbox (its prefix, then our token), through
        # nats-py's own mux, and nothing is left waiting.
        prefix = nc._resp_sub_prefix
        assert prefix is not None and reply.headers["X-Seen"].startswith(prefix.decode())
        assert nc._resp_map == {}
        # nats-py's own requests share the inbox and the map with ours.
        assert (await nc.request("svc.echo", b"too", timeout=5)).data == b"TOO"
        assert signature_names(Client._init_request_sub) == ["self"]
    finally:
        await responder.close()
    assert errors == []


async def test_our_request_times_out_and_names_no_responders(
    raw: tuple[Client, GuardedTcp, list[Any]], nats_server: NatsServer
) -> None:
    nc, _, _ = raw
    deadlines = Deadlines()
    with pytest.raises(nats.errors.NoRespondersError):
        await natspy.request(nc, "svc.nobody", b"", None, 5, deadlines)
    silent = await other(nats_server)
    try:

        async def ignore(msg: Any) -> None:
            pass

        await silent.subscribe("svc.silent", cb=ignore)
        await silent.flush()
        with pytest.raises(AskTimeout, match=r"within 0\.2s"):
            await natspy.request(nc, "svc.silent", b"", None, 0.2, deadlines)
    finally:
        await silent.close()
    assert nc._resp_map == {}


def signature_names(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


async def test_listing_a_buckets_keys_cancelled_midway_leaves_no_subscription(
    nats_server: NatsServer,
) -> None:
    # nats-py's kv.keys() left its watcher subscribed when cancelled (a lease refresh at a
    # system's exit): the connection's close then waited 5 s for it.
    transport = await connect(nats_server)
    try:
        bucket = await transport.key_value(f"HOOKS_KEYS_{uuid.uuid4().hex[:8]}")
        assert await bucket.keys() == []
        for i in range(300):
            await bucket.create(f"k{i}", b"v")
        assert len(await bucket.keys()) == 300
        nc = transport.client
        before = len(nc._subs)
        listing = asyncio.create_task(bucket.keys())
        async with asyncio.timeout(5):
            while len(nc._subs) == before:  # each loop turn: until the watcher subscribed
                await asyncio.sleep(0)
        assert not listing.done()
        listing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listing
        # Stopped at once, or (cancelled while subscribing) as soon as it is made.
        await wait_for(lambda: len(nc._subs) == before, 5, "the watcher to be stopped")
    finally:
        await transport.aclose()


async def test_a_listing_whose_deliveries_arrive_after_the_consumers_info_misses_no_key(
    nats_server: NatsServer,
) -> None:
    # On the wire, a new consumer's deliveries and the answer to its info request can come
    # in either order. nats-py's watcher, seeing "nothing pending" before it has read a
    # delivery, marks the listing done: a bucket of 300 keys listed as [] under load (a
    # lease refresh then saw no node). Here the deliveries are held back until the info
    # answer has been read, as the busy server of a CI run sent them.
    transport = await connect(nats_server)
    nc = transport.client
    name = f"HOOKS_LATE_{uuid.uuid4().hex[:8]}"
    held: list[tuple[Any, ...]] = []
    holding = True
    read_late: set[asyncio.Task[None]] = set()
    real_process, real_request = nc._process_msg, nc.request

    async def process(sid: int, subject: bytes, reply: bytes, *rest: Any) -> None:
        if holding and reply.startswith(f"$JS.ACK.KV_{name}.".encode()):
            held.append((sid, subject, reply, *rest))
        else:
            await real_process(sid, subject, reply, *rest)

    async def read_held() -> None:
        nonlocal holding
        holding = False
        for message in held:
            await real_process(*message)

    async def request(subject: str, *args: Any, **kwargs: Any) -> Any:
        if holding and subject.startswith(f"$JS.API.CONSUMER.INFO.KV_{name}."):
            await wait_for(lambda: len(held) == 300, 5, "every delivery to be on its way")
            answer = await real_request(subject, *args, **kwargs)
            task = asyncio.create_task(read_held())  # after the answer is read
            read_late.add(task)
            return answer
        return await real_request(subject, *args, **kwargs)

    try:
        bucket = await transport.key_value(name)
        for i in range(300):
            await bucket.create(f"k{i}", b"v")
        await bucket.delete("k7")
        nc._process_msg = process  # type: ignore[method-assign]
        nc.request = request  # type: ignore[method-assign]
        keys = await bucket.keys()
        assert not holding  # the race was played out, not avoided
        assert sorted(keys) == sorted(f"k{i}" for i in range(300) if i != 7)
    finally:
        nc._process_msg = real_process  # type: ignore[method-assign]
        nc.request = real_request  # type: ignore[method-assign]
        await asyncio.gather(*read_late)
        await transport.aclose()
