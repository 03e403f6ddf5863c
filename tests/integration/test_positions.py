"""Interbank caps and liquidity through the settlement processor, on SQLite and PostgreSQL.

Bank 007 gets a net debit cap of 500.00 MAD and deposits 600.00 (a ``FundsIn``); its
customers pay bank 011's. What users rely on: a payment exactly at the cap passes and
one minor unit more fails (AM23); a withdrawal that would leave less than the position
is refused (AM04); two settlement instances racing on the bank's cap never exceed it;
a threshold crossed in one batch alerts the bank once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from consumers.settlement import Settlement
from consumers.validator import Validator
from engine.config import Settings, load_settings
from engine.domain.notifications import CAP_ALERT
from engine.events import FUNDS_IN, FUNDS_OUT, PAYMENT_INITIATED, EventType
from engine.ledger.checks import check_ledger
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import BankLimit, LiquidityMovement, Notification, Payment
from engine.ledger.positions import exposures, read_banks
from engine.ledger.recorder import GuardFailed
from engine.ledger.reference import load_reference_data, read_file
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from engine.serialization import AvroCodec
from sakk.app import make_codec
from tests.factories import AMINA, KARIM, REFERENCE_FILE, SALMA, YOUSSEF, payment, signed

pytestmark = pytest.mark.integration

CAP = 50_000  # 500.00 MAD
DEPOSIT = 60_000


class Switch:
    """A ledger with bank 007 bounded, and the validator and settlement to feed it."""

    def __init__(self, database_url: str, tmp_path: Path, alert_percent: int = 100) -> None:
        self.settings: Settings = load_settings(
            environ={}, database_url=database_url, data_dir=tmp_path
        )
        upgrade(self.settings.ledger_url)
        self.engine: Engine = make_engine(self.settings.ledger_url)
        load_reference_data(self.engine, read_file(REFERENCE_FILE))
        with self.engine.begin() as conn:
            conn.execute(insert(BankLimit).values(
                bank_code="007", currency="MAD", net_debit_cap_minor=CAP,
                alert_percent=alert_percent,
            ))  # fmt: skip
        self.codec: AvroCodec = make_codec(self.settings)
        self.offset = 0
        self.settlement = self.instance()
        self.settle([self.movement(FUNDS_IN, DEPOSIT)])

    def instance(self) -> BatchProcessor:
        return BatchProcessor(Settlement(self.settings), self.engine, self.codec, self.settings)

    def validated(self, *amounts_and_payers: tuple[int, tuple[str, str]]) -> list[RawMessage]:
        """Validated payments to KARIM (bank 011), as settlement's input."""
        topic = PAYMENT_INITIATED.topic(self.settings)
        initiated = []
        for i, (amount, payer) in enumerate(amounts_and_payers):
            record = payment(payer, KARIM, amount)
            key = PAYMENT_INITIATED.key(record)
            value = self.codec.encode(PAYMENT_INITIATED.name, record)
            ms = int(record["occurred_at"].timestamp() * 1000)
            headers = signed(topic, key, value, payer[0])
            initiated.append(RawMessage(topic, 0, self.offset + i, key, value, ms, headers))
        self.offset += len(initiated)
        out = BatchProcessor(Validator(self.settings), self.engine, self.codec, self.settings)
        return [self.next(m.topic, m.key, m.value) for m in out.process(initiated).outgoing]

    def movement(self, event: EventType, amount: int) -> RawMessage:
        movement_id = str(uuid.uuid4())
        record: dict[str, Any] = {
            "event_id": movement_id, "payment_id": movement_id, "bank_code": "007",
            "currency": "MAD", "amount_minor": amount,
            "occurred_at": datetime.now(UTC).replace(microsecond=0), "issued_by": "test",
            "causation_event_id": None,
        }  # fmt: skip
        value = self.codec.encode(event.name, record)
        return self.next(event.topic(self.settings), event.key(record), value)

    def next(self, topic: str, key: bytes | None, value: bytes | None) -> RawMessage:
        self.offset += 1
        return RawMessage(topic, 0, 1000 + self.offset, key, value, 0)

    def settle(self, batch: list[RawMessage], by: BatchProcessor | None = None) -> None:
        (by or self.settlement).process(batch)

    def states(self) -> list[tuple[str, str | None]]:
        p = Payment.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(p.c.state, p.c.reason_code).order_by(p.c.occurred_at, p.c.amount_minor)
            )
            return [(r.state, r.reason_code) for r in rows]

    def exposure(self) -> int:
        with self.engine.connect() as conn:
            return exposures(conn)[("007", "MAD")].total_minor


