"""Agent-to-agent communication over NATS: asks, tells, the subjects they use, and failures.

Three agents of the tenant ``acme`` talk through a real nats-server:

* ``triage`` takes support tickets (asked by the client), asks ``kb`` for help articles,
  tells ``notifier`` to write to the customer, and replies with an answer;
* ``kb`` answers lookups, but one lookup is too slow: the ask fails with ``AskTimeout``
  and ``kb``'s handler is cancelled at the asker's deadline;
* an invoice ticket makes ``triage`` ask a ``billing`` agent that nobody runs: the ask
  fails at once with ``NoResponders``, and triage falls back to an answer of its own.

Every agent's mailbox is a NATS subject, ``sdk.agent.<from>.<to>.<tenant>``, and replies
go to a temporary inbox under ``_INBOX_<tenant>``. A wiretap subscribed to ``sdk.>`` and
``_INBOX_acme.>`` prints each message as the server delivered it: subject, kind, type
and body (lines starting with ``wire``).

Run it with ``python examples/agents_over_nats.py``. It starts an embedded nats-server
on a free loopback port and stops it at the end: nothing else to set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from motadata_actors import (
    Actor,
    ActorSystem,
    AskTimeout,
    Context,
    NoResponders,
    message,
)
from motadata_actors.mailbox import (
    DEAD_REASON,
    ERROR,
    MESSAGE_TYPE,
    TIMEOUT_MS,
    Incoming,
    Mailbox,
)

TENANT = "acme"
START = time.monotonic()


def say(who: str, text: str) -> None:
    """Print one line of the story: seconds since start, who speaks, what happened."""
    print(f"{time.monotonic() - START:5.2f}s {who:>9} | {text}", flush=True)


# -- the messages: typed, with versioned wire names (the Sdk-Message-Type header) ----------


@message("support.ticket.v1")
class Ticket:
    """A customer's support request."""

    customer: str
    topic: str


@message("support.answer.v1")
class Answer:
    """Triage's reply to a ticket."""

    text: str
    articles: list[str]


@message("kb.lookup.v1")
class Lookup:
    """Ask the knowledge base for the articles about a topic."""

    topic: str


@message("notify.customer.v1")
class Notify:
    """A note to send to a customer (a tell: nobody waits for it)."""

    customer: str
    text: str


# -- the agents ---------------------------------------------------------------------------

ARTICLES = {
    "password": ["Resetting your password", "Turning on two-factor sign-in"],
    "export": ["Exporting your data as CSV"],
}


