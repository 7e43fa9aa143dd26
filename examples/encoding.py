"""Message encoding and decoding: typed messages, the four codecs, versions and typed errors.

What it shows, in four parts:

1. One typed message (``@message`` with a versioned wire name) encoded with each codec,
   JSON, MessagePack, CBOR and Protobuf: the headers that travel with it
   (``Content-Type``, ``Sdk-Message-Type``), its size, and that it decodes back equal.
   Protobuf needs a field number on every field (``field(proto=N)``); its ``.proto``
   source is generated from the class.
2. Versions side by side: a ``v1`` message arrives as ``v2`` through its upgrade, and
   unknown fields (from a newer sender) are ignored.
3. What bad input produces: typed errors (``DecodeError``, ``EncodeError``, ``CodecError``)
   that name the codec, the message type and the path to the bad value.
4. Over NATS: an ``archive`` agent whose own codec is JSON receives the same message from
   clients using MessagePack, CBOR and Protobuf (it decodes by ``Content-Type``), a v1
   message from an old client, a type it does not know (the asker gets a ``CodecError``)
   and a malformed body from a foreign client (an error reply). It keeps running, and the
   refused messages are dead-lettered.

Run it with ``python examples/encoding.py``. It starts an embedded nats-server on a free
loopback port and stops it at the end: nothing else to set up.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from motadata_actors import (
    Actor,
    ActorSystem,
    CodecError,
    Context,
    DecodeError,
    EncodeError,
    Settings,
)
from motadata_actors.codecs import CODEC_NAMES, Codecs, TypeRegistry, field, message
from motadata_actors.mailbox import (
    CONTENT_TYPE,
    MESSAGE_TYPE,
    TIMEOUT_MS,
    agent_subject,
    decode_body,
    decode_error,
    encode_body,
)

TENANT = "acme"


# -- typed messages ------------------------------------------------------------------------
# @message makes each class a frozen attrs class registered under its wire name. The
# field numbers (proto=N) are only needed by the protobuf codec; the others ignore them.


class Stance(enum.Enum):
    """Whether a source supports or refutes a finding (enums travel as their values)."""

    SUPPORTS = "supports"
    REFUTES = "refutes"


@message("research.source.v1")
class Source:
    """A source cited by a finding."""

    url: str = field(proto=1)
    stance: Stance = field(proto=2, default=Stance.SUPPORTS)


@message("research.finding.v1")
class FindingV1:
    """The first version of a finding, still sent by old clients."""

    question: str = field(proto=1)
    summary: str = field(proto=2)


@message(
    "research.finding.v2",
    # Every decoded v1 finding arrives as a v2 one (Finding is looked up when called).
    upgrade={FindingV1: lambda old: Finding(question=old.question, summary=old.summary)},
)
class Finding:
    """A research finding: nested messages, a list, a map, a float and bytes."""

    question: str = field(proto=1)
    summary: str = field(proto=2)
    confidence: float = field(proto=3, default=0.5)
    sources: list[Source] = field(proto=4, factory=list)
    tags: dict[str, int] = field(proto=5, factory=dict)
    chart: bytes = field(proto=6, default=b"")


FINDING = Finding(
    question="Do actors simplify agent systems?",
    summary="Mostly: one mailbox per agent removes shared state.",
    confidence=0.8,
    sources=[Source(url="https://example.org/actors"), Source("https://example.org/locks")],
    tags={"citations": 2, "year": 2024},
    chart=b"\x89PNG\r\n\x1a\n",
)


@message("research.unnumbered.v1")
class Unnumbered:
    """A message without field numbers: fine for JSON, MessagePack and CBOR, not protobuf."""

    note: str


def preview(data: bytes) -> str:
    """The first bytes of a body: as text for JSON, in hex for the binary codecs."""
    if data.startswith(b"{"):
        return data[:32].decode() + "..."
    return data[:12].hex(" ") + " ..."


def show_codecs() -> None:
    """Part 1: the same message through every codec."""
    print("1. One message, four codecs")
    codecs = Codecs()  # every codec, sharing the process-wide registry of @message classes
    for name in CODEC_NAMES:
        codec = codecs.named(name)
        headers: dict[str, str] = {}
        # encode_body is what a sender does: the body, plus the headers naming its format.
        body = encode_body(FINDING, codec, headers)
        # decode_body is what a receiver does: pick the codec by Content-Type, the class
        # by Sdk-Message-Type, decode.
        same = decode_body(body, headers, codecs) == FINDING
        # JSON, the default, is sent without a Content-Type: its absence means JSON.
        sent = headers.get(CONTENT_TYPE, "(none: JSON)")
        print(
            f"   {name:<8} Content-Type: {sent:<22} {len(body):>4} bytes"
            f"  round trip equal: {same}  {preview(body)}"
        )
    print(f"   every codec also sends {MESSAGE_TYPE}: research.finding.v2")
    proto = codecs.named("protobuf").proto_files(Finding)["sdk/research/finding_v2.proto"]
    print("   the .proto the protobuf codec generated for Finding (for protoc, any language):")
    for line in proto.splitlines():
        if line.strip() and not line.startswith("//"):
            print(f"     {line}")


def show_versions() -> None:
    """Part 2: v1 arrives as v2; unknown fields are ignored."""
    print("\n2. Versions")
    codecs = Codecs()
    headers: dict[str, str] = {}
    old = encode_body(FindingV1(question="Is NATS fast?", summary="Yes."), codecs.default, headers)
    upgraded = decode_body(old, headers, codecs)
    print(f"   an old sender's {headers[MESSAGE_TYPE]} arrives as {upgraded}")
    newer = b'{"question": "Q", "summary": "S", "reviewer": "bob"}'  # "reviewer": a v3 field?
    print(f"   unknown fields are ignored: {codecs.default.decode(newer, Finding)}")


def show_errors() -> None:
    """Part 3: what bad input produces, as typed errors."""
    print("\n3. Typed errors")
    codecs = Codecs()
    json_codec = codecs.named("json")
    bad_bodies = {
        "malformed JSON": (json_codec, b'{"question": "Q", '),
        "wrong field type": (json_codec, b'{"question": 42, "summary": "S"}'),
        "missing field": (json_codec, b'{"summary": "S"}'),
        "corrupt protobuf": (codecs.named("protobuf"), b"\xff\xff\xff"),
    }
    for what, (codec, body) in bad_bodies.items():
        try:
            codec.decode(body, Finding)
        except DecodeError as exc:  # .codec, .wire_name and .reason say what went wrong
            print(f"   {what:<17} DecodeError(codec={exc.codec!r}): {exc.reason}")
    unknown = {CONTENT_TYPE: "application/json", MESSAGE_TYPE: "research.verdict.v1"}
    try:
        decode_body(b"{}", unknown, codecs)
    except CodecError as exc:
        print(f"   {'unknown type':<17} CodecError: {exc}")
    try:
        decode_body(b"<finding/>", {CONTENT_TYPE: "application/xml"}, codecs)
    except CodecError as exc:
        print(f"   {'unknown format':<17} CodecError: {exc}")
    unsendable: dict[str, tuple[str, object]] = {
        "NaN": ("json", {"score": float("nan")}),
        "a set": ("msgpack", {"tags": {"a", "b"}}),
        "no field numbers": ("protobuf", Unnumbered(note="hi")),
    }
    for what, (name, value) in unsendable.items():
        try:
            codecs.named(name).encode(value)
        except EncodeError as exc:
            print(f"   {what:<17} EncodeError: {exc}")


# -- over NATS ------------------------------------------------------------------------------

# A newer client knows a message type the archive's release does not. Registering it in a
# registry of its own keeps it out of the process-wide one the archive uses.
NEWER_RELEASE = TypeRegistry()


@message("research.review.v1", registry=NEWER_RELEASE)
class Review:
    """A message type only the newer client knows."""

    verdict: str


class Archive(Actor):
    """Stores findings, whatever codec they came in; its own replies are in its codec."""

    async def on_message(self, msg: Any, ctx: Context) -> str:
        """Store a finding; say which format it came in."""
        if not isinstance(msg, Finding):
            raise TypeError(f"archive does not store {type(msg).__name__}")
        fmt = ctx.content_type
        # The wire name it was sent as, and the class it arrived as (v1 is upgraded).
        sent_as = ctx.headers.get(MESSAGE_TYPE)
        print(f"   archive <- {ctx.sender:<15} {fmt:<22} {sent_as} as {type(msg).__name__}")
        return f"stored (it came as {fmt})"


async def show_actors() -> None:
    """Part 4: an actor receives messages in codecs other than its own."""
    print("\n4. Over NATS: the archive's codec is json; its clients use others")
    # settings= instead of the environment: this system sends JSON, on an embedded server.
    async with ActorSystem(TENANT, settings=Settings(codec="json")) as service:
        await service.spawn(Archive, name="archive")
        assert service.embedded_server is not None
        url = service.embedded_server.url

        for codec in ("msgpack", "cbor", "protobuf"):
            # Another service (here in the same process) on the same server, whose
            # CODEC_TYPE is `codec`: everything it sends is encoded so.
            settings = Settings(codec=codec, nats_urls=(url,))
            async with ActorSystem(TENANT, settings=settings, client_id=f"{codec}-client") as c:
                receipt = await c.ref("archive").ask(FINDING, timeout=2.0)
                print(f"   {codec}-client got: {receipt!r}")

        old_client = Settings(codec="cbor", nats_urls=(url,))
        async with ActorSystem(TENANT, settings=old_client, client_id="old-client") as c:
            v1 = FindingV1(question="Is the v1 format still read?", summary="Yes")
            print(f"   old-client got: {await c.ref('archive').ask(v1, timeout=2.0)!r}")

        newer = Settings(codec="json", nats_urls=(url,))
        async with ActorSystem(
            TENANT, settings=newer, registry=NEWER_RELEASE, client_id="newer-client"
        ) as c:
            try:
                await c.ref("archive").ask(Review(verdict="accept"), timeout=2.0)
            except CodecError as exc:  # the archive refused it before any handler ran
                print(f"   newer-client: CodecError: {exc}")

            # A foreign client (any NATS library) sends bytes that are not JSON. The
            # transport is the raw NATS connection: no codec in the way.
            subject = agent_subject("foreign", "archive", TENANT)
            headers = {CONTENT_TYPE: "application/json", MESSAGE_TYPE: "research.finding.v2"}
            headers[TIMEOUT_MS] = "2000"
            reply = await c.transport.request(subject, b"{oops", headers=headers, timeout=2.0)
            kind, text, origin = decode_error(reply.data, reply.headers or {}, Codecs())
            print(f"   foreign client: error reply Sdk-Error={kind} (origin {origin}): {text}")

        # The archive is still there, and kept what it refused, with the reason.
        print(f"   archive still answers: {await service.ref('archive').ask(FINDING)!r}")
        for letter in await service.dead_letters():
            print(f"   dead letter #{letter.seq} on {letter.subject}: {letter.reason}")


def main() -> None:
    """Run the four parts."""
    show_codecs()
    show_versions()
    show_errors()
    asyncio.run(show_actors())


if __name__ == "__main__":
    main()
