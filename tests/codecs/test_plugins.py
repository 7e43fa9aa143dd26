"""Codec plug-ins: registered explicitly or by entry point, used by name and by Content-Type."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from motadata_actors import Actor, ActorSystem, CodecError, ConfigError, Context, Settings
from motadata_actors.codecs import (
    Codec,
    Codecs,
    JsonCodec,
    Limits,
    TypeRegistry,
    codec_names,
    register_codec,
)
from motadata_actors.mailbox import CONTENT_TYPE, InProcessTransport, NatsServer, Transport

from ..conftest import connect
from .messages import Mood, Point, Task, registry


class ReversedJson:
    """A small custom codec: JSON with its bytes reversed, which no built-in codec reads."""

    name = "revjson"
    content_type = "application/x-reversed-json"

    def __init__(self, registry: TypeRegistry, limits: Limits) -> None:
        self.registry = registry
        self.limits = limits
        self._json = JsonCodec(registry, limits)  # the value model's checks come with it

    def encode(self, obj: object) -> bytes:
        return self._json.encode(obj)[::-1]

    def encode_inline(self, obj: object) -> bytes:
        return self._json.encode_inline(obj)[::-1]

    def decode(self, data: bytes, cls: type[Any] | None = None) -> Any:
        return self._json.decode(data[::-1], cls)


assert register_codec(ReversedJson) is ReversedJson  # usable as a class decorator


class ReversedJsonToo(ReversedJson):
    name = "revjson-fn"
    content_type = "application/x-reversed-json-fn"


def reversed_json_factory(registry: TypeRegistry, limits: Limits) -> Codec:
    """A factory that is not a class: it is registered with name= and content_type=."""
    return ReversedJsonToo(registry, limits)


register_codec(
    reversed_json_factory, name="revjson-fn", content_type="application/x-reversed-json-fn"
)

TASK = Task(title="t", priority=2, blob=b"\x00", where=Point(1.0, 2.0), mood=Mood.BUSY)


def test_a_registered_codec_is_found_by_name_and_by_content_type() -> None:
    codecs = Codecs("revjson", registry=registry)
    codec = codecs.default
    assert isinstance(codec, ReversedJson)
    data = codec.encode(TASK)
    assert data.endswith(b"{") and codec.decode(data, Task) == TASK
    assert codecs.named("revjson") is codec
    for header in ("application/x-reversed-json", "Application/X-Reversed-JSON; charset=utf-8"):
        assert codecs.for_content_type(header) is codec
    assert codecs.for_content_type("application/json").name == "json"  # built-ins stay
    fn = Codecs(registry=registry).for_content_type("application/x-reversed-json-fn")
    assert fn.name == "revjson-fn" and fn.decode(fn.encode([1, "a"])) == [1, "a"]
    assert {"revjson", "revjson-fn", "avro"} <= set(codec_names())
    assert codec_names()[:4] == ("json", "msgpack", "cbor", "protobuf")


def test_registering_the_same_factory_again_changes_nothing() -> None:
    register_codec(ReversedJson)
    register_codec(ReversedJson, name="revjson", content_type="application/x-reversed-json")
    assert codec_names().count("revjson") == 1


class NoDecode:
    name = "nodecode"
    content_type = "application/x-nodecode"

    def encode(self, obj: object) -> bytes:
        return b""

    def encode_inline(self, obj: object) -> bytes:
        return b""


class Imposter(ReversedJson):
    name = "imposter"
    content_type = "application/x-imposter"


def made(codec: object) -> Any:
    return lambda registry, limits: codec


@pytest.mark.parametrize(
    ("factory", "kwargs", "error"),
    [
        (JsonCodec, {}, "belongs to the built-in codec 'json'"),
        (ReversedJson, {"name": "json"}, "contradicts the codec's own name"),
        (made(None), {"name": "cbor", "content_type": "application/x-c"}, "built-in codec 'cbor'"),
        (made(None), {"name": "x", "content_type": "application/x-protobuf"}, "'protobuf'"),
        (made(None), {"name": "x", "content_type": "application/avro"}, "codec 'avro'"),
        (made(None), {"name": "revjson", "content_type": "application/x-o"}, "taken by codec"),
        (made(None), {"name": "other", "content_type": "application/x-reversed-json"}, "taken"),
        (made(None), {"content_type": "application/x-y"}, "pass name="),
        (made(None), {"name": "noct"}, "pass content_type="),
        (object(), {}, "is not a codec factory"),
        ("revjson", {}, "is not a codec factory"),
        (NoDecode, {}, "it lacks decode"),
    ],
)
def test_clashes_and_non_codecs_are_refused(factory: Any, kwargs: Any, error: str) -> None:
    with pytest.raises(CodecError, match=error):
        register_codec(factory, **kwargs)


@pytest.mark.parametrize("name", ["Rev", "1rev", "", "r" * 33, "a.b", "a b", "ü"])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(CodecError, match="invalid codec name"):
        register_codec(made(None), name=name, content_type="application/x-fine")


@pytest.mark.parametrize(
    "content_type",
    [
        "json",
        "application/json; charset=utf-8",
        "Application/X-Upper",
        "application/x y",
        "application/",
        "/x",
        "",
        "application/x\r\n",
        "a/" + "b" * 200,
    ],
)
def test_malformed_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(CodecError, match="invalid content type"):
        register_codec(made(None), name="fine", content_type=content_type)


def needs_licence(registry: TypeRegistry, limits: Limits) -> Codec:
    raise RuntimeError("no licence")


# Registered without complaint (a factory is called only when its codec is first used).
register_codec(made(object()), name="nothing", content_type="application/x-nothing")
register_codec(made(Imposter(registry, Limits())), name="alias", content_type="application/x-a")
register_codec(needs_licence, name="needs-licence", content_type="application/x-licensed")


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("nothing", "made object, which is not a codec: it lacks name, content_type, registry"),
        ("alias", "made a codec that calls itself 'imposter' .*, not 'alias'"),
    ],
)
def test_a_factory_that_makes_no_codec_fails_when_used(name: str, error: str) -> None:
    with pytest.raises(CodecError, match=error):
        Codecs(name)


def test_a_factory_that_raises_fails_when_used_and_names_the_plug_in() -> None:
    codecs = Codecs()  # built-ins do not start plug-ins
    with pytest.raises(CodecError, match=r"'needs-licence' .* failed to start: RuntimeError: no"):
        codecs.for_content_type("application/x-licensed")


def test_unknown_names_list_the_plug_ins_too() -> None:
    with pytest.raises(CodecError, match=r"unknown codec 'yaml'; available: json, .*revjson"):
        Codecs("yaml")
    with pytest.raises(CodecError, match="unsupported Content-Type 'text/yaml'"):
        Codecs().for_content_type("text/yaml")


def test_codec_type_accepts_plug_in_names() -> None:
    assert Settings.from_env({"CODEC_TYPE": " RevJSON "}).codec == "revjson"
    assert Settings.from_env({"CODEC_TYPE": "avro"}).codec == "avro"
    with pytest.raises(ConfigError, match=r"CODEC_TYPE='yaml': unknown codec .*avro.*revjson"):
        Settings.from_env({"CODEC_TYPE": "yaml"})


# -- through an ActorSystem, on both transports ------------------------------------------


class Mirror(Actor):
    """Answers with what it got and the Content-Type it came in; remembers tells."""

    def __init__(self) -> None:
        self.told: list[str] = []

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        if msg == "told?":
            return self.told
        if isinstance(msg, str) and msg.startswith("tell"):
            self.told.append(ctx.headers[CONTENT_TYPE])
            return None
        return [ctx.headers[CONTENT_TYPE], msg]


@contextlib.asynccontextmanager
async def speaking(
    transport: str, server: NatsServer, tenant: str, codec: str
) -> AsyncIterator[ActorSystem]:
    """A system of ``tenant`` sending with ``codec``, on ``transport``."""
    if transport == "nats":
        bus: Transport = await connect(server)
        settings = Settings(codec=codec)
    else:
        bus, settings = InProcessTransport(), Settings(codec=codec, enable_nats=False)
    async with ActorSystem(
        tenant, transport=bus, settings=settings, registry=registry, handle_signals=False
    ) as system:
        yield system


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["inprocess", "nats"])
async def test_a_plug_in_codec_as_the_default_and_per_message(
    transport: str, nats_server: NatsServer, tenant: str
) -> None:
    async with speaking(transport, nats_server, tenant, "revjson") as system:
        await system.spawn(Mirror, name="mirror")
        ref = system.ref("mirror")
        # The default: the plug-in's Content-Type on the wire, and the reply in it too.
        assert await ref.ask(TASK, timeout=5) == ["application/x-reversed-json", TASK]
        # Per message, another plug-in and back to a built-in.
        reply = await ref.ask({"n": [1, TASK]}, codec="revjson-fn", timeout=5)
        assert reply == ["application/x-reversed-json-fn", {"n": [1, TASK]}]
        assert (await ref.ask("x", codec="cbor", timeout=5))[0] == "application/cbor"
        await ref.tell("tell-1", codec="revjson-fn")
        await ref.tell("tell-2")
        assert await ref.ask("told?", timeout=5) == [
            "application/x-reversed-json-fn",
            "application/x-reversed-json",
        ]
        with pytest.raises(CodecError, match=r"unknown codec 'yaml'; available: .*revjson"):
            await ref.ask("x", codec="yaml", timeout=5)


@pytest.mark.anyio
async def test_a_json_system_reads_a_plug_in_codec_by_content_type_over_nats(
    nats_server: NatsServer, tenant: str
) -> None:
    async with (
        speaking("nats", nats_server, tenant, "json") as serving,
        speaking("nats", nats_server, tenant, "revjson") as asking,
    ):
        await serving.spawn(Mirror, name="mirror")
        assert await asking.ref("mirror").ask(TASK, timeout=5) == [
            "application/x-reversed-json",
            TASK,
        ]


@pytest.mark.anyio
async def test_an_unknown_codec_type_stops_the_system_at_start() -> None:
    system = ActorSystem(
        "acme", transport=InProcessTransport(), settings=Settings(codec="nope", enable_nats=False)
    )
    with pytest.raises(ConfigError, match=r"CODEC_TYPE='nope': unknown codec .*revjson"):
        async with system:
            pass


# -- entry points, for real: a distribution on sys.path, in a fresh process --------------

PLUGIN = """
from motadata_actors.codecs import JsonCodec


