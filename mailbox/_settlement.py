"""Durable settlement: what becomes of a stored message once its handling ended (sans-io).

A message from a durable mailbox is settled exactly once: *ack* (done, gone), *nak*
(deliver it again, after a delay) or *term* (never again). Rules, by how handling ended:

=====================  =====================================================================
outcome                verdict
=====================  =====================================================================
handled                ack (a streaming ask whose consumer closed the stream early too)
refused                term: refused before the handler, and dead-lettered already
crashed                nak after ``redelivery_delay(delivered)``; on the last delivery, term
                       and dead-letter, and an asker hears the handler's error. A streaming
                       ask is never redelivered (its asker got the error and left): term and
                       dead-letter at once
overran                term and dead-letter: the handler outlived its asker's deadline
expired                term and dead-letter: the asker's time ran out before it was taken
released               nak at once: the actor stopped before handling it (another replica,
                       or this actor once back, takes it)
=====================  =====================================================================
"""

from __future__ import annotations

from typing import Final, Literal, final

from ._transport import DurableConfig

__all__ = ("Outcome", "Verdict", "settle")

Outcome = Literal["handled", "refused", "crashed", "overran", "expired", "released"]

_EXPIRED: Final = "expired: the ask's Sdk-Timeout-Ms ran out before handling"
_OVERRAN: Final = "the handler outlived the asker's deadline"


@final
class Verdict:
    """How to settle a stored message.

    Attributes:
        action: ``ack``, ``nak`` or ``term``.
        delay: seconds before a nak'd message comes again.
        dead_reason: dead-letter it first, with this reason (None: do not).
        tell_asker: an asker waits: send it the handler's error.
    """

    __slots__ = ("action", "dead_reason", "delay", "tell_asker")

    def __init__(
        self,
        action: Literal["ack", "nak", "term"],
        *,
        delay: float = 0.0,
        dead_reason: str | None = None,
        tell_asker: bool = False,
    ) -> None:
        self.action = action
        self.delay = delay
        self.dead_reason = dead_reason
        self.tell_asker = tell_asker

    def __repr__(self) -> str:
        return f"<Verdict {self.action} delay={self.delay:g} dead={self.dead_reason!r}>"


ACK: Final = Verdict("ack")
TERM: Final = Verdict("term")
RELEASE: Final = Verdict("nak")


def settle(
    outcome: Outcome,
    config: DurableConfig,
    *,
    delivered: int,
    streaming: bool = False,
    is_ask: bool = False,
    error: str = "",
) -> Verdict:
    """The verdict for a stored message whose handling ended with ``outcome``.

    Args:
        outcome: how handling ended.
        config: the durable settings (``max_deliver``, the redelivery backoff).
        delivered: which delivery this was, from 1.
        streaming: whether it is a streaming ask.
        is_ask: whether an asker waits for a reply.
        error: the failure, ``Type: message``, for the dead reason.
    """
    if outcome == "handled":
        return ACK
    if outcome == "refused":
        return TERM
    if outcome == "released":
        return RELEASE
    if outcome == "expired":
        return Verdict("term", dead_reason=_EXPIRED)
    if outcome == "overran":
        what = "the streaming handler" if streaming else "the handler"
        return Verdict("term", dead_reason=_OVERRAN.replace("the handler", what))
    # crashed
    if streaming:
        return Verdict("term", dead_reason=f"streaming handler failed: {error}")
    if delivered < config.max_deliver:
        return Verdict("nak", delay=config.redelivery_delay(delivered))
    return Verdict(
        "term",
        dead_reason=f"handler failed on its last delivery ({delivered}): {error}",
        tell_asker=is_ask,
    )