class Triage(Actor):
    """Answers tickets with the help of kb, notifier and (when it runs) billing."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        """Answer a ticket: ask kb, tell notifier; invoices go to billing, if it runs."""
        if not isinstance(msg, Ticket):
            raise TypeError(f"triage does not understand {type(msg).__name__}")
        # ctx says who sent the message and on which subject it came.
        say("triage", f"{msg.topic!r} ticket from {ctx.sender!r} on {ctx.subject}")
        if msg.topic == "invoice":
            try:
                # From inside a handler the ask goes out on sdk.agent.triage.billing.acme.
                return await ctx.ref("billing").ask(msg, timeout=2.0)
            except NoResponders:
                # Nobody subscribes to billing's subject: the server says so at once,
                # long before the 2 s timeout.
                say("triage", "no billing agent runs (NoResponders): answering myself")
                return Answer(text="Billing is offline; we will email your invoice.", articles=[])
        articles: list[str] = await ctx.ref("kb").ask(Lookup(topic=msg.topic), timeout=1.0)
        # A tell returns as soon as the message is on its way.
        await ctx.ref("notifier").tell(
            Notify(customer=msg.customer, text=f"we are on it, see {articles[0]!r}")
        )
        return Answer(text=f"{len(articles)} article(s) should help.", articles=articles)


class KnowledgeBase(Actor):
    """Looks up articles; the topic ``everything`` takes far too long."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        """Return the titles of the articles about ``msg.topic``."""
        if not isinstance(msg, Lookup):
            raise TypeError(f"kb does not understand {type(msg).__name__}")
        if msg.topic == "everything":
            # ctx.time_left() is what the asker's Sdk-Timeout-Ms header leaves us.
            say("kb", f"searching everything; the asker waits {ctx.time_left():.2f}s more")
            try:
                await anyio.sleep(10)  # a hung tool call, say
            except asyncio.CancelledError:
                say("kb", "handler cancelled: the asker's deadline passed")
                raise
        say("kb", f"lookup {msg.topic!r} for {ctx.sender!r}")
        return ARTICLES.get(msg.topic, [])


class Notifier(Actor):
    """Writes to customers (here: prints)."""

    async def on_message(self, msg: Any, ctx: Context) -> None:
        """Deliver a note (a tell: the return value goes nowhere)."""
        if isinstance(msg, Notify):
            say("notifier", f"to {msg.customer}: {msg.text}")


# -- the wiretap ---------------------------------------------------------------------------


def describe(msg: Incoming, asked: set[str]) -> str | None:
    """One line about a message seen on the wire, or None for traffic that is not ours.

    ``asked``: the reply subjects of the asks seen so far; an inbox message is a reply to
    one of them, or JetStream's own traffic (the tenant's buckets and streams).
    """
    headers = msg.headers or {}
    if msg.subject.startswith("_INBOX"):
        if msg.subject not in asked:
            return None
    elif not msg.subject.startswith(("sdk.agent.", "sdk.dlq.")):
        return None  # status events, discovery: not this example's story
    if msg.reply:
        asked.add(msg.reply)
    if msg.subject.startswith("sdk.dlq."):
        kind = f"dead letter ({headers.get(DEAD_REASON, '?')})"
    elif ERROR in headers:
        kind = f"error reply ({headers[ERROR]})"
    elif msg.subject.startswith("_INBOX"):
        kind = "reply"
    elif TIMEOUT_MS in headers:
        kind = f"ask ({headers[TIMEOUT_MS]} ms)"
    else:
        kind = "tell"
    subject = msg.subject
    if subject.startswith("_INBOX"):
        subject = subject[:20] + "..."  # a random, per-ask inbox
    body = msg.data.decode(errors="replace")
    if len(body) > 60:
        body = body[:57] + "..."
    return f"{subject:<34} {kind:<20} {headers.get(MESSAGE_TYPE, '-'):<18} {body}"


@contextlib.asynccontextmanager
async def wiretap(system: ActorSystem) -> AsyncIterator[None]:
    """Print every message of the tenant while the block runs."""
    tap: Mailbox[Incoming] = Mailbox(10_000)
    subscriptions = [
        await system.transport.subscribe("sdk.>", mailbox=tap),
        await system.transport.subscribe(f"_INBOX_{TENANT}.>", mailbox=tap),
    ]

    async def show() -> None:
        asked: set[str] = set()
        async for msg in tap:  # ends when the mailbox is closed and empty
            line = describe(msg, asked)
            if line is not None:
                say("wire", line)

    printer = asyncio.create_task(show())
    try:
        yield
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
        await anyio.sleep(0.05)  # messages already delivered still reach the tap
        tap.close()
        await printer


async def settle() -> None:
    """Give the wiretap a moment to print what it saw before the next step starts."""
    await anyio.sleep(0.1)


async def main() -> None:
    """Start the agents, then run the three conversations under the wiretap."""
    async with ActorSystem(tenant=TENANT) as system:  # NATS_URL unset: embedded server
        server = system.embedded_server
        where = f"embedded nats-server at {server.url}" if server else system.transport.description
        print(f"tenant {TENANT!r} on {where}")
        triage = await system.spawn(Triage, name="triage")
        kb = await system.spawn(KnowledgeBase, name="kb")
        await system.spawn(Notifier, name="notifier")

        async with wiretap(system):
            print("\n1. The client asks triage; triage asks kb and tells notifier")
            answer = await triage.ask(Ticket(customer="ada", topic="password"), timeout=3.0)
            await settle()
            say("client", f"answer: {answer.text} {answer.articles}")

            print("\n2. A lookup slower than its asker's timeout")
            started = time.monotonic()
            try:
                await kb.ask(Lookup(topic="everything"), timeout=0.5)
            except AskTimeout as exc:
                took = time.monotonic() - started
                say("client", f"AskTimeout after {took:.2f}s: {exc}")
            await settle()

        # A wiretap on sdk.> is itself a subscriber of every agent subject: while it
        # listens, an ask to an agent nobody runs has a "responder" and would wait for its
        # whole timeout instead of failing at once. So the tap is off for this step.
        print("\n3. An ask to an agent nobody runs (wiretap off: it would count as a listener)")
        answer = await triage.ask(Ticket(customer="grace", topic="invoice"), timeout=3.0)
        say("client", f"answer: {answer.text}")

        # Asks that failed in the transport (timeout, no responders) are dead-lettered by
        # the asker on sdk.dlq.<to>.<tenant>, with the reason; the tenant keeps them.
        print("\nDead letters kept for the tenant:")
        for letter in await system.dead_letters():
            print(f"  #{letter.seq} to {letter.to!r} on {letter.subject}: {letter.reason}")
        counts = system.event_counts()
        print(
            f"Supervision events: {counts.get('timeout', 0)} timeout(s), "
            f"{counts.get('overran', 0)} handler(s) cancelled at their deadline, "
            f"{counts.get('dead_letter', 0)} dead letter(s)"
        )
    print("done: actors stopped, embedded nats-server stopped")


if __name__ == "__main__":
    asyncio.run(main())
