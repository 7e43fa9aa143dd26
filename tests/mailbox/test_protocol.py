"""The sans-io protocol objects: admission, the credit window, durable settlement.

Plain values in, decisions out: no event loop, no server.
"""

from __future__ import annotations

import time

import pytest

from motadata_actors import CodecError, MessageTooLarge, ReplayError, TenantError
from motadata_actors.codecs import Codecs
from motadata_actors.mailbox import DurableConfig, DurableMessage, new_message_id
from motadata_actors.mailbox._admission import Accept, Admission, Answered, Duplicate, Refuse
from motadata_actors.mailbox._credit import CreditWindow, TakenReport
from motadata_actors.mailbox._envelope import Letter, seal, seal_error
from motadata_actors.mailbox._inprocess import InProcessMessage
from motadata_actors.mailbox._settlement import settle

CODECS = Codecs("json")


def admission(**kw: float) -> Admission:
    return Admission(
        "acme",
        CODECS,
        max_size=int(kw.get("max_size", 1 << 20)),
        max_header_size=int(kw.get("max_header_size", 16 * 1024)),
        replay_window=kw.get("replay_window", 300.0),
    )


def message(body: bytes = b'"hi"', reply: str = "", **headers: str) -> InProcessMessage:
    names = {"message_id": "Sdk-Message-Id", "tenant": "Sdk-Tenant-Id"}
    return InProcessMessage(
        "sdk.agent.a.b.acme",
        reply,
        body,
        {"Content-Type": "application/json", **{names.get(k, k): v for k, v in headers.items()}},
    )


def test_admission_takes_a_good_message_and_decodes_it() -> None:
    decision = admission().admit(message(b'{"n": 1}'))
    assert isinstance(decision, Accept) and decision.payload == {"n": 1}
    assert decision.letter.subject == "sdk.agent.a.b.acme"


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (message(tenant="evil"), TenantError),
        (message(b"not json"), CodecError),
        (message(**{"Sdk-Tenant-Id": "acme", "sdk-tenant-id": "x"}), CodecError),
        (message(b'"' + b"x" * 2000 + b'"'), MessageTooLarge),
    ],
)
def test_admission_refuses_with_a_typed_error(msg: InProcessMessage, error: type) -> None:
    decision = admission(max_size=1000).admit(msg)
    assert isinstance(decision, Refuse) and isinstance(decision.error, error)


def test_headers_over_their_own_limit_are_refused() -> None:
    decision = admission(max_header_size=40).admit(message(**{"X-Pad": "p" * 100}))
    assert isinstance(decision, Refuse) and "headers of" in str(decision.error)


def test_replays_duplicates_and_retried_asks() -> None:
    rules = admission()
    mid = new_message_id()
    assert isinstance(rules.admit(message(message_id=mid)), Accept)
    assert isinstance(rules.admit(message(message_id=mid)), Duplicate)  # a core tell again
    forged = rules.admit(message(b'"other"', message_id=mid))
    assert isinstance(forged, Refuse) and isinstance(forged.error, ReplayError)
    # A retried ask: handled again until its reply was sent, then answered from memory.
    ask = new_message_id()
    assert isinstance(rules.admit(message(reply="_INBOX.1", message_id=ask)), Accept)
    assert isinstance(rules.admit(message(reply="_INBOX.1", message_id=ask)), Accept)
    reply = seal("done", CODECS.default)
    rules.answered(ask, reply)
    again = rules.admit(message(reply="_INBOX.1", message_id=ask))
    assert isinstance(again, Answered) and again.reply is reply


def test_an_id_older_than_the_replay_window_is_a_replay() -> None:
    prefix, born, _ = new_message_id().split(".")
    old = f"{prefix}.{int(born, 16) - 3600:08x}.1"
    decision = admission(replay_window=60.0).admit(message(message_id=old))
    assert isinstance(decision, Refuse) and "replay window (60s" in str(decision.error)


def test_the_credit_window_counts_parts_and_bytes() -> None:
    window = CreditWindow(window=4, window_bytes=100)
    assert window.next_part() == (1, True)  # the first part probes
    for _ in range(4):
        assert window.has_room(10)
        window.sent_part(10)
    assert not window.has_room(10) and window.outstanding == 4  # four parts ahead
    assert window.report(2) and window.has_room(10)
    assert not window.report(1)  # never backwards
    assert window.report(99) and window.acked == 4  # never past what was sent
    # Bytes: a large part waits once half the byte window is out...
    big = CreditWindow(window=100, window_bytes=100)
    big.sent_part(60)
    assert not big.has_room(60)
    # ...but goes while less than half is out, or neither end would move.
    small = CreditWindow(window=100, window_bytes=100)
    small.sent_part(10)
    assert small.has_room(200)


