"""In process, immutable values are delivered as themselves; everything else is copied.

A value is shared only when the codec would give back an equal value of the same type:
a str, bytes, a number, a frozen typed message whose fields are such values, tuples of
them or frozen messages. Whatever else (lists, dicts, a mutable class, an int in a float
field, a bare tuple that the wire turns into a list) still goes through the codec, so the
receiver can never change what the sender holds, and in-process behaves as over NATS.
"""

from __future__ import annotations

import enum
import os
from typing import Any

import anyio
import attrs
import pytest

from motadata_actors import (
    Actor,
    ActorSystem,
    Context,
    DecodeError,
    EncodeError,
    MessageTooLarge,
    NoResponders,
    Settings,
)
from motadata_actors.codecs import Codecs, KeyRing, Limits, TypeRegistry, field, message
from motadata_actors.mailbox import InProcessTransport
from motadata_actors.mailbox._envelope import Sealed, SharedMessage, seal

pytestmark = pytest.mark.anyio


class Mood(enum.Enum):
    CALM = "calm"
    LOUD = "loud"


@message("tests.shared.note.v1")
class Note:
    text: str = field(proto=1)
    tags: tuple[str, ...] = field(proto=2, default=())
    mood: Mood = field(proto=3, default=Mood.CALM)
    score: float | None = field(proto=4, default=None)


@message("tests.shared.envelope.v1")
class Envelope:
    note: Note = field(proto=1)
    raw: bytes = field(proto=2, default=b"")


@message("tests.shared.basket.v1")
class Basket:
    items: list[str] = field(proto=1)  # a list: mutable, so copied


@message("tests.shared.mutable.v1")
@attrs.define
class Mutable:
    text: str


@message("tests.shared.cached.v1")
class Cached:
    """Frozen, but with state the wire does not carry: never shared."""

    text: str
    seen: list[str] = attrs.field(init=False, factory=list)


@message("tests.shared.old.v1")
class Old:
    text: str


@message("tests.shared.new.v1", upgrade={Old: lambda old: New(old.text, upgraded=True)})
class New:
    text: str
    upgraded: bool = False


class Keeper(Actor):
    """Keeps what it is told; answers an ask with what it was asked (or ``reply``)."""

    def __init__(self, reply: object = None) -> None:
        self.seen: list[Any] = []
        self.reply = reply

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        self.seen.append(msg)
        return msg if self.reply is None else self.reply


async def told(system: ActorSystem, value: object) -> Any:
    """What a handler receives when ``value`` is told to it in process."""
    keeper = Keeper()
    ref = await system.spawn(lambda: keeper, name=f"keeper-{id(value)}")
    await ref.tell(value)
    with anyio.fail_after(5):
        while not keeper.seen:
            await anyio.sleep(0.005)
    await system.stop(ref)
    return keeper.seen[0]


IMMUTABLE = [
    "a str",
    "",
    "größe ✓ 日本",
    b"\x00bytes",
    42,
    -(2**63),
    3.5,
    True,
    None,
    Note("hi", ("a", "b"), Mood.LOUD, 0.5),
    Envelope(Note("inner"), b"raw"),
]


@pytest.mark.parametrize("value", IMMUTABLE, ids=repr)
async def test_an_immutable_value_arrives_as_the_very_object(
    system: ActorSystem, value: object
) -> None:
    received = await told(system, value)
    assert received is value


MUTABLE = [
    ["a", "list"],
    {"a": "dict"},
    ("a", "tuple"),  # the wire turns a bare tuple into a list: so does the copy
    Basket(["x"]),
    Mutable("set me"),
    Note("a float field given an int", score=2),  # type: ignore[arg-type]
    Cached("a field outside __init__"),
    2**64 - 1,  # outside the value model: refused below, not shared
    "\ud800",  # a lone surrogate: no UTF-8, refused below
]


@pytest.mark.parametrize("value", MUTABLE[:-2], ids=repr)
async def test_anything_else_arrives_as_a_copy(system: ActorSystem, value: object) -> None:
    received = await told(system, value)
    assert received is not value
    if isinstance(value, tuple):
        assert received == list(value)
    elif isinstance(value, Note):
        assert received.score == 2.0 and type(received.score) is float
    else:
        assert received == value


async def test_a_copy_cannot_change_what_the_sender_holds(system: ActorSystem) -> None:
    basket = Basket(["x"])
    received = await told(system, basket)
    received.items.append("changed by the receiver")
    assert basket.items == ["x"]
    cached = Cached("x")
    received = await told(system, cached)
    received.seen.append("changed by the receiver")
    assert cached.seen == []


async def test_values_outside_the_model_are_still_refused_at_the_sender(
    system: ActorSystem,
) -> None:
    ref = await system.spawn(Keeper, name="keeper")
    with pytest.raises(Exception, match="64-bit"):
        await ref.tell(2**64 - 1)
    with pytest.raises(Exception, match="non-finite"):
        await ref.tell(float("nan"))
    # As over NATS: a str with no UTF-8 is the sender's EncodeError, not a crash at the
    # receiver when its bytes are first needed.
    with pytest.raises(EncodeError, match="surrogates"):
        await ref.tell("\ud800")
    with pytest.raises(EncodeError, match="surrogates"):
        await ref.ask(Note("\ud800"), timeout=5)


async def test_an_upgraded_type_is_decoded_not_shared(system: ActorSystem) -> None:
    old = Old("from before")
    received = await told(system, old)
    assert received == New("from before", upgraded=True)


