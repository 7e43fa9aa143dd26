"""``python -m motadata_actors dlq list | replay | drop``: a tenant's dead letters.

A letter leaves the store only once a live mailbox took its message: a durable agent's
stream stored it, or a core agent answered it. Anything else keeps the letter, says why,
and makes the command exit non-zero.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from motadata_actors._errors import ActorsError, CodecError, ConfigError
from motadata_actors._settings import Settings
from motadata_actors.actors._config import nats_transport
from motadata_actors.codecs import Codecs
from motadata_actors.mailbox import DeadLetter, NatsTransport, agent_subject, check_id
from motadata_actors.mailbox._envelope import Letter, Sealed, replayed

__all__ = ("drop_dead_letters", "list_dead_letters", "replay_dead_letters")

_BODY_SHOWN = 60


def _transport(settings: Settings, tenant: str) -> NatsTransport:
    if not settings.enable_nats:
        raise ConfigError(
            "dead letters are kept by JetStream: with ENABLE_NATS=false nothing outlives the "
            "process that dead-lettered it"
        )
    if not settings.nats_urls:
        raise ConfigError(
            "NATS_URL is not set: dead letters live on the server the actors use; set NATS_URL "
            "to it (an embedded server keeps nothing after its process ends)"
        )
    return nats_transport(settings, tenant, name="motadata-actors/dlq")


def _codecs(settings: Settings) -> Codecs:
    return Codecs(settings.codec)


def _body(letter: DeadLetter, codecs: Codecs) -> str:
    """The body for a person to read: decoded by its content type when it can be.

    Typed messages are shown as plain values (this process need not know their classes).
    """
    try:
        value = codecs.for_content_type(Letter.open(letter).content_type).decode(letter.data)
        text = repr(value)
    except CodecError:
        text = repr(letter.data)
    return text if len(text) <= _BODY_SHOWN else text[: _BODY_SHOWN - 3] + "..."


def _line(letter: DeadLetter, codecs: Codecs) -> str:
    when = datetime.fromtimestamp(letter.time, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    kind = Letter.open(letter).message_type or "-"
    return (
        f"{letter.seq:>6}  {when}  {letter.to:<16} {kind:<24} {letter.reason}  "
        f"{_body(letter, codecs)}"
    )


async def list_dead_letters(
    settings: Settings, tenant: str, limit: int, out: TextIO | None = None
) -> int:
    """Print the tenant's kept dead letters, bodies decoded; return how many."""
    check_id(tenant, "tenant")
    out = out if out is not None else sys.stdout
    codecs = _codecs(settings)
    transport = _transport(settings, tenant)
    await transport.start()
    try:
        letters = await transport.dead_letters.read(tenant, limit=limit)
    finally:
        await transport.aclose()
    print(f"{len(letters)} dead letter(s) of tenant {tenant!r}", file=out)
    if letters:
        print(f"{'seq':>6}  {'kept (UTC)':<19}  {'to':<16} {'type':<24} reason  body", file=out)
    for letter in letters:
        print(_line(letter, codecs), file=out)
    return len(letters)


async def _replay_one(
    transport: NatsTransport, tenant: str, letter: DeadLetter, timeout: float, codecs: Codecs
) -> str | None:
    """Resend one letter; None once a live mailbox took it, else why it must stay."""
    # The ask's old deadline, attempt and reply inbox no longer mean anything, and a
    # deliberate resend gets a fresh id (receivers refuse an old one as a replay).
    resend = Sealed(letter.data, replayed(letter.headers))
    subject = agent_subject("dlq", letter.to, tenant)
    try:
        if await transport.durable.captures(tenant, letter.to):
            await transport.durable.publish(subject, resend.data, headers=resend.headers)
            return None  # stored: the durable mailbox delivers it at least once
        # A core mailbox keeps nothing: sent as an ask, the letter goes once it is answered.
        resend.attempt(1, timeout)
        reply = Letter.open(
            await transport.request(subject, resend.data, headers=resend.headers, timeout=timeout)
        )
    except ActorsError as exc:
        return f"{type(exc).__name__}: {exc}"
    if reply.error is not None:
        type_name, message, origin = reply.error_details(codecs)
        who = "refused by" if origin == "sdk" else "the handler failed in"
        return f"{who} {letter.to!r}: {type_name}: {message}"
    return None


async def replay_dead_letters(
    settings: Settings,
    tenant: str,
    seqs: Sequence[int],
    *,
    keep: bool,
    timeout: float | None = None,
    out: TextIO | None = None,
) -> tuple[int, int]:
    """Resend dead letters to their agents (all, or the given sequence numbers).

    Each goes to ``sdk.agent.dlq.<to>.<tenant>`` with its original headers less the dead
    reason and an ask's old deadline, attempt and reply inbox, and with a fresh message
    id. To a durable agent it is stored by JetStream (then handled at least once); to a
    core agent it is sent as an ask with ``timeout`` (``SDK_ASK_TIMEOUT`` when None). The
    letter is removed (unless ``keep``) only once the stream stored it or the agent
    answered without an error; otherwise it stays and the reason is printed.

    Returns:
        ``(replayed, kept)``: how many went through, how many stayed because they failed.
    """
    check_id(tenant, "tenant")
    out = out if out is not None else sys.stdout
    codecs = _codecs(settings)
    wait = timeout if timeout is not None else settings.ask_timeout
    transport = _transport(settings, tenant)
    await transport.start()
    replayed = failed = 0
    try:
        letters = await transport.dead_letters.read(tenant, limit=1_000_000)
        wanted = set(seqs)
        for seq in sorted(wanted - {letter.seq for letter in letters}):
            print(f"no dead letter {seq} of tenant {tenant!r}", file=out)
            failed += 1
        for letter in letters:
            if wanted and letter.seq not in wanted:
                continue
            why = await _replay_one(transport, tenant, letter, wait, codecs)
            if why is not None:
                print(f"kept {letter.seq} (to {letter.to}): {why}", file=out)
                failed += 1
                continue
            if not keep:
                await transport.dead_letters.drop(tenant, letter.seq)
            print(f"replayed {letter.seq} to {letter.to}", file=out)
            replayed += 1
    finally:
        await transport.aclose()
    print(f"{replayed} dead letter(s) replayed, {failed} failed", file=out)
    return replayed, failed


async def drop_dead_letters(
    settings: Settings, tenant: str, seqs: Sequence[int], out: TextIO | None = None
) -> int:
    """Delete the given dead letters for good; return how many were there."""
    check_id(tenant, "tenant")
    out = out if out is not None else sys.stdout
    if not seqs:
        raise ConfigError("name the letters to drop with --seq (see `dlq list`)")
    transport = _transport(settings, tenant)
    await transport.start()
    dropped = 0
    try:
        kept = await transport.dead_letters.read(tenant, limit=1_000_000)
        present = {letter.seq for letter in kept}
        for seq in seqs:
            if seq not in present:
                print(f"no dead letter {seq} of tenant {tenant!r}", file=out)
                continue
            await transport.dead_letters.drop(tenant, seq)
            print(f"dropped {seq}", file=out)
            dropped += 1
    finally:
        await transport.aclose()
    return dropped
