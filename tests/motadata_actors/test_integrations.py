from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from motadata_actors import (
    ConfigError,
    ConnectionLost,
    DecodeError,
    EncodeError,
    NoResponders,
    Settings,
    SubjectError,
    TransportClosed,
)
from motadata_actors.codecs import CODEC_NAMES
from motadata_actors.integrations import create_codec_manager, create_nats_client
from motadata_actors.mailbox import Incoming, NatsServer

from ..codecs.messages import Point, Task, registry
from ..conftest import wait_for


@pytest.mark.parametrize("codec_type", CODEC_NAMES)
def test_codec_manager_round_trips_values_and_typed_messages(codec_type: str) -> None:
    manager = create_codec_manager(codec_type=codec_type, registry=registry)
    assert manager.codec_type == codec_type
    value = {"n": 1, "b": b"\x01", "l": [None, True, 2.5]}
    assert manager.decode(manager.encode(value)) == value
    task = Task(title="t", where=Point(1.0, 2.0))
    assert manager.decode(manager.encode(task)) == task  # no header needed
    with pytest.raises(EncodeError):
        manager.encode({1, 2})
    with pytest.raises(DecodeError):
        manager.decode(b"\xc1\xff\xfe{")


def test_default_is_json_and_bad_names_are_config_errors() -> None:
    assert create_codec_manager().content_type == "application/json"
    with pytest.raises(ConfigError, match="codec_type='yaml'"):
        create_codec_manager(codec_type="yaml")