async def test_an_ask_and_its_reply_are_shared_both_ways(system: ActorSystem) -> None:
    answer = Note("the answer", ("x",))
    keeper = Keeper(reply=answer)
    ref = await system.spawn(lambda: keeper, name="answering")
    question = Envelope(Note("the question"))
    assert await ref.ask(question, timeout=5) is answer
    assert keeper.seen[0] is question
    keeper.reply = {"a": ["mutable", "reply"]}
    reply = await ref.ask("again", timeout=5)
    assert reply == keeper.reply and reply is not keeper.reply


async def test_a_large_str_is_copied_and_a_too_large_one_refused(system: ActorSystem) -> None:
    # Its bound (six bytes a character, for JSON's worst escape) passes the limit, its
    # bytes do not: measured by encoding, then delivered as a copy.
    text = "x" * (300 * 1024)
    received = await told(system, text)
    assert received == text and received is not text
    ref = await system.spawn(Keeper, name="small")
    with pytest.raises(MessageTooLarge):
        await ref.tell("x" * (2 * 1024 * 1024))


async def test_a_dead_lettered_shared_ask_keeps_its_encoded_body(system: ActorSystem) -> None:
    with pytest.raises(NoResponders):
        await system.ref("nobody").ask(Note("lost"), timeout=1, attempts=1)
    with anyio.fail_after(5):
        while not (letters := await system.dead_letters()):
            await anyio.sleep(0.01)
    assert letters[0].data == system.codecs.default.encode(Note("lost"))
    assert letters[0].headers["Sdk-Message-Type"] == "tests.shared.note.v1"


async def test_a_receiver_with_stricter_limits_checks_a_shared_value_itself(tenant: str) -> None:
    # Two systems on one transport: the replier's limits let its answer through, the
    # asker's do not, so the asker decodes (and refuses) it instead of taking it as is.
    transport = InProcessTransport()
    strict = Settings(enable_nats=False, max_length=5)
    answer = Note("x", tuple("abcdef"))
    keeper = Keeper(reply=answer)
    async with (
        ActorSystem(tenant, transport=transport, settings=strict) as asking,
        ActorSystem(tenant, transport=transport, settings=Settings(enable_nats=False)) as lenient,
    ):
        await lenient.spawn(lambda: keeper, name="lenient")
        with pytest.raises(DecodeError, match="6 items exceeds 5"):
            await asking.ref("lenient").ask("question", timeout=5, attempts=1)
        keeper.reply = short = Note("x", tuple("abcde"))
        assert await asking.ref("lenient").ask("again", timeout=5) == short  # within both


async def test_with_a_key_ring_nothing_is_shared(tenant: str) -> None:
    keys = KeyRing({"k1": os.urandom(32)})
    async with ActorSystem(
        tenant, transport=InProcessTransport(), keys=keys, settings=Settings(enable_nats=False)
    ) as system:
        note = Note("sealed")
        received = await told(system, note)
        assert received == note and received is not note


# -- the codec's and the envelope's side ------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "msgpack", "cbor"])
@pytest.mark.parametrize(
    "value",
    [
        "\x00\x01" * 50,  # JSON escapes each as six bytes
        "é漢😀" * 20,
        b"\xff" * 99,
        2**63 - 1,
        -1.2345678901234567e-308,
        Note("n" * 10, ("t",) * 5, Mood.LOUD, -0.0),
        Envelope(Note("\x1f"), b"\x00" * 10),
    ],
    ids=repr,
)
def test_the_bound_is_never_below_the_encoded_size(name: str, value: object) -> None:
    codec: Any = Codecs(name).default
    bound = codec.shared_size(value)
    assert 0 <= len(codec.encode(value)) <= bound


def test_what_is_never_shared() -> None:
    codec: Any = Codecs().default
    for value in MUTABLE:
        assert codec.shared_size(value) == -1, value
    assert Codecs("protobuf").default.shared_size("x") == -1  # type: ignore[attr-defined]
    # Avro has rules of its own (Avro names, say), and a plug-in codec may too: only the
    # codecs that say they accept every value of the model share.
    registry = TypeRegistry()
    gross = message("tests.shared.gross.v1", registry=registry)(
        attrs.make_class("Gross", {"größe": attrs.field(type=str)})
    )
    avro = Codecs("avro", registry=registry).default
    assert avro.shared_size("x") == -1  # type: ignore[attr-defined]
    with pytest.raises(EncodeError, match="Avro name"):
        seal(gross("x"), avro, share=10_000)
    deep = Codecs(limits=Limits(max_length=2)).default
    assert deep.shared_size(Note("x", ("a", "b", "c"))) == -1  # type: ignore[attr-defined]


def test_a_shared_message_makes_its_bytes_only_when_asked() -> None:
    codecs = Codecs()
    note = Note("hi")
    sealed = seal(note, codecs.default, share=1000)
    assert sealed.shared and sealed.data == b"" and sealed.value is note
    assert sealed.headers == {"Sdk-Message-Type": "tests.shared.note.v1"}
    assert sealed.encoded() == codecs.default.encode(note)
    delivered = SharedMessage("sdk.agent.a.b.t", "", sealed)
    assert delivered._data is None
    assert delivered.take(codecs) is note
    assert delivered.data == codecs.default.encode(note)
    # Too large for the limit, or headers of the sender's own: encoded as always.
    assert not seal(note, codecs.default, share=10).shared
    assert not seal(note, codecs.default, share=1000, extra={"X-Mine": "1"}).shared
    assert not isinstance(seal("x", codecs.default).value, str)


def test_another_registry_decodes_instead_of_sharing() -> None:
    elsewhere = Codecs(registry=TypeRegistry())
    sealed = seal(Note("hi"), Codecs().default, share=1000)
    with pytest.raises(Exception, match="unknown message type"):
        SharedMessage("s", "", sealed).take(elsewhere)
    assert isinstance(sealed, Sealed)
