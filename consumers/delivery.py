"""Notification delivery: a persisted schedule, one bounded attempt at a time, banks apart.

The notification stage only records each notification PENDING, due now, in its Kafka
batch's transaction. Everything after that happens here, off the Kafka loop, so the
batch never waits on a bank's endpoint:

1. **Claim.** A dispatcher leases due notifications, per bank, at most
   ``SAKK_NOTIFY_MAX_IN_FLIGHT_PER_BANK`` in flight for each: a bank that hangs holds
   its own slots, never another bank's. The lease is ``next_attempt_at`` pushed forward
   plus a ``claim_token``; a dispatcher killed mid-attempt leaves a lease that expires,
   and another dispatcher takes the notification over.
2. **Attempt.** One bounded attempt (``SAKK_WEBHOOK_TIMEOUT_MS``), under the same
   ``notification_id`` every time, so the bank deduplicates.
3. **Record.** Attempts are stored; a success finishes the notification DELIVERED; a
   failure schedules the next attempt (capped exponential backoff with equal jitter),
   until the horizon (``deadline_at``); past it the notification is FAILED. Finishing
   is a guarded UPDATE (``claim_token`` still ours, still PENDING) so exactly one
   dispatcher finishes it, and that one stores its ``PaymentNotified`` in the same
   transaction.
4. **Announce.** The stored ``PaymentNotified`` is produced, then ``announced_at`` is
   set. One left unannounced by a crash is produced again by the next sweep (same event
   id: a harmless copy).

:class:`DeliveryBook` is the ledger side and never touches Kafka; :class:`Dispatcher`
is the live loop around it.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, func, select, update

from consumers.senders import DeliveryResult, Notification, Sender
from engine import metrics
from engine.config import Settings
from engine.domain.notifications import FINISHED, NotificationStatus
from engine.events import PAYMENT_NOTIFIED, derived_event_id
from engine.kafka.client import Outgoing, make_producer
from engine.kafka.exceptions import KafkaProducerDeliveryError
from engine.ledger.database import read_only
from engine.ledger.models import Bank, table_of
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.queries import chunks, select_in
from engine.ledger.recorder import (
    AttemptMade,
    GuardFailed,
    NotificationDone,
    Recorder,
    RetryLater,
    Write,
)
from engine.pipeline.contract import Emit, Retryable
from engine.pipeline.crash import CrashHook, crash_hook
from engine.pipeline.outbox import Outbox
from engine.serialization import AvroCodec

log = logging.getLogger(__name__)
PENDING, DELIVERED, FAILED = (
    NotificationStatus.PENDING, NotificationStatus.DELIVERED, NotificationStatus.FAILED,
)  # fmt: skip

CONSUMER = "notification"  # emitted PaymentNotified rows belong to the notification stage
ERROR_MAX_CHARS = 500
ANNOUNCE_SWEEP_INTERVAL_S = 5.0
ANNOUNCE_SWEEP_MAX = 1_000  # notifications re-announced per sweep
RECORD_BATCH_MAX = 1_000  # finished attempts recorded per transaction
MAX_UNCONFIRMED = 50_000  # PaymentNotified sent but not acknowledged before claiming pauses


@dataclass(frozen=True)
class RetrySchedule:
    """When to try again after a failure: capped exponential backoff, equal jitter, a horizon.

    The n-th consecutive failure waits ``d = min(initial * 2**(n-1), cap)``, drawn from
    ``[d/2, d]`` so retries to a recovering bank do not arrive in lockstep. The last
    attempt falls on the horizon itself; a failure at or past it gives up.
    """

    initial_s: float
    cap_s: float
    horizon_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrySchedule:
        return cls(
            settings.notify_retry_initial_ms / 1000,
            settings.notify_retry_max_ms / 1000,
            float(settings.notify_horizon_s),
        )

    def delay_s(self, failures: int, rng: random.Random) -> float:
        if failures < 1:
            raise ValueError(f"failures={failures}: a retry follows at least one failure")
        ceiling = min(self.initial_s * 2 ** min(failures - 1, 60), self.cap_s)
        return rng.uniform(ceiling / 2, ceiling)

    def next_attempt_at(
        self, now: datetime, failures: int, deadline: datetime, rng: random.Random
    ) -> datetime | None:
        """The next attempt's time, or None when the horizon is reached: give up."""
        if now >= deadline:
            return None
        return min(now + timedelta(seconds=self.delay_s(failures, rng)), deadline)


@dataclass(frozen=True)
class Claimed:
    """A notification leased for one attempt."""

    notification: Notification
    token: str
    attempts_before: int
    deadline_at: datetime
    round: int
    source_event_id: str


