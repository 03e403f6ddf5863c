"""The live delivery loop of a notification service: threads, a producer, a clock.

Everything that decides lives in :mod:`consumers.notify.rules` and
:mod:`consumers.notify.schedule`; everything that writes goes through
:class:`consumers.notify.book.DeliveryBook`. This module only runs them: it reads the
clock, runs attempts on threads, and produces the ``PaymentNotified`` events without
waiting on the broker.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from consumers.notify.book import Announcement, DeliveryBook, deliver_due
from consumers.notify.message import DeliveryResult, Sender
from consumers.notify.rules import Claimed, Finished, SlotLimits, deal_slots
from engine import metrics
from engine.config import Settings
from engine.kafka.client import make_producer
from engine.kafka.exceptions import KafkaProducerDeliveryError
from engine.pipeline.contract import Retryable
from engine.pipeline.crash import CrashHook, crash_hook
from engine.serialization import AvroCodec

log = logging.getLogger(__name__)

ANNOUNCE_SWEEP_INTERVAL_S = 5.0
RECORD_BATCH_MAX = 1_000  # finished attempts recorded per transaction
MAX_UNCONFIRMED = 50_000  # PaymentNotified sent but not acknowledged before claiming pauses


class Dispatcher:
    """The live delivery loop of a notification service: runs until ``stop_event``.

    A network sender (webhook) runs attempts on ``webhook_concurrency`` threads, and
    never claims more than there are free threads, nor more than
    ``notify_max_in_flight_per_bank`` for one bank: a bank that hangs occupies at most
    that many threads until its attempts time out, and every other bank keeps the rest.
    A local sender (the log) is attempted inline, up to ``notify_claim_max`` a round.
    ``rng`` draws the retry jitter (seed it to replay a schedule).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: AvroCodec,
        sender: Sender,
        stop_event: threading.Event,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.book = DeliveryBook(settings, engine, codec, sender.name, rng)
        self.stop_event = stop_event
        self._wake = threading.Event()
        self._threads = settings.webhook_concurrency if sender.concurrent else 0
        self._pool = ThreadPoolExecutor(max(self._threads, 1), thread_name_prefix="deliver")
        self._finished: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._in_flight: Counter[str] = Counter()
        self._submitted: dict[Future[None], Claimed] = {}
        self._unconfirmed: list[tuple[list[Any], list[Announcement]]] = []  # sent, not acked
        self._rotation = 0  # which bank is served first this round: none always waits last
        self.crash: CrashHook = crash_hook(settings)
        self._next_sweep_s = 0.0

    def wake(self) -> None:
        """New notifications were committed: look for due work now, not at the next tick."""
        self._wake.set()

    def run(self) -> None:
        producer = make_producer(self.settings, client_id="sakk-notification-delivery")
        log.info("notification delivery: %d threads, %d per bank in flight, horizon %d s",
                 self._threads, self.settings.notify_max_in_flight_per_bank,
                 self.settings.notify_horizon_s)  # fmt: skip
        try:
            while not self.stop_event.is_set():
                try:
                    self._round(producer)
                except Exception as exc:
                    if not Retryable.covers(exc) and not isinstance(
                        exc, KafkaProducerDeliveryError
                    ):
                        raise
                    log.warning("notification delivery: %s; retrying", str(exc).splitlines()[0])
                    self.stop_event.wait(1.0)
                self._wake.wait(self.settings.notify_poll_interval_ms / 1000)
                self._wake.clear()
        finally:
            self._drain(producer)
            producer.close(timeout=self.settings.shutdown_timeout_s)
            self.sender.close()

    def _round(self, producer: Any) -> None:
        self._confirm_announced()
        self._record_finished(producer)
        now = datetime.now(UTC)
        if self._unconfirmed_count() >= MAX_UNCONFIRMED:
            return  # the broker is not acknowledging: hold new work until it does
        if time.monotonic() >= self._next_sweep_s:
            self._sweep(producer, now)
        due = self.book.due_banks(now)
        if not due:
            return
        if not self.sender.concurrent:
            outgoing = deliver_due(self.book, self.sender, now)
            self._announce(producer, outgoing)
            return
        slots = self._free_slots(due)
        if not slots:
            return
        for claimed in self.book.claim(now, slots):
            self._in_flight[claimed.notification.recipient_bank] += 1
            future = self._pool.submit(self._attempt, claimed)
            self._submitted[future] = claimed
            future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        self._submitted.pop(future, None)

    def _free_slots(self, due: Counter[str]) -> dict[str, int]:
        """Free threads dealt to the banks in turn (:func:`deal_slots`); the turn moves on."""
        s = self.settings
        limits = SlotLimits(self._threads, s.notify_max_in_flight_per_bank, s.notify_claim_max)
        slots = deal_slots(due, self._in_flight, limits, self._rotation)
        self._rotation += 1
        return slots

    def _attempt(self, claimed: Claimed) -> None:
        try:
            result = self.sender.deliver(claimed.notification)
        except Exception as exc:  # a sender bug must not lose the lease's bookkeeping
            log.exception("sender %s raised", self.sender.name)
            result = DeliveryResult(False, (), f"{type(exc).__name__}: {exc}")
        self.crash("after_attempt")  # delivered, not yet recorded: the lease must save it
        self._finished.put(Finished(claimed, result))
        self._wake.set()

    def _record_finished(self, producer: Any) -> None:
        finished: list[Finished] = []
        while len(finished) < RECORD_BATCH_MAX:
            try:
                finished.append(self._finished.get_nowait())
            except queue.Empty:
                break
        if not finished:
            return
        try:
            outgoing = self.book.record(finished, datetime.now(UTC))
        finally:  # recorded or not, these attempts are over; unrecorded leases expire
            for f in finished:
                self._in_flight[f.claimed.notification.recipient_bank] -= 1
        self.crash("after_delivery_record")  # recorded, not announced: the sweep must save it
        self._announce(producer, outgoing)

    def _announce(self, producer: Any, outgoing: list[Announcement]) -> None:
        """Send the PaymentNotified events without waiting: a frozen broker stops no delivery.

        ``_confirm_announced`` marks them once acknowledged; one never acknowledged is
        left unannounced, and the sweep sends it again.
        """
        if not outgoing:
            return
        futures = [
            producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers) or None)
            for m in (a.message for a in outgoing)
        ]
        self._unconfirmed.append((futures, list(outgoing)))

    def _confirm_announced(self) -> None:
        confirmed: list[str] = []
        waiting = []
        for futures, outgoing in self._unconfirmed:
            if not all(f.is_done for f in futures):
                waiting.append((futures, outgoing))
                continue
            confirmed += [a.notification_id for f, a in zip(futures, outgoing, strict=True)
                          if f.succeeded()]  # fmt: skip
        self._unconfirmed = waiting
        if confirmed:
            self.book.mark_announced(confirmed, datetime.now(UTC))

    def _unconfirmed_count(self) -> int:
        return sum(len(outgoing) for _, outgoing in self._unconfirmed)

    def _sweep(self, producer: Any, now: datetime) -> None:
        self._next_sweep_s = time.monotonic() + ANNOUNCE_SWEEP_INTERVAL_S
        leftovers = self.book.unannounced(now)
        if leftovers:
            log.info("notification delivery: announcing %d left by a stop", len(leftovers))
            self._announce(producer, leftovers)
        for bank, count in self.book.pending_per_bank().items():
            metrics.NOTIFICATIONS_DUE.labels(bank).set(count)

    def _drain(self, producer: Any) -> None:
        """Stop claiming; record what was attempted and give back the rest of the leases.

        Attempts already running finish within one webhook timeout; none waits for a
        lease to expire after a clean stop.
        """
        never_started = [c for f, c in list(self._submitted.items()) if f.cancel()]
        self._pool.shutdown(wait=True)
        try:
            self._record_finished(producer)
            if never_started:
                self.book.release(never_started, datetime.now(UTC))
            producer.flush(timeout=self.settings.shutdown_timeout_s)
            self._confirm_announced()
        except Exception as exc:
            log.warning("notification delivery: not recorded at stop (%s); leases expire", exc)