def test_create_otel_tracer_returns_a_real_tracer_in_a_fresh_process(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    script = (
        "from motadata_actors.integrations import create_otel_tracer\n"
        "from opentelemetry import trace\n"
        "tracer = create_otel_tracer(service_name='seed-app')\n"
        "with tracer.start_span('work') as span:\n"
        "    assert span.is_recording()\n"
        "    print(format(span.get_span_context().trace_id, '032x'))\n"
        "provider = trace.get_tracer_provider()\n"
        "print(provider.resource.attributes['service.name'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    trace_id, service = out.stdout.split()
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    assert service == "seed-app"


@pytest.mark.anyio
async def test_nats_client_publishes_subscribes_and_requests(nats_server: NatsServer) -> None:
    got: list[tuple[str, bytes]] = []
    done = asyncio.Event()

    async def on_msg(msg: Incoming) -> None:
        got.append((msg.subject, msg.data))
        if len(got) == 3:
            done.set()

    def broken(msg: Incoming) -> None:
        raise RuntimeError("a callback's bug")

    async with create_nats_client(nats_server.url) as client:
        assert client.url == nats_server.url
        await client.subscribe("seed.>", callback=on_msg)
        await client.subscribe("seed.a", callback=broken)  # logged; delivery goes on
        await client.publish(subject="seed.a", payload=b"raw bytes")
        await client.publish(subject="seed.b", payload={"n": 1})  # encoded by CODEC_TYPE
        await client.publish(subject="seed.a", payload=b"again")
        await asyncio.wait_for(done.wait(), 5)
        assert got == [("seed.a", b"raw bytes"), ("seed.b", b'{"n":1}'), ("seed.a", b"again")]

        async def echo(msg: Incoming) -> None:
            await client.publish(subject=msg.reply, payload=msg.data.upper())

        await client.subscribe("seed.echo", callback=echo)
        reply = await client.request("seed.echo", b"hello", timeout=5)
        assert reply.data == b"HELLO"
        with pytest.raises(NoResponders):
            await client.request("other.nobody", b"x", timeout=1)
        with pytest.raises(SubjectError):
            await client.publish(subject="seed.*", payload=b"x")
    with pytest.raises(TransportClosed, match="connect"):
        await client.publish(subject="seed.a", payload=b"closed")


@pytest.mark.anyio
async def test_clients_without_a_url_share_one_embedded_server() -> None:
    """A publisher and a subscriber of one process meet; the server stops with the last."""
    sub_client = create_nats_client(settings=Settings())
    pub_client = create_nats_client(settings=Settings())
    await sub_client.connect()
    await pub_client.connect()
    url = sub_client.url
    try:
        assert url is not None and url == pub_client.url
        assert url.startswith("nats://127.0.0.1:")
        assert urlsplit(url).port != 4_222  # never the default port
        got = asyncio.Event()
        await sub_client.subscribe("seed.x", callback=lambda msg: got.set())
        await pub_client.publish(subject="seed.x", payload=b"hi")
        await asyncio.wait_for(got.wait(), 5)
        await pub_client.close()
        await sub_client.publish(subject="seed.x", payload=b"still up")  # one user left
    finally:
        await pub_client.close()
        await sub_client.close()
    with pytest.raises(ConnectionLost):  # the last client stopped it
        await create_nats_client(url, settings=Settings()).connect()


@pytest.mark.anyio
async def test_close_lets_callbacks_finish_and_always_closes(nats_server: NatsServer) -> None:
    forwarded: list[bytes] = []
    results = asyncio.Event()
    async with create_nats_client(nats_server.url) as collector:

        async def collect(msg: Incoming) -> None:
            forwarded.append(msg.data)
            if len(forwarded) == 3:
                results.set()

        await collector.subscribe("seed.results", callback=collect)
        worker = create_nats_client(f"{nats_server.url}, {nats_server.url}")  # a list works
        await worker.connect()

        async def work(msg: Incoming) -> None:
            await asyncio.sleep(0.2)  # still at it when close() begins
            await worker.publish(subject="seed.results", payload=msg.data.upper())

        jobs = await worker.subscribe("seed.jobs", callback=work)
        for job in (b"a", b"b", b"c"):
            await collector.publish(subject="seed.jobs", payload=job)
        box = jobs.mailbox
        await wait_for(lambda: box.received + box.qsize() == 3, 5, "the jobs delivered")
        await worker.close()  # waits for the three callbacks, which can still publish
        await asyncio.wait_for(results.wait(), 5)
        assert forwarded == [b"A", b"B", b"C"]

        stuck = create_nats_client(nats_server.url)
        await stuck.connect()
        blocked = asyncio.Event()

        async def forever(msg: Incoming) -> None:
            blocked.set()
            await asyncio.sleep(3600)

        await stuck.subscribe("seed.stuck", callback=forever)
        await collector.publish(subject="seed.stuck", payload=b"x")
        await asyncio.wait_for(blocked.wait(), 5)
        await asyncio.wait_for(stuck.close(grace=0.2), 5)  # cancelled after the grace
        assert stuck.url is None
        with pytest.raises(TransportClosed):
            await stuck.publish(subject="seed.x", payload=b"closed")


@pytest.mark.anyio
async def test_a_callback_may_close_its_own_client(nats_server: NatsServer) -> None:
    client = create_nats_client(nats_server.url)
    await client.connect()
    closed = asyncio.Event()

    async def stop(msg: Incoming) -> None:
        await client.close()  # must not wait for this very callback
        closed.set()

    await client.subscribe("seed.stop", callback=stop)
    await client.publish(subject="seed.stop", payload=b"now")
    await asyncio.wait_for(closed.wait(), 5)
    assert client.url is None


def test_the_codec_manager_without_an_argument_follows_codec_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEC_TYPE", "cbor")
    assert create_codec_manager().codec_type == "cbor"
    monkeypatch.setenv("CODEC_TYPE", "yaml")
    with pytest.raises(ConfigError, match="CODEC_TYPE='yaml'"):
        create_codec_manager()
    assert create_codec_manager("msgpack").codec_type == "msgpack"  # an argument wins


@pytest.mark.anyio
async def test_enable_codec_false_sends_bytes_only(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_CODEC", "false")
    got: list[Incoming] = []
    async with create_nats_client(nats_server.url) as client:
        await client.subscribe("seed.raw", callback=got.append)
        with pytest.raises(EncodeError, match="ENABLE_CODEC=false"):
            await client.publish(subject="seed.raw", payload={"n": 1})
        await client.publish(subject="seed.raw", payload=b"as is")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
    assert [m.data for m in got] == [b"as is"]
    assert not (got[0].headers or {}).get("Content-Type")


@pytest.mark.anyio
async def test_the_seed_client_carries_the_active_spans_context(nats_server: NatsServer) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("seed-test")
    got: list[Incoming] = []
    async with create_nats_client(nats_server.url) as client:
        await client.subscribe("seed.traced", callback=got.append)
        with tracer.start_as_current_span("work") as span:
            await client.publish(subject="seed.traced", payload={"n": 1})
        await client.publish(subject="seed.traced", payload=b"outside any span")
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.02)
    trace_id = format(span.get_span_context().trace_id, "032x")
    span_id = format(span.get_span_context().span_id, "016x")
    assert got[0].headers is not None
    assert got[0].headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert "traceparent" not in (got[1].headers or {})
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_telemetry_setup_says_when_nothing_exports_or_the_port_is_grpcs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from motadata_actors.telemetry import setup

    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)
    setup(set_global=False)
    assert "no spans are exported" in caplog.text
    caplog.clear()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    import importlib.util

    if importlib.util.find_spec("opentelemetry.exporter") is not None:
        setup(set_global=False)
    else:  # without the 'otlp' extra (not part of 'dev') it says which to install
        with pytest.raises(ConfigError, match=r"motadata-actors\[otlp\]"):
            setup(set_global=False)
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in caplog.text
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='thrift'"):
        setup(set_global=False)
