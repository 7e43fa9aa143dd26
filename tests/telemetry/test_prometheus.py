"""The Prometheus scrape endpoint: real HTTP GETs after messages flowed."""

from __future__ import annotations

import logging
import os
import socket
import urllib.error
import urllib.request
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client.parser import text_string_to_metric_families

from motadata_actors import Actor, ActorSystem, Backoff, ConfigError, Context, Settings
from motadata_actors.codecs import Codecs
from motadata_actors.mailbox import NatsServer
from motadata_actors.telemetry import PrometheusEndpoint, setup

from ..conftest import system_on, wait_for

pytestmark = pytest.mark.anyio


def scrape(url: str) -> tuple[str, dict[str, list[tuple[str, dict[str, str], float]]]]:
    """GET ``url``: its content type, and each family's samples (name, labels, value)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    families = {
        f.name: [(s.name, dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }
    return content_type, families


def value(
    families: dict[str, list[tuple[str, dict[str, str], float]]], sample: str, **labels: str
) -> float:
    """The sum of the samples called ``sample`` whose labels include ``labels``."""
    found = [
        v
        for samples in families.values()
        for name, have, v in samples
        if name == sample and labels.items() <= have.items()
    ]
    assert found, f"no sample {sample} with {labels}"
    return sum(found)


class Echo(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return msg


class Crashy(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        raise RuntimeError(f"crashed on {msg}")


class Counter(Actor):
    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return [self.key, msg]


@pytest.mark.parametrize("transport", ["inprocess", "nats"])
async def test_a_scrape_after_messages_flowed_has_the_families_and_labels(
    transport: str, nats_server: NatsServer, tenant: str
) -> None:
    endpoint = PrometheusEndpoint(port=0)
    meters = MeterProvider(metric_readers=[endpoint.reader])
    json_codec, msgpack_codec = Codecs().named("json"), Codecs().named("msgpack")
    topics = ["tides", "moons", "stars"]
    try:
        async with system_on(transport, nats_server, tenant, meter_provider=meters) as system:
            echo = await system.spawn(Echo, name="echo")
            sup = await system.spawn_supervisor(name="w", backoff=Backoff(0, 0, jitter=0))
            crashy = await sup.spawn(Crashy, name="crashy")
            await system.spawn_keyed(Counter, kind="counter", idle_after=30)
            for topic in topics:
                assert await echo.ask(topic, timeout=5) == topic
            assert await echo.ask("waves", timeout=5, codec="msgpack") == "waves"
            await crashy.tell("boom")  # a crashed tell: a restart and a dead letter
            for key in ("k1", "k2"):
                assert await system.ref("counter", key=key).ask(1, timeout=5) == [key, 1]
            await wait_for(
                lambda: (
                    system.event_counts().get("restarted", 0) == 1
                    and system.event_counts().get("dead_letter", 0) == 1
                ),
                10,
                "the restart and the dead letter",
            )
            # A real GET, from another thread, as Prometheus would while the system runs.
            content_type, families = await anyio.to_thread.run_sync(scrape, endpoint.url)
    finally:
        await anyio.to_thread.run_sync(meters.shutdown)
    with pytest.raises(urllib.error.URLError):  # the server stopped with the provider
        await anyio.to_thread.run_sync(scrape, endpoint.url)

    assert content_type.startswith("text/plain")
    mine = {"sdk_tenant_id": tenant}
    echo_send = {**mine, "sdk_agent_to": "echo", "messaging_system": "nats",
                 "messaging_operation_name": "send"}  # fmt: skip
    echo_process = {**echo_send, "messaging_operation_name": "process"}
    # Messages and bytes, per tenant and agent: 4 asks to echo.
    bodies = [json_codec.encode(t) for t in topics] + [msgpack_codec.encode("waves")]
    assert value(families, "messaging_client_sent_messages_total", **echo_send) == 4
    assert value(families, "messaging_client_consumed_messages_total", **echo_process) == 4
    assert value(families, "sdk_client_sent_bytes_total", **echo_send) == sum(map(len, bodies))
    assert value(families, "sdk_client_consumed_bytes_total", **echo_process) == sum(
        map(len, bodies)
    )
    assert value(families, "messaging_process_duration_seconds_count", **echo_process) == 4
    assert 0 < value(families, "messaging_process_duration_seconds_sum", **echo_process) < 5
    # The conventions' buckets (seconds), not the SDK's default ones (0 to 10000).
    buckets = {
        labels["le"]
        for name, labels, _ in families["messaging_process_duration_seconds"]
        if name.endswith("_bucket")
    }
    assert {"0.005", "0.1", "10.0", "+Inf"} <= buckets
    assert value(families, "sdk_ask_duration_seconds_count", **mine, sdk_agent_to="echo") == 4
    # Codecs: the one msgpack ask was encoded by the client and decoded by echo, once each.
    msgpack = {**mine, "sdk_codec_name": "msgpack"}
    assert value(families, "sdk_codec_encode_duration_seconds_count", **msgpack) == 1
    assert value(families, "sdk_codec_decode_duration_seconds_count", **msgpack) == 1
    assert value(families, "sdk_codec_encode_size_bytes_sum", **msgpack) == len(bodies[-1])
    assert value(families, "sdk_codec_decode_size_bytes_sum", **msgpack) == len(bodies[-1])
    json_ = {**mine, "sdk_codec_name": "json"}
    # json: at least the 3 asks and their replies, each way, plus the keyed asks and replies
    assert value(families, "sdk_codec_encode_duration_seconds_count", **json_) >= 3 + 4 + 4
    assert value(families, "sdk_codec_decode_duration_seconds_count", **json_) >= 3 + 4 + 4
    assert 0 < value(families, "sdk_codec_decode_duration_seconds_sum", **json_) < 1
    # Supervision and keyed agents.
    assert value(families, "sdk_actor_restarts_total", **mine, sdk_agent_to="crashy") == 1
    assert value(families, "sdk_dead_letters_total", **mine, sdk_agent_to="crashy") == 1
    assert value(families, "sdk_keyed_activations_total", **mine, sdk_agent_to="counter") == 2
    for agent in ("echo", "crashy"):
        assert value(families, "sdk_mailbox_depth", **mine, sdk_agent_to=agent) == 0


@pytest.mark.parametrize("telemetry", ["off", "on, SDK_CODEC_METRICS=false"])
async def test_without_codec_metrics_the_codecs_are_bare(telemetry: str, tenant: str) -> None:
    meters = MeterProvider() if telemetry != "off" else None
    settings = Settings.from_env(
        {"ENABLE_NATS": "false", "SDK_CODEC_METRICS": "true" if meters is None else "false"}
    )
    try:
        async with ActorSystem(
            tenant, settings=settings, meter_provider=meters, handle_signals=False
        ) as system:
            assert type(system.codecs.default).__name__ == "JsonCodec"
            assert type(system.codecs.named("msgpack")).__name__ == "MsgpackCodec"
    finally:
        if meters is not None:
            meters.shutdown()


async def test_with_telemetry_on_every_codec_is_measured_once(tenant: str) -> None:
    meters = MeterProvider()
    try:
        async with ActorSystem(
            tenant, settings=Settings(enable_nats=False), meter_provider=meters,
            handle_signals=False,
        ) as system:  # fmt: skip
            codecs = system.codecs
            assert type(codecs.default).__name__ == "_TimedCodec"
            json_codec = codecs.named("json")
            assert codecs.for_content_type(None) is json_codec is codecs.default
            assert codecs.for_content_type("application/cbor") is codecs.named("cbor")
            assert json_codec.decode(json_codec.encode({"a": [1, 2]})) == {"a": [1, 2]}
            assert json_codec.registry is Codecs().registry  # the wrapped codec's own
    finally:
        meters.shutdown()


def test_setup_serves_prometheus_when_the_port_is_set(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    caplog.set_level(logging.INFO, logger="motadata_actors.telemetry")
    settings = Settings.from_env({"SDK_PROMETHEUS_PORT": "0"})
    _, meters = setup("scraped", set_global=False, settings=settings)
    try:
        url = next(
            r.args[0]  # type: ignore[index]
            for r in caplog.records
            if r.msg == "serving Prometheus metrics at %s"
        )
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        meters.get_meter("tests").create_counter("tests.requests", unit="{request}").add(2)
        _, families = scrape(url)
        assert value(families, "tests_requests_total") == 2
        assert value(families, "target_info", service_name="scraped") == 1
    finally:
        meters.shutdown()
    with pytest.raises(urllib.error.URLError):
        scrape(url)


def test_a_port_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*SDK_PROMETHEUS_PORT"):
            PrometheusEndpoint(port=port)


def test_settings_of_the_endpoint() -> None:
    defaults = Settings.from_env({})
    assert (defaults.prometheus_port, defaults.prometheus_host) == (None, "127.0.0.1")
    s = Settings.from_env({"SDK_PROMETHEUS_PORT": "9464", "SDK_PROMETHEUS_HOST": "0.0.0.0"})
    assert (s.prometheus_port, s.prometheus_host) == (9464, "0.0.0.0")
    assert Settings.from_env({"SDK_PROMETHEUS_PORT": " "}).prometheus_port is None
    for bad in ("http", "-1", "65536", "94.64"):
        with pytest.raises(ConfigError, match="SDK_PROMETHEUS_PORT"):
            Settings.from_env({"SDK_PROMETHEUS_PORT": bad})
