"""The expiry scheduler: a hold whose time has passed is released by an event, not by a clock.

Driven by time, it reads the ACTIVE holds whose ``expires_at`` has passed and publishes,
for each, a ``PaymentStepValidated`` EXPIRE step to payments.validated, keyed by the
payer's account like every other event of the payment. Settlement applies it as any
other step, exactly once; a capture or void that reached the partition first wins, and
the expiry is then refused (and told to nobody: the step that won was told to both
banks).

Why a replay stays deterministic: the wall clock only chooses *when* the scheduler
publishes. What the event says is fixed by the hold alone: its id is derived from the
payment id, its ``occurred_at`` is the hold's ``expires_at``. Publishing it twice (two
settlement instances, a restart) gives the same event, which settlement handles once.
And no decision reads the clock: settlement judges the expiry, and every capture, by
the events' own times.

The scheduler writes nothing to the ledger; it only reads it. payments.validated is the
switch's own topic (no bank may write it), which is why an expiry needs no bank's
signature.

It also keeps the hold gauges (``sakk_holds_outstanding``, ``sakk_holds_outstanding_minor``,
``sakk_holds_overdue``, ``sakk_holds_overdue_oldest_seconds``) and the share of its cap each
bank uses (``sakk_bank_cap_used_ratio``) from the ledger, every
``HOLD_GAUGES_EVERY_S``: the ledger's totals, the same whichever settlement process reads
them (the dashboard takes their ``max`` over replicas).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka.errors import KafkaError
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from engine import metrics
from engine.config import Settings
from engine.events import PAYMENT_STEP_VALIDATED, SWITCH, derived_event_id
from engine.kafka.client import Outgoing, make_producer, send_all
from engine.kafka.exceptions import KafkaProducerDeliveryError
from engine.ledger.database import read_only
from engine.ledger.models import Hold, HoldState, StepKind, table_of
from engine.ledger.positions import read_banks
from engine.risk.limits import Share
from engine.serialization import AvroCodec
from engine.times import as_utc

log = logging.getLogger(__name__)

REPUBLISH_AFTER_S = 60.0  # an expiry still not applied after this is published again
EXPIRY_REFERENCE = "EXPIRY"
HOLD_GAUGES_EVERY_S = 5.0  # Prometheus scrapes every 5 s (deploy/prometheus/prometheus.yml)


def expiry_event(payment_id: str, payer_account: str, expires_at: datetime) -> dict[str, Any]:
    """The expiry of one hold: the same record whenever and however often it is made."""
    return {
        "event_id": derived_event_id(payment_id, PAYMENT_STEP_VALIDATED.name, StepKind.EXPIRE),
        "payment_id": payment_id, "bank_reference": EXPIRY_REFERENCE,
        "occurred_at": expires_at, "sender_bank": SWITCH, "payer_account": payer_account,
        "step": StepKind.EXPIRE, "amount_minor": None, "currency": None, "final": False,
        "reason_code": None, "causation_event_id": None,
    }  # fmt: skip


def due_expiries(engine: Engine, now: datetime, limit: int) -> list[dict[str, Any]]:
    """The expiry events of the ACTIVE holds past their time, oldest first."""
    h = table_of(Hold)
    query = (
        select(h.c.payment_id, h.c.account_number, h.c.expires_at)
        .where(h.c.state == HoldState.ACTIVE, h.c.expires_at <= now)
        .order_by(h.c.expires_at)
        .limit(limit)
    )
    with read_only(engine).connect() as conn:
        rows = conn.execute(query).all()
    return [expiry_event(r.payment_id, r.account_number, as_utc(r.expires_at)) for r in rows]


@dataclass(frozen=True, slots=True)
class HoldTotals:
    """The ledger's active holds, for the gauges."""

    by_bank: list[tuple[str, str, int, int]]  # (payer's bank, currency, holds, reserved)
    overdue: int  # past their expiry time
    oldest_overdue_s: float  # how long the oldest of those is past it (0: none)