class Announcement(NamedTuple):
    """A finished notification's ``PaymentNotified``, to produce and then mark announced."""

    notification_id: str
    message: Outgoing


@dataclass(frozen=True)
class Finished:
    claimed: Claimed
    result: DeliveryResult


def notified_event_id(source_event_id: str, recipient_bank: str, round_: int) -> str:
    """Round 0 keeps the id the stage always used; each redelivery round gets its own."""
    extra = recipient_bank if round_ == 0 else f"{recipient_bank}/round-{round_}"
    return derived_event_id(source_event_id, PAYMENT_NOTIFIED.name, extra)


def notified_event(claimed: Claimed, status: str, attempts: int, sender: str) -> dict[str, Any]:
    """The ``PaymentNotified`` record that announces a finished notification."""
    n, data = claimed.notification, claimed.notification.payload
    return {
        "event_id": notified_event_id(claimed.source_event_id, n.recipient_bank, claimed.round),
        "payment_id": n.payment_id,
        "bank_reference": data.get("bank_reference", ""),
        "occurred_at": datetime.fromisoformat(data["occurred_at"]),
        # A refused step may name no payment the switch knows: no payee, maybe no payer bank.
        "payer_bank": data.get("payer_bank", ""), "payer_account": data["payer_account"],
        "payee_bank": data.get("payee_bank", ""), "payee_account": data.get("payee_account", ""),
        "outcome": n.outcome, "notification_id": n.notification_id,
        "recipient_bank": n.recipient_bank, "sender": sender,
        "delivery_status": status, "attempts": attempts,
        "causation_event_id": claimed.source_event_id,
    }  # fmt: skip


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class DeliveryBook:
    """The ledger side of delivery: claim, record, announce. Kafka-free."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: AvroCodec,
        sender_name: str,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.codec = codec
        self.sender_name = sender_name
        self.schedule = RetrySchedule.from_settings(settings)
        self.lease = timedelta(seconds=settings.notify_lease_s)
        self._rng = rng or random.Random()  # timing only, never a ledger decision
        self._table = table_of(NotificationRow)
        self.outbox = Outbox(CONSUMER, codec, settings)
        self.recorder = Recorder()

    def due_banks(self, now: datetime) -> Counter[str]:
        """Banks with notifications due now, and how many each."""
        t = self._table
        with read_only(self.engine).connect() as conn:
            rows = conn.execute(
                select(t.c.recipient_bank, func.count())
                .where(t.c.status == PENDING, t.c.next_attempt_at <= now)
                .group_by(t.c.recipient_bank)
            ).all()
        return Counter({bank: count for bank, count in rows})

    def pending_per_bank(self) -> dict[str, int]:
        """Notifications waiting, for every bank of the reference data (0 included)."""
        t = self._table
        with read_only(self.engine).connect() as conn:
            banks = conn.execute(select(table_of(Bank).c.code)).scalars().all()
            rows = conn.execute(
                select(t.c.recipient_bank, func.count())
                .where(t.c.status == PENDING)
                .group_by(t.c.recipient_bank)
            ).all()
        return dict.fromkeys(banks, 0) | {bank: count for bank, count in rows}

    def claim(self, now: datetime, slots: dict[str, int]) -> list[Claimed]:
        """Lease up to ``slots[bank]`` due notifications of each bank, oldest due first.

        The guarded UPDATE re-checks "PENDING and due": of two dispatchers racing for the
        same row, one updates it and the other finds it leased (PostgreSQL re-evaluates
        the condition after the row lock; SQLite runs one writer at a time).
        """
        t, banks = self._table, table_of(Bank)
        token = str(uuid.uuid4())
        lease_until = now + self.lease
        with self.engine.begin() as conn:
            for bank, limit in slots.items():
                if limit < 1:
                    continue
                ids = (
                    select(t.c.notification_id)
                    .where(
                        t.c.status == PENDING,
                        t.c.recipient_bank == bank,
                        t.c.next_attempt_at <= now,
                    )
                    .order_by(t.c.next_attempt_at)
                    .limit(limit)
                )
                conn.execute(
                    update(t)
                    .where(
                        t.c.notification_id.in_(ids.scalar_subquery()),
                        t.c.status == PENDING,
                        t.c.next_attempt_at <= now,
                    )
                    .values(claim_token=token, next_attempt_at=lease_until)
                )
            rows = (
                conn.execute(
                    select(t, banks.c.webhook_url)
                    .join(banks, banks.c.code == t.c.recipient_bank, isouter=True)
                    .where(t.c.claim_token == token, t.c.status == PENDING)
                    .order_by(t.c.recipient_bank, t.c.notification_id)
                )
                .mappings()
                .all()
            )
        return [self._claimed(row, token) for row in rows]

    def _claimed(self, row: Any, token: str) -> Claimed:
        n = Notification(
            row["notification_id"], row["payment_id"], row["outcome"], row["recipient_bank"],
            row["webhook_url"], json.loads(row["payload"]),
        )  # fmt: skip
        deadline = row["deadline_at"] or row["created_at"] + timedelta(
            seconds=self.settings.notify_horizon_s
        )
        return Claimed(
            n, token, row["attempts"], _aware(deadline), row["round"], row["source_event_id"]
        )

    def record(self, finished: Sequence[Finished], now: datetime) -> list[Announcement]:
        """Store the attempts and their consequences in one transaction.

        Returns the ``PaymentNotified`` messages to produce: one per notification this
        call finished (DELIVERED, or FAILED at the horizon); none for one whose lease
        another dispatcher took over meanwhile.
        """
        writes: list[Write] = []
        ending: list[tuple[Finished, str, int, str | None]] = []
        retries: list[RetryLater] = []
        for f in finished:
            c, result = f.claimed, f.result
            nid = c.notification.notification_id
            writes += [
                AttemptMade(
                    nid,
                    c.attempts_before + a.number,
                    a.started_at,
                    int(a.duration_s * 1000),
                    a.status_code,
                    (a.error or None) and a.error[:ERROR_MAX_CHARS],
                )  # fmt: skip
                for a in result.attempts
            ]
            total = c.attempts_before + max(len(result.attempts), 1)
            error = (result.last_error or "")[:ERROR_MAX_CHARS] or None
            if result.delivered:
                ending.append((f, DELIVERED, total, error))
                continue
            at = self.schedule.next_attempt_at(now, total, c.deadline_at, self._rng)
            if at is None:
                ending.append((f, FAILED, total, error))
            else:
                retries.append(RetryLater(nid, c.token, at, total, error))
        try:  # the common case: every lease still ours, no lookup needed
            announcements = self._finish(ending, writes, retries, now, check_leases=False)
        except GuardFailed:  # another dispatcher took a lease over meanwhile
            announcements = self._finish(ending, writes, retries, now, check_leases=True)
        self._count(
            [e for e in ending if e[1] == DELIVERED],
            [e for e in ending if e[1] == FAILED],
            retries,
        )
        return announcements

    def _finish(
        self,
        ending: list[tuple[Finished, str, int, str | None]],
        writes: list[Write],
        retries: list[RetryLater],
        now: datetime,
        check_leases: bool,
    ) -> list[Announcement]:
        announcements: list[Announcement] = []
        rows = list(writes)
        with self.engine.begin() as conn:
            ours = (
                self._leases_held(conn, [f.claimed for f, *_ in ending]) if check_leases else None
            )
            for f, status, total, error in ending:
                c = f.claimed
                nid = c.notification.notification_id
                if ours is not None and (nid, c.token) not in ours:
                    continue  # the lease passed to another dispatcher: it finishes
                rows.append(NotificationDone(nid, c.token, status, total, error, now))
                record = notified_event(c, status, total, self.sender_name)
                message, row = self.outbox.encode(c.source_event_id, Emit(PAYMENT_NOTIFIED, record))
                announcements.append(Announcement(nid, message))
                rows.append(row)
            self.recorder.record(conn, [*rows, *retries])
        return announcements

    def _leases_held(self, conn: Any, claimed: Sequence[Claimed]) -> set[tuple[str, str]]:
        """(id, token) of the notifications still PENDING under these leases, row-locked.

        Locked (FOR UPDATE on PostgreSQL; SQLite's write transaction excludes every other
        writer), so no other dispatcher can finish them before this transaction ends.
        """
        if not claimed:
            return set()
        t = self._table
        query = (
            select(t.c.notification_id, t.c.claim_token)
            .where(t.c.status == PENDING)
            .with_for_update()
        )
        rows = select_in(conn, query, t.c.notification_id,
                         [c.notification.notification_id for c in claimed])  # fmt: skip
        return {(r.notification_id, r.claim_token) for r in rows}

    def _count(self, delivered: list, given_up: list, retries: list) -> None:  # type: ignore[type-arg]
        """``sakk_notification_deliveries_total``: delivered, retry, failed (given up)."""
        for status, group in (("delivered", delivered), ("retry", retries), ("failed", given_up)):
            if group:
                metrics.NOTIFICATION_DELIVERIES.labels(self.sender_name, status).inc(len(group))
        for f, *_ in given_up:
            metrics.NOTIFICATIONS_GIVEN_UP.labels(f.claimed.notification.recipient_bank).inc()

    def release(self, claimed: Sequence[Claimed], now: datetime) -> None:
        """Give back leases never attempted (a stop): due again now, for any dispatcher."""
        t = self._table
        with self.engine.begin() as conn:
            for c in claimed:
                conn.execute(
                    update(t)
                    .where(
                        t.c.notification_id == c.notification.notification_id,
                        t.c.claim_token == c.token,
                        t.c.status == PENDING,
                    )
                    .values(next_attempt_at=now, claim_token=None)
                )

    def mark_announced(self, notification_ids: Sequence[str], now: datetime) -> None:
        """After the broker acknowledged them: these ``PaymentNotified`` need no sweep."""
        t = self._table
        with self.engine.begin() as conn:
            for chunk in chunks(sorted(notification_ids)):
                conn.execute(
                    update(t).where(t.c.notification_id.in_(chunk)).values(announced_at=now)
                )

    def unannounced(self, now: datetime) -> list[Announcement]:
        """Stored ``PaymentNotified`` that no dispatcher confirmed produced (a crash)."""
        t = self._table
        older_than = now - self.lease  # younger ones may still be in flight elsewhere
        with read_only(self.engine).connect() as conn:
            rows = conn.execute(
                select(t.c.notification_id, t.c.source_event_id, t.c.recipient_bank, t.c.round)
                .where(
                    t.c.announced_at.is_(None),
                    t.c.status.in_(FINISHED),
                    t.c.finished_at < older_than,
                )
                .limit(ANNOUNCE_SWEEP_MAX)
            ).all()
            found: list[Announcement] = []
            for nid, source_id, bank, round_ in rows:
                event_id = notified_event_id(source_id, bank, round_)
                found += [
                    Announcement(nid, m)
                    for m in self.outbox.stored(conn, [source_id])
                    if self.codec.decode(m.value).record["event_id"] == event_id
                ]
        return found


def deliver_due(book: DeliveryBook, sender: Sender, now: datetime) -> list[Announcement]:
    """One synchronous round (tests, replay tools): claim what is due, attempt, record."""
    slots = dict.fromkeys(book.due_banks(now), book.settings.notify_claim_max)
    claimed = book.claim(now, slots)
    finished = [Finished(c, sender.deliver(c.notification)) for c in claimed]
    return book.record(finished, now) if finished else []


class Dispatcher:
    """The live delivery loop of a notification service: runs until ``stop_event``.

    A network sender (webhook) runs attempts on ``webhook_concurrency`` threads, and
    never claims more than there are free threads, nor more than
    ``notify_max_in_flight_per_bank`` for one bank: a bank that hangs occupies at most
    that many threads until its attempts time out, and every other bank keeps the rest.
    A local sender (the log) is attempted inline, up to ``notify_claim_max`` a round.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: AvroCodec,
        sender: Sender,
        stop_event: threading.Event,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.book = DeliveryBook(settings, engine, codec, sender.name)
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
            self._announce(producer, outgoing, now)
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
        """Free threads dealt one at a time to the banks in turn, each up to its own cap.

        The first bank served rotates every round, so when threads are short no bank is
        always served last.
        """
        per_bank = self.settings.notify_max_in_flight_per_bank
        room = min(self._threads - sum(self._in_flight.values()), self.settings.notify_claim_max)
        want = {b: min(n, per_bank - self._in_flight[b]) for b, n in due.items()}
        order = sorted(b for b, n in want.items() if n > 0)
        if not order:
            return {}
        start = self._rotation % len(order)
        self._rotation += 1
        order = order[start:] + order[:start]
        slots: Counter[str] = Counter()
        while room > 0 and order:  # each pass deals at least one thread, or ends
            for bank in order:
                if room == 0:
                    break
                slots[bank] += 1
                room -= 1
            order = [b for b in order if slots[b] < want[b]]
        return dict(slots)

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
        now = datetime.now(UTC)
        try:
            outgoing = self.book.record(finished, now)
        except Exception:
            for f in finished:  # not recorded: the leases expire and the attempts run again
                self._in_flight[f.claimed.notification.recipient_bank] -= 1
            raise
        for f in finished:
            self._in_flight[f.claimed.notification.recipient_bank] -= 1
        self.crash("after_delivery_record")  # recorded, not announced: the sweep must save it
        self._announce(producer, outgoing, now)

    def _announce(self, producer: Any, outgoing: list[Announcement], now: datetime) -> None:
        """Send the PaymentNotified events without waiting: a frozen broker stops no delivery.

        ``_confirm_announced`` marks them once acknowledged; one never acknowledged is
        left unannounced, and the sweep sends it again.
        """
        if not outgoing:
            return
        futures = [
            producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers) or None)
            for _, m in outgoing
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
            self._announce(producer, leftovers, now)
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