class FakeCodec:
    name = "fake"
    content_type = "application/x-fake"

    def __init__(self, registry, limits):
        self.registry, self.limits = registry, limits
        self._json = JsonCodec(registry, limits)

    def encode(self, obj):
        return b"FAKE" + self._json.encode(obj)

    def encode_inline(self, obj):
        return b"FAKE" + self._json.encode_inline(obj)

    def decode(self, data, cls=None):
        return self._json.decode(data.removeprefix(b"FAKE"), cls)


class Impostor(FakeCodec):
    name = "json"
    content_type = "application/x-impostor"
"""

ENTRY_POINTS = """
[motadata_actors.codecs]
fake = fakeplug:FakeCodec
broken = fakeplug_missing:Codec
misnamed = fakeplug:FakeCodec
json = fakeplug:Impostor
"""

PROBE = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="LOG %(name)s %(message)s")
from motadata_actors import ConfigError, Settings
from motadata_actors.codecs import CodecError, Codecs, codec_names
from motadata_actors.codecs._plugins import _PLUGINS

codecs = Codecs("msgpack")
codecs.named("json"), codecs.for_content_type("application/cbor")
assert "fakeplug" not in sys.modules and not _PLUGINS._discovered, "read too early"
print("names", ",".join(codec_names()))
fake = Codecs("fake").default
assert fake.encode({"a": 1}) == b'FAKE{"a":1}'
assert codecs.for_content_type("application/x-fake").decode(b'FAKE{"a":1}') == {"a": 1}
assert Codecs("json").default.content_type == "application/json"
for name in ("broken", "misnamed"):
    try:
        Codecs(name)
    except CodecError as exc:
        print("error", exc)
try:
    Settings.from_env({"CODEC_TYPE": "broken"})
except ConfigError as exc:
    print("config", exc)
"""