def test_a_payment_exactly_at_the_cap_passes_and_one_minor_unit_more_fails(
    database_url: str, tmp_path: Path
) -> None:
    switch = Switch(database_url, tmp_path)
    switch.settle(switch.validated((CAP, AMINA)))
    switch.settle(switch.validated((1, AMINA)))

    p = Payment.__table__
    with switch.engine.connect() as conn:
        failed = conn.execute(select(p.c.reason_message).where(p.c.state == "FAILED")).one()
        assert check_ledger(conn).ok
    assert sorted(switch.states()) == [("FAILED", "AM23"), ("SETTLED", None)]
    assert "over its net debit cap of 500.00 MAD by 0.01 MAD" in failed.reason_message
    assert switch.exposure() == CAP


def test_beyond_the_liquidity_deposited_is_refused_am04_before_the_cap(
    database_url: str, tmp_path: Path
) -> None:
    switch = Switch(database_url, tmp_path)
    switch.settle([switch.movement(FUNDS_OUT, DEPOSIT - CAP + 1)])  # leaves 499.99 deposited
    switch.settle(switch.validated((CAP, AMINA)))
    assert switch.states() == [("FAILED", "AM04")]


def test_funds_out_is_refused_when_it_would_leave_less_than_the_position(
    database_url: str, tmp_path: Path
) -> None:
    switch = Switch(database_url, tmp_path)
    switch.settle(switch.validated((40_000, AMINA)))
    switch.settle([switch.movement(FUNDS_OUT, DEPOSIT - 40_000 + 1)])
    switch.settle([switch.movement(FUNDS_OUT, DEPOSIT - 40_000)])

    m = LiquidityMovement.__table__
    with switch.engine.connect() as conn:
        rows = conn.execute(
            select(m.c.kind, m.c.outcome, m.c.reason_code, m.c.amount_minor).order_by(
                m.c.amount_minor
            )
        ).all()
        liquidity = read_banks(conn)[("007", "MAD")].liquidity_minor
        assert check_ledger(conn).ok
    assert [tuple(r) for r in rows] == [
        ("FUNDS_OUT", "POSTED", None, 20_000),
        ("FUNDS_OUT", "REFUSED", "AM04", 20_001),
        ("FUNDS_IN", "POSTED", None, DEPOSIT),
    ]
    assert liquidity == 40_000  # exactly the position: nothing more may leave


def test_two_instances_racing_on_one_banks_cap_never_exceed_it(
    database_url: str, tmp_path: Path
) -> None:
    switch = Switch(database_url, tmp_path)
    one, two = switch.validated((30_000, AMINA)), switch.validated((30_000, YOUSSEF))
    first, second = switch.instance(), switch.instance()
    decoded_one, _ = first._decode(one, None)
    decoded_two, _ = second._decode(two, None)

    plan_one, plan_two = first._plan(decoded_one, []), second._plan(decoded_two, [])  # same view
    first._commit(plan_one)
    with pytest.raises(GuardFailed):  # each passed its own check: the row's guard refuses one
        second._commit(plan_two)
    second.process(two)  # what its service loop does next: planned again, refused

    assert sorted(switch.states()) == [("FAILED", "AM23"), ("SETTLED", None)]
    assert switch.exposure() == 30_000


def test_a_threshold_crossed_within_one_batch_alerts_the_bank_once(
    database_url: str, tmp_path: Path
) -> None:
    switch = Switch(database_url, tmp_path, alert_percent=50)
    switch.settle(switch.validated((10_000, AMINA), (20_000, YOUSSEF), (5_000, SALMA)))
    switch.settle(switch.validated((1_000, AMINA)))  # still above: no second alert

    n = Notification.__table__
    with switch.engine.connect() as conn:
        alerts = conn.execute(
            select(n.c.recipient_bank, n.c.payload).where(n.c.outcome == CAP_ALERT)
        ).all()
    assert len(alerts) == 1 and alerts[0].recipient_bank == "007"
    assert '"share_used_bps": 7000' in alerts[0].payload