def hold_totals(engine: Engine, now: datetime) -> HoldTotals:
    """Active holds per (payer's bank, currency), and those past their expiry time."""
    h = table_of(Hold)
    active = h.c.state == HoldState.ACTIVE
    by_bank = (
        select(h.c.bank_code, h.c.currency, func.count(), func.sum(h.c.reserved_minor))
        .where(active)
        .group_by(h.c.bank_code, h.c.currency)
    )
    overdue = select(func.count(), func.min(h.c.expires_at)).where(active, h.c.expires_at <= now)
    with read_only(engine).connect() as conn:
        rows = conn.execute(by_bank).all()
        late, oldest = conn.execute(overdue).one()
    return HoldTotals(
        [(bank, cur, int(n), int(reserved or 0)) for bank, cur, n, reserved in rows],
        int(late or 0),
        max((now - as_utc(oldest)).total_seconds(), 0.0) if oldest is not None else 0.0,
    )


def cap_shares(engine: Engine) -> list[tuple[str, str, int, int]]:
    """(bank, currency, share of its cap used in basis points, alert percentage) of each
    bank with a cap, from its position row (``sakk_bank_cap_used_ratio``)."""
    with read_only(engine).connect() as conn:
        rows = read_banks(conn)
    return [
        (r.bank, r.currency, Share(r.exposure.total_minor, r.cap_minor).basis_points,
         r.alert_percent or 100)
        for r in rows.values() if r.cap_minor is not None
    ]  # fmt: skip


class ExpiryScheduler:
    """Publishes the expiries that are due, every ``expiry_interval_ms``, until stopped."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: AvroCodec,
        stop_event: threading.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.codec = codec
        self.stop_event = stop_event
        self.clock = clock
        self._published: dict[str, float] = {}  # payment id -> when its expiry was sent
        self._gauges = metrics.HoldGauges()
        self._gauges_due = 0.0  # monotonic time of the next read of the hold gauges

    def publish_due(self, send: Callable[[list[Outgoing]], int]) -> int:
        """Publish the expiries now due (not those sent in the last minute); how many."""
        now = time.monotonic()
        due = due_expiries(self.engine, self.clock(), self.settings.expiry_batch_max)
        fresh = [
            e for e in due if now - self._published.get(e["payment_id"], -REPUBLISH_AFTER_S)
            >= REPUBLISH_AFTER_S
        ]  # fmt: skip
        if not fresh:
            return 0
        topic = PAYMENT_STEP_VALIDATED.topic(self.settings)
        messages = [
            Outgoing(topic, PAYMENT_STEP_VALIDATED.key(e),
                     self.codec.encode(PAYMENT_STEP_VALIDATED.name, e))
            for e in fresh
        ]  # fmt: skip
        sent = send(messages)
        self._published = {
            pid: at for pid, at in self._published.items() if now - at < REPUBLISH_AFTER_S
        }
        self._published.update({e["payment_id"]: now for e in fresh})
        log.info("published %d hold expiries", sent)
        return sent

    def refresh_gauges(self) -> None:
        """Read the hold gauges from the ledger, at most every ``HOLD_GAUGES_EVERY_S``."""
        now = time.monotonic()
        if now < self._gauges_due:
            return
        self._gauges_due = now + HOLD_GAUGES_EVERY_S
        totals = hold_totals(self.engine, self.clock())
        self._gauges.set(totals.by_bank, totals.overdue, totals.oldest_overdue_s, time.time())
        metrics.set_bank_caps(cap_shares(self.engine))

    def run(self) -> None:
        producer = make_producer(self.settings, "sakk-expiry")
        timeout = self.settings.produce_timeout_s

        def send(messages: list[Outgoing]) -> int:
            return send_all(producer, messages, timeout)

        try:
            while not self.stop_event.is_set():
                try:
                    self.refresh_gauges()
                    self.publish_due(send)
                except (KafkaError, KafkaProducerDeliveryError, SQLAlchemyError) as exc:
                    log.warning("expiry round failed, tried again next round: %s", exc)
                self.stop_event.wait(self.settings.expiry_interval_ms / 1000)
        finally:
            producer.close(timeout=timeout)