def test_entry_points_are_discovered_once_lazily_and_broken_ones_are_named(
    tmp_path: Path,
) -> None:
    (tmp_path / "fakeplug.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "fakeplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    names = out[0].removeprefix("names ").split(",")
    assert names[:4] == ["json", "msgpack", "cbor", "protobuf"]
    assert "fake" in names and "avro" in names  # avro: our own entry point
    assert "broken" not in names and "misnamed" not in names
    assert out[1] == (
        "error codec plug-in 'broken' is unavailable: entry point broken = "
        "fakeplug_missing:Codec of fakeplug 1.0 failed to load: ModuleNotFoundError: No module "
        "named 'fakeplug_missing'"
    )
    assert out[2] == (
        "error codec plug-in 'misnamed' is unavailable: entry point misnamed = "
        "fakeplug:FakeCodec of fakeplug 1.0 failed to load: CodecError: the entry point is "
        "named 'misnamed', the codec 'fake'"
    )
    assert out[3].startswith("config CODEC_TYPE='broken': codec plug-in 'broken' is unavail")
    # Each skipped entry point is logged once, as a warning naming it.
    logged = [line for line in run.stderr.splitlines() if line.startswith("LOG ")]
    assert len(logged) == 3, run.stderr
    assert all(
        line.startswith("LOG motadata_actors.codecs codec plug-in skipped") for line in logged
    )
    assert any("json = fakeplug:Impostor of fakeplug 1.0" in line for line in logged)
    assert any("belongs to the built-in codec 'json'" in line for line in logged)


def test_a_registration_meets_installed_plug_ins_whatever_the_order() -> None:
    """register_codec reads the entry points first: a clash with one is found at once."""
    probe = (
        "from motadata_actors.codecs import CodecError, register_codec\n"
        "try:\n"
        "    register_codec(print, name='mine', content_type='application/avro')\n"
        "except CodecError as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "'application/avro' is already taken by codec 'avro' (entry point avro = " in run.stdout
