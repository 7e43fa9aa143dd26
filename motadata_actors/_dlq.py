"""``python -m motadata_actors dlq list | replay``: show and resend a tenant's dead letters."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from motadata_actors._errors import ConfigError
from motadata_actors._settings import Settings
from motadata_actors.mailbox import (
    ATTEMPT,
    DEAD_REASON,
    MESSAGE_ID,
    MESSAGE_TYPE,
    REPLY_TO,
    STREAM_WINDOW,
    TIMEOUT_MS,
    DeadLetter,
    InProcessTransport,
    NatsTransport,
    Transport,
    agent_subject,
    check_id,
    new_message_id,
)

__all__ = ("list_dead_letters", "replay_dead_letters")

_NOT_REPLAYED = frozenset({DEAD_REASON, TIMEOUT_MS, ATTEMPT, REPLY_TO, STREAM_WINDOW})


def _transport(settings: Settings, tenant: str) -> Transport:
    if not settings.enable_nats:
        return InProcessTransport()
    if not settings.nats_urls:
        raise ConfigError(
            "NATS_URL is not set: dead letters live on the server the actors use; set NATS_URL "
            "to it (an embedded server keeps nothing after its process ends)"
        )
    return NatsTransport.from_settings(settings, tenant, name="motadata-actors/dlq")


def _line(letter: DeadLetter) -> str:
    when = datetime.fromtimestamp(letter.time, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    kind = letter.headers.get(MESSAGE_TYPE, "-")
    body = letter.data[:60].decode(errors="replace")
    return f"{letter.seq:>6}  {when}  {letter.to:<16} {kind:<24} {letter.reason}  {body}"


async def list_dead_letters(
    settings: Settings, tenant: str, limit: int, out: TextIO = sys.stdout
) -> int:
    """Print the tenant's kept dead letters; return how many."""
    check_id(tenant, "tenant")
    transport = _transport(settings, tenant)
    await transport.start()
    try:
        letters = await transport.dead_letters(tenant, limit=limit)
    finally:
        await transport.aclose()
    print(f"{len(letters)} dead letter(s) of tenant {tenant!r}", file=out)
    if letters:
        print(f"{'seq':>6}  {'kept (UTC)':<19}  {'to':<16} {'type':<24} reason  body", file=out)
    for letter in letters:
        print(_line(letter), file=out)
    return len(letters)


async def replay_dead_letters(
    settings: Settings,
    tenant: str,
    seqs: Sequence[int],
    *,
    keep: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Resend dead letters to their agents (all, or the given sequence numbers).

    Each goes to ``sdk.agent.dlq.<to>.<tenant>`` as a tell, with its original headers less
    the dead reason and an ask's deadline, attempt and reply inbox, and with a fresh
    message id; it is removed from the store unless ``keep``.
    Returns how many.
    """
    check_id(tenant, "tenant")
    transport = _transport(settings, tenant)
    await transport.start()
    sent = 0
    try:
        letters = await transport.dead_letters(tenant, limit=1_000_000)
        wanted = set(seqs)
        for letter in letters:
            if wanted and letter.seq not in wanted:
                continue
            # The ask's old deadline, attempt and reply inbox no longer mean anything: the
            # replay is a tell, handled without the asker's long-past deadline.
            headers = {k: v for k, v in letter.headers.items() if k not in _NOT_REPLAYED}
            # A deliberate resend: a fresh id, or receivers would refuse an old one as a
            # replay (SDK_REPLAY_WINDOW).
            headers[MESSAGE_ID] = new_message_id()
            await transport.publish(
                agent_subject("dlq", letter.to, tenant), letter.data, headers=headers
            )
            if not keep:
                await transport.drop_dead_letter(tenant, letter.seq)
            print(f"replayed {letter.seq} to {letter.to}", file=out)
            sent += 1
    finally:
        await transport.aclose()
    print(f"{sent} dead letter(s) replayed", file=out)
    return sent
