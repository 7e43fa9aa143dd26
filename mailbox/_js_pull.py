"""The pull loop: one JetStream consumer into one actor's mailbox, kept alive until settled.

Theory of operation (one :class:`Pull` per durable mailbox or feed):

* It keeps at most ``prefetch`` of its messages *waiting* in the mailbox (delivered, not
  yet taken by a worker) and fetches only what fits, so an actor's other subscriptions
  are not starved and a slow actor slows its consumer instead of growing memory.
* A delivery counts when a process gets the message, not when its handler starts it: a
  process that dies takes one from every message it pulled ahead. So after a start,
  until a message comes on its first delivery (after a crash, the ones before come
  again), it pulls one at a time, the next once that one is being handled. A message
  that kills its process, again and again, then runs out of deliveries alone, and the
  messages behind it are handled.
* Every message it delivered stays *unsettled* until its handler's verdict (ack, nak or
  term: :class:`~motadata_actors.mailbox.DurableMessage` tells this loop). Every half
  ack-wait the keeper in-progress-acks every unsettled message, waiting or being handled,
  so none is redelivered while it waits or while a long handler runs. Nobody else keeps
  messages alive.
* Unsubscribing stops the fetching at once; what was fetched and not yet queued is not
  queued (unacked, it comes again). The keeper goes on for messages being handled and
  for those waiting in a mailbox its owner closed to drain it (each will be handled or
  released); one left waiting in an open mailbox gets no more acks and is forgotten a
  whole ack-wait later (the server redelivers it), unless a worker took it meanwhile.
  The keeper ends once nothing it delivered is unsettled; the store that made the loop
  owns its task and ends it on close.
* If the stream or the consumer is deleted under it (an operator recreating the stream,
  say), it makes them again and goes on.
* When a handler's process dies on a message's last delivery, nobody settles it: the
  server only emits a ``MAX_DELIVERIES`` advisory. Every loop on that consumer listens
  for it (one of them gets each, by queue group), fetches the message by its stream
  sequence, dead-letters it and removes it from the agents stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Literal, final

from motadata_actors._errors import (
    ActorsError,
    CodecError,
    ConfigError,
    ConnectionLost,
    TransportClosed,
)
from motadata_actors.telemetry import get_logger

from . import _natspy as natspy
from ._envelope import Letter, dead_letter_headers, received_headers
from ._js_values import NoJetStream, NotFound
from ._natspy import JetStream, PullSubscription
from ._queue import Mailbox
from ._transport import DurableConfig, DurableMessage, Incoming, Subscription

__all__ = ("Pull",)

log = get_logger("jetstream")

FETCH_WAIT = 1.0  # seconds a pull request lingers on the server when nothing is there
_BUSY_WAIT = 0.005  # seconds between looks at a mailbox whose share is full
_ADVISORIES = 64  # advisories waiting to be handled, at most


@final
class Pull:
    """One consumer pulled into one mailbox: the fetch loop, the keeper, the advisories.

    Made by the durable store, which owns its task (:meth:`run`); :meth:`open` binds and
    returns the :class:`Subscription` whose ``unsubscribe`` stops the fetching.

    Args:
        js: JetStream on the connection.
        stream: the stream.
        consumer: the durable consumer (made by ``ensure``).
        ensure: makes the stream and the consumer (again, when they were deleted).
        mailbox: where messages go.
        config: ack-wait (the keeper's pace) and ``max_deliver``.
        prefetch: messages waiting in the mailbox at most.
        label: for logs.
        dead_subject: where a message that ran out of deliveries is dead-lettered.
        dead_letter: stores a dead letter (acknowledged when a stream keeps them).
        drop_after_dead_letter: remove it from the stream then (not a kept event).
    """

    def __init__(
        self,
        js: JetStream,
        stream: str,
        consumer: str,
        ensure: Callable[[], Awaitable[None]],
        mailbox: Mailbox[Incoming],
        config: DurableConfig,
        *,
        prefetch: int,
        label: str,
        dead_subject: str,
        dead_letter: Callable[[str, bytes, dict[str, str]], Awaitable[None]],
        drop_after_dead_letter: bool,
    ) -> None:
        self._js = js
        self._stream = stream
        self._consumer = consumer
        self._ensure = ensure
        self._mailbox = mailbox
        self._config = config
        self._prefetch = max(1, min(prefetch, mailbox.statistics().capacity))
        # One message at a time until one comes on its first delivery (see _fetch).
        self._careful = True
        self.label = label
        self._dead_subject = dead_subject
        self._dead_letter = dead_letter
        self._drop_dead = drop_after_dead_letter
        self._psub: PullSubscription | None = None
        self._advisory_sub: object = None
        self._advisories: Mailbox[Incoming] = Mailbox(_ADVISORIES)
        self._unsettled: set[DurableMessage] = set()
        self._letting_go: set[DurableMessage] = set()  # stopped, waiting, not acked since
        self._fetching: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._stopped = False
        self._wake = asyncio.Event()  # the keeper looks again at once (stopped, or all settled)

    async def open(self) -> None:
        """Make the stream and consumer if needed, bind, and listen for advisories.

        Raises:
            ConfigError: the server has no JetStream, or refused the stream.
            ConnectionLost: the server cannot be reached.
        """
        try:
            await self._ensure()
            self._psub = await self._js.pull(self._stream, self._consumer)
            self._advisory_sub = await self._js.subscribe_into(
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self._stream}.{self._consumer}",
                self._consumer,
                self._advisories,
            )
        except NoJetStream as exc:
            await self._unbind()
            raise ConfigError(
                f"durable mailboxes, events and workflows need JetStream: {exc}"
            ) from exc
        except BaseException:
            await self._unbind()
            raise

    def subscription(self) -> Subscription:
        """The handle the actor keeps; its ``unsubscribe`` stops the fetching."""
        return Subscription(self.label, self._consumer, self._mailbox, self.stop)

    async def run(self) -> None:
        """Fetch, keep alive and watch advisories until stopped and nothing is left to keep."""
        async with asyncio.TaskGroup() as group:
            if not self._stopped:  # else stopped before it ran: only what is left to keep
                self._fetching = group.create_task(self._fetch(), name=f"pull:{self.label}")
                self._watching = group.create_task(self._watch(), name=f"dead:{self.label}")
            group.create_task(self._keep(), name=f"keep:{self.label}")

    async def stop(self) -> None:
        """Stop fetching and watching (the keeper finishes on its own); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if not self._unsettled:
            self._wake.set()  # nothing to keep: the keeper ends now, not at its next tick
        tasks = [t for t in (self._fetching, self._watching) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # A cancelled fetch ends at once, or (its cancel swallowed) at its next turn.
            done, _ = await asyncio.wait(tasks, timeout=FETCH_WAIT + 5)
            if len(done) < len(tasks):
                log.warning("the pull loop of %s did not stop in time", self.label)
        await self._unbind()

    async def _unbind(self) -> None:
        if self._psub is not None:
            await self._psub.unsubscribe()
        if self._advisory_sub is not None:
            await self._js.unsubscribe(self._advisory_sub)

    # -- fetching -----------------------------------------------------------------------

    async def _fetch(self) -> None:
        """Keep up to ``prefetch`` of this consumer's messages waiting in the mailbox."""
        psub = self._psub
        assert psub is not None, "open() first"
        pause = 0.1
        send = self._mailbox.send
        # The flag as well as the cancel: a cancel landing just as nats-py's fetch completes
        # can be swallowed by its asyncio.wait_for (Python 3.11); the loop then ends here.
        while not self._stopped:
            # This consumer's own messages waiting, not the mailbox's whole queue: an
            # actor's other subscriptions must not starve this one.
            want = self._prefetch - sum(1 for m in self._unsettled if not m.started)
            if self._careful:
                # A process that dies takes a delivery from every message it pulled ahead.
                # After a start, until a message comes on its first delivery, pull one at
                # a time: a message that kills its process again and again then costs the
                # others nothing. (Not again later: a nak's retries would pay for it.)
                want = min(want, 1 if not any(not m.started for m in self._unsettled) else 0)
            if want <= 0:
                await asyncio.sleep(_BUSY_WAIT)  # the actor is busy: its share is queued
                continue
            try:
                msgs = await psub.fetch(want, FETCH_WAIT)
            except (NotFound, NoJetStream):
                # No consumer answers the pull: deleted (make it again), or JetStream is
                # electing a leader (wait).
                await self._reopen()
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
                continue
            except ConnectionLost as exc:
                # Reconnecting, or the server restarting: what was not acked comes again.
                log.debug("pull from %s paused: %r", self.label, exc)
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
                continue
            pause = 0.1
            for raw in msgs:
                if self._halted():
                    return  # what was fetched past a stop is not queued: unacked, it comes again
                msg = self._wrap(raw)
                self._careful = self._careful and msg.delivered > 1
                self._unsettled.add(msg)  # kept alive even while the mailbox is full
                try:
                    await send(msg)
                except TransportClosed:  # its owner closed the mailbox: nothing more goes in
                    self._unsettled.discard(msg)
                    return
                except BaseException:  # stopped: not queued, it comes again
                    self._unsettled.discard(msg)
                    raise
            if msgs:
                await asyncio.sleep(0)  # the woken worker first, then the next pull request

    def _halted(self) -> bool:
        return self._stopped  # read anew after each await (a method: not narrowed by mypy)

    async def _reopen(self) -> None:
        """Make the stream and consumer again if they are gone."""
        try:
            if await self._gone():
                await self._ensure()
                log.warning("durable mailbox %s: its stream or consumer was gone; made again",
                            self.label)  # fmt: skip
        except ActorsError as exc:
            log.warning("durable mailbox %s not made again yet: %s", self.label, exc)

    async def _gone(self) -> bool:
        try:
            await self._js.consumer_info(self._stream, self._consumer)
        except NotFound:
            return True
        return False

    def _wrap(self, raw: Incoming) -> DurableMessage:
        delivered, seq, stored_at = natspy.delivery(raw)
        headers = raw.headers
        # A header in two cases is left for the actor to refuse (it dead-letters it).
        with contextlib.suppress(CodecError):
            headers = received_headers(headers)
        letter = Letter(raw, headers)
        timeout = letter.timeout
        return DurableMessage(
            subject=raw.subject,
            data=raw.data,
            headers=headers or None,
            reply=letter.reply_to,
            delivered=delivered,
            max_deliver=self._config.max_deliver,
            stream_seq=seq,
            stored_at=stored_at,
            # Reckoned from when the stream stored the request, not from delivery.
            deadline=stored_at + timeout if timeout is not None else None,
            handle=raw,
            settler=self,
        )

    # -- settling and keeping alive -----------------------------------------------------

    async def settle(
        self, msg: DurableMessage, verdict: Literal["ack", "nak", "term"], delay: float
    ) -> None:
        """Send ``msg``'s verdict; it is no longer kept alive (even if the verdict is lost).

        Raises:
            ConnectionLost: the verdict could not be sent (the message comes again).
        """
        unsettled = self._unsettled
        unsettled.discard(msg)
        self._letting_go.discard(msg)
        if self._stopped and not unsettled:
            self._wake.set()  # nothing left to keep: the keeper can end now
        await natspy.settle(msg.handle, verdict, delay)

    async def in_progress(self, msg: DurableMessage) -> None:
        """Restart ``msg``'s ack-wait timer.

        Raises:
            ConnectionLost: it could not be sent.
        """
        await natspy.in_progress(msg.handle)

    def _to_keep(self) -> list[DurableMessage]:
        """The messages to in-progress-ack at this tick; forgets those let go.

        Before the stop: every unsettled one. After it: those being handled, and those
        waiting in a mailbox its owner closed to drain it (each will be handled or
        released). One waiting in a mailbox left open gets no more acks; two ticks later
        (a whole ack-wait: the server has let it go too) it is forgotten, unless a worker
        took it meanwhile.
        """
        unsettled = self._unsettled
        if not self._stopped:
            return list(unsettled)
        closed = self._mailbox.closed
        kept: list[DurableMessage] = []
        for msg in list(unsettled):
            if msg.started or closed:
                kept.append(msg)
                self._letting_go.discard(msg)
            elif msg in self._letting_go:
                unsettled.discard(msg)
                self._letting_go.discard(msg)
            else:
                self._letting_go.add(msg)
        return kept

    async def _keep(self) -> None:
        """Every half ack-wait, in-progress-ack the unsettled messages it delivered.

        Ends once stopped with nothing left unsettled.
        """
        interval = self._config.ack_wait / 2
        wake = self._wake
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await wake.wait()
            wake.clear()
            kept = self._to_keep()
            if self._stopped and not self._unsettled:
                return
            for msg in kept:
                if msg.settled:
                    continue  # settled while the ones before were kept
                try:
                    await natspy.in_progress(msg.handle)
                except ConnectionLost as exc:
                    log.debug("in-progress ack of %r lost: %r", msg, exc)

    # -- messages that ran out of deliveries --------------------------------------------

    async def _watch(self) -> None:
        """Dead-letter what a ``MAX_DELIVERIES`` advisory names."""
        async for advisory in self._advisories:
            try:
                await self._dead_letter_stored(int(json.loads(advisory.data)["stream_seq"]))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("MAX_DELIVERIES advisory on %s not understood: %r", self.label, exc)
            except ActorsError as exc:
                log.warning("MAX_DELIVERIES advisory on %s not handled: %r", self.label, exc)

    async def _dead_letter_stored(self, seq: int) -> None:
        """Dead-letter message ``seq`` of the stream (its last delivery got no verdict)."""
        try:
            stored = await self._js.get_msg(self._stream, seq)
        except NotFound:
            return  # already settled and gone
        reason = (
            "no verdict after the last delivery (the process it went to died or hung; it "
            "may have been pulled ahead there, never handled)"
        )
        headers = dead_letter_headers(stored.headers, reason)
        try:
            await self._dead_letter(self._dead_subject, stored.data, headers)
            if self._drop_dead:  # a kept event stays for its other readers
                with contextlib.suppress(NotFound):
                    await self._js.delete_msg(self._stream, seq)
        except ActorsError as exc:
            log.warning("dead letter of %s seq %d lost: %r", self.label, seq, exc)
            return
        log.warning("%s: message %d dead-lettered: %s", self.label, seq, reason)