def test_the_consumer_reports_every_half_window() -> None:
    report = TakenReport(window=4, window_bytes=1000)
    assert report.take(10) is None
    assert report.take(10) == 2
    assert report.take(10) is None and report.take(10) == 4
    by_bytes = TakenReport(window=100, window_bytes=100)
    assert by_bytes.take(60) == 1  # half the byte window at once


CONFIG = DurableConfig(max_deliver=3, backoff=0.5, backoff_max=10.0)


@pytest.mark.parametrize(
    ("outcome", "kw", "action", "delay", "dead"),
    [
        ("handled", {}, "ack", 0.0, None),
        ("refused", {}, "term", 0.0, None),
        ("released", {}, "nak", 0.0, None),
        ("expired", {}, "term", 0.0, "expired: the ask's Sdk-Timeout-Ms"),
        ("overran", {}, "term", 0.0, "the handler outlived the asker's deadline"),
        ("overran", {"streaming": True}, "term", 0.0, "the streaming handler outlived"),
        ("crashed", {"delivered": 1}, "nak", 0.5, None),
        ("crashed", {"delivered": 2}, "nak", 1.0, None),
        ("crashed", {"delivered": 3}, "term", 0.0, "handler failed on its last delivery (3)"),
        ("crashed", {"delivered": 1, "streaming": True}, "term", 0.0, "streaming handler failed"),
    ],
)
def test_settlement(
    outcome: str, kw: dict[str, object], action: str, delay: float, dead: str | None
) -> None:
    args = {"delivered": 1, **kw}
    verdict = settle(outcome, CONFIG, error="ValueError: no", **args)  # type: ignore[arg-type]
    assert (verdict.action, verdict.delay) == (action, delay)
    if dead is None:
        assert verdict.dead_reason is None
    else:
        assert verdict.dead_reason is not None and verdict.dead_reason.startswith(dead)


def test_the_last_failed_delivery_of_an_ask_tells_the_asker() -> None:
    verdict = settle("crashed", CONFIG, delivered=3, is_ask=True, error="E: x")
    assert verdict.tell_asker and verdict.action == "term"
    assert not settle("crashed", CONFIG, delivered=2, is_ask=True).tell_asker


def test_a_letter_reads_what_a_sealed_message_says() -> None:
    sealed = seal({"n": 1}, CODECS.default, message_id="m-1", correlation_id="c-1")
    sealed.attempt(2, 1.5)
    sealed.streaming(8, 4096)
    letter = Letter.open(InProcessMessage("sdk.agent.a.b.acme", "_INBOX.x", sealed.data,
                                          sealed.headers))  # fmt: skip
    assert (letter.message_id, letter.correlation_id, letter.attempt) == ("m-1", "c-1", 2)
    assert letter.timeout == 1.5 and letter.is_streaming_ask
    assert letter.window(256, 1 << 20) == (8, 4096)
    assert letter.body(CODECS) == {"n": 1}
    error = seal_error("ValueError", "bad", "handler", CODECS.default, stream_end=3)
    failed = Letter.open(InProcessMessage("_INBOX.x", "", error.data, error.headers))
    assert failed.error == "ValueError" and failed.ends_stream and failed.stream_seq == 3
    assert failed.error_details(CODECS) == ("ValueError", "bad", "handler")


def test_a_durable_message_is_never_a_duplicate_of_itself() -> None:
    rules = admission()
    mid = new_message_id()

    class Nowhere:
        async def settle(self, msg: DurableMessage, verdict: str, delay: float) -> None:
            return None

        async def in_progress(self, msg: DurableMessage) -> None:
            return None

    def stored(delivered: int) -> DurableMessage:
        raw = InProcessMessage("sdk.agent.a.b.acme", "", b'"x"', {"Sdk-Message-Id": mid})
        return DurableMessage(
            subject=raw.subject, data=raw.data, headers=raw.headers, reply="",
            delivered=delivered, max_deliver=5, stream_seq=1, stored_at=time.time(),
            deadline=None, handle=raw, settler=Nowhere(),
        )  # fmt: skip

    assert isinstance(rules.admit(stored(1)), Accept)
    assert isinstance(rules.admit(stored(2)), Accept)  # a redelivery is handled again
