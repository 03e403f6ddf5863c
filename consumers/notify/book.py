"""The ledger side of delivery: claim, record, release, announce. Kafka-free.

Each method loads what it needs, lets :mod:`consumers.notify.rules` decide, and hands
the decision to the recorder as guarded rows (:mod:`engine.ledger.notification_writes`):
the book never writes SQL of its own. Times come from the caller (``now``), the retry
jitter from the generator it was given.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, func, select

from consumers.notify.message import Notification, Sender
from consumers.notify.rules import (
    Claimed,
    Decided,
    Ending,
    Finished,
    decide,
    notified_event,
    notified_event_id,
)
from consumers.notify.schedule import RetrySchedule
from engine import metrics
from engine.config import Settings
from engine.domain.notifications import FINISHED, NotificationStatus
from engine.events import PAYMENT_NOTIFIED
from engine.kafka.client import Outgoing
from engine.ledger.database import read_only
from engine.ledger.models import Bank, table_of
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.notification_writes import (
    LeaseReleased,
    NotificationAnnounced,
    NotificationClaimed,
    NotificationDone,
)
from engine.ledger.queries import select_in
from engine.ledger.recorder import GuardFailed, Recorder, Write
from engine.pipeline.contract import Emit
from engine.pipeline.outbox import Outbox
from engine.serialization import AvroCodec

CONSUMER = "notification"  # emitted PaymentNotified rows belong to the notification stage
ANNOUNCE_SWEEP_MAX = 1_000  # notifications re-announced per sweep
PENDING = NotificationStatus.PENDING


class Announcement(NamedTuple):
    """A finished notification's ``PaymentNotified``, to produce and then mark announced."""

    notification_id: str
    message: Outgoing


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class DeliveryBook:
    """Claim, record, release, announce: every change a guarded row, written by the recorder."""

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
        self.rng = rng or random.Random()  # timing only, never a ledger decision
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

        Each lease is a guarded row (still PENDING, at the attempt read, due): of two
        dispatchers racing for the same row, one updates it and the other finds it
        leased (PostgreSQL re-evaluates the condition after the row lock; SQLite runs
        one writer at a time). Rows are leased in id order, so two dispatchers lock them
        in the same order and never deadlock. What this call holds is read back by its
        token.
        """
        token = str(uuid.uuid4())
        lease_until = now + self.lease
        with self.engine.begin() as conn:
            claims = [
                NotificationClaimed(nid, attempts, now, token, lease_until)
                for bank, limit in slots.items()
                if limit > 0
                for nid, attempts in self._due_of(conn, bank, now, limit)
            ]
            self.recorder.record(conn, sorted(claims))
            rows = self._held(conn, token) if claims else []
        return [self._claimed(row, token) for row in rows]

    def _due_of(self, conn: Connection, bank: str, now: datetime, limit: int) -> list[Any]:
        t = self._table
        return list(
            conn.execute(
                select(t.c.notification_id, t.c.attempts)
                .where(t.c.status == PENDING, t.c.recipient_bank == bank,
                       t.c.next_attempt_at <= now)
                .order_by(t.c.next_attempt_at)
                .limit(limit)
            ).all()
        )  # fmt: skip

    def _held(self, conn: Connection, token: str) -> list[Any]:
        t, banks = self._table, table_of(Bank)
        return list(
            conn.execute(
                select(t, banks.c.webhook_url)
                .join(banks, banks.c.code == t.c.recipient_bank, isouter=True)
                .where(t.c.claim_token == token, t.c.status == PENDING)
                .order_by(t.c.recipient_bank, t.c.notification_id)
            )
            .mappings()
            .all()
        )

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
        decided = decide(finished, now, self.schedule, self.rng)
        try:  # the common case: every lease still ours, no lookup needed
            announcements = self._finish(decided, now, check_leases=False)
        except GuardFailed:  # another dispatcher took a lease over meanwhile
            announcements = self._finish(decided, now, check_leases=True)
        self._count(decided)
        return announcements

    def _finish(self, decided: Decided, now: datetime, check_leases: bool) -> list[Announcement]:
        announcements: list[Announcement] = []
        rows: list[Write] = list(decided.attempts)
        with self.engine.begin() as conn:
            ending = decided.ending
            if check_leases:
                ours = self._leases_held(conn, [e.finished.claimed for e in ending])
                ending = tuple(e for e in ending if self._lease_of(e) in ours)
            for e in ending:
                done, emitted, announcement = self._done(e, now)
                rows += [done, emitted]
                announcements.append(announcement)
            self.recorder.record(conn, [*rows, *decided.retries])
        return announcements

    @staticmethod
    def _lease_of(e: Ending) -> tuple[str, str]:
        c = e.finished.claimed
        return c.notification.notification_id, c.token

    def _done(self, e: Ending, now: datetime) -> tuple[NotificationDone, Write, Announcement]:
        """The finishing row, its stored ``PaymentNotified`` and the message to produce."""
        c = e.finished.claimed
        nid = c.notification.notification_id
        done = NotificationDone(nid, c.token, c.attempts_before, e.state.value, e.attempts,
                                e.last_error, now)  # fmt: skip
        record = notified_event(c, e.state.value, e.attempts, self.sender_name)
        message, emitted = self.outbox.encode(c.source_event_id, Emit(PAYMENT_NOTIFIED, record))
        return done, emitted, Announcement(nid, message)

    def _leases_held(self, conn: Connection, claimed: Sequence[Claimed]) -> set[tuple[str, str]]:
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

    def _count(self, decided: Decided) -> None:
        """``sakk_notification_deliveries_total``: delivered, retry, failed (given up)."""
        given_up = decided.ended(NotificationStatus.FAILED)
        counts = (
            ("delivered", len(decided.ended(NotificationStatus.DELIVERED))),
            ("retry", len(decided.retries)),
            ("failed", len(given_up)),
        )
        for status, count in counts:
            if count:
                metrics.NOTIFICATION_DELIVERIES.labels(self.sender_name, status).inc(count)
        for e in given_up:
            bank = e.finished.claimed.notification.recipient_bank
            metrics.NOTIFICATIONS_GIVEN_UP.labels(bank).inc()

    def release(self, claimed: Sequence[Claimed], now: datetime) -> None:
        """Give back leases never attempted (a stop): due again now, for any dispatcher."""
        rows = [LeaseReleased(c.notification.notification_id, c.token, now) for c in claimed]
        with self.engine.begin() as conn:
            self.recorder.record(conn, rows)

    def mark_announced(self, notification_ids: Sequence[str], now: datetime) -> None:
        """After the broker acknowledged them: these ``PaymentNotified`` need no sweep."""
        rows = [NotificationAnnounced(nid, now) for nid in sorted(notification_ids)]
        with self.engine.begin() as conn:
            self.recorder.record(conn, rows)

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
