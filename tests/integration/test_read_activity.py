"""The overview's counts on both databases: payments per minute by channel and outcome,
notifications per bank and status; a bank counts only its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from engine.ledger.models import Notification
from engine.read.activity import (
    MAX_MINUTES,
    latest_payment_at,
    notification_counts,
    payments_per_minute,
)
from engine.read.audience import Audience
from engine.read.exceptions import ReadError
from engine.read.snapshot import snapshot
from tests.factories import AMINA, KARIM, RAM, YOUSSEF, payment
from tests.integration.test_audit_tamper import build_ledger

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _payments() -> list[dict[str, Any]]:
    """Minute 0: two 007->011 and one 007->007; minute 1: one 011->007; minute 3: a 007->007
    one too large for Amina's balance (failed)."""
    at = [START + timedelta(seconds=s) for s in (5, 20, 40, 70)]
    out = [
        payment(AMINA, KARIM, 100, occurred_at=at[0], reference="M0-1"),
        payment(AMINA, KARIM, 200, occurred_at=at[1], reference="M0-2"),
        payment(YOUSSEF, RAM, 300, occurred_at=at[2], reference="M0-3"),
        payment(KARIM, AMINA, 400, occurred_at=at[3], reference="M1-1"),
    ]
    late = START + timedelta(minutes=3, seconds=1)
    return out + [payment(YOUSSEF, RAM, 10**13, occurred_at=late, reference="M3-1")]


@pytest.fixture
def ledger(database_url: str):  # type: ignore[no-untyped-def]
    engine = build_ledger(database_url, _payments())
    yield engine
    engine.dispose()


def _counts(rows: list[Any]) -> dict[tuple[int, str, str], int]:
    return {(int((r.minute - START).total_seconds() // 60), r.channel, r.state): r.payments
            for r in rows}  # fmt: skip


def test_payments_are_counted_per_minute_channel_and_state(ledger):
    with snapshot(ledger) as conn:
        rows = payments_per_minute(conn, Audience.operator(), START, START + timedelta(hours=1))
        latest = latest_payment_at(conn, Audience.operator())
    counts = _counts(rows)
    assert counts[(0, "WEB", "SETTLED")] == 3
    assert counts[(1, "WEB", "SETTLED")] == 1
    assert sum(n for (minute, _, _), n in counts.items() if minute == 3) == 1
    assert (3, "WEB", "SETTLED") not in counts
    assert all(r.minute.tzinfo is not None for r in rows)
    assert latest == START + timedelta(minutes=3, seconds=1)


def test_a_bank_counts_only_payments_it_pays_or_receives(ledger):
    with snapshot(ledger) as conn:
        bank_011 = _counts(
            payments_per_minute(conn, Audience.bank("011"), START, START + timedelta(hours=1))
        )
        latest = latest_payment_at(conn, Audience.bank("011"))
    assert bank_011 == {(0, "WEB", "SETTLED"): 2, (1, "WEB", "SETTLED"): 1}
    assert latest == START + timedelta(seconds=70)


def test_the_span_is_bounded(ledger):
    with snapshot(ledger) as conn:
        with pytest.raises(ReadError, match=str(MAX_MINUTES)):
            payments_per_minute(
                conn, Audience.operator(), START, START + timedelta(minutes=MAX_MINUTES + 1)
            )
        with pytest.raises(ReadError):
            payments_per_minute(conn, Audience.operator(), START, START)


def test_notifications_are_counted_per_bank_and_status_a_bank_its_own(ledger):
    rows = [("n1", "007", "PENDING"), ("n2", "007", "DELIVERED"), ("n3", "011", "PENDING"),
            ("n4", "011", "PENDING")]  # fmt: skip
    with ledger.begin() as conn:
        conn.execute(
            insert(Notification),
            [_notification(nid, bank, status) for nid, bank, status in rows],
        )
    with snapshot(ledger) as conn:
        every = notification_counts(conn, Audience.operator())
        own = notification_counts(conn, Audience.bank("011"))
    assert {(c.recipient_bank, c.status): c.notifications for c in every} == {
        ("007", "DELIVERED"): 1, ("007", "PENDING"): 1, ("011", "PENDING"): 2,
    }  # fmt: skip
    assert [(c.recipient_bank, c.status, c.notifications) for c in own] == [("011", "PENDING", 2)]


def _notification(notification_id: str, bank: str, status: str) -> dict[str, Any]:
    return {
        "notification_id": notification_id, "payment_id": "007:P-1", "outcome": "SETTLED",
        "recipient_bank": bank, "sender": "notification", "status": status, "attempts": 0,
        "round": 1, "payload": "{}", "source_event_id": "007:E-1", "created_at": START,
    }  # fmt: skip
