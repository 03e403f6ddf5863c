"""The notification stage's pure decision: who is told, what, when it falls due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.notification import NotificationContext, NotificationStage, notification_id
from engine.config import load_settings
from engine.ledger.recorder import DueNotification
from engine.pipeline.contract import Decision, Refusal
from tests.factories import AMINA, KARIM, RAM, inbound, payment

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CONTEXT = NotificationContext(NOW, NOW + timedelta(hours=24))
STAGE = NotificationStage(load_settings(environ={}), "webhook")


def test_a_settled_interbank_payment_is_told_to_both_banks_due_now() -> None:
    record = payment(AMINA, KARIM, 1_000, fee_minor=0, settlement_window="2026-12-01")

    decision = STAGE.decide(inbound("payments.settled", "PaymentSettled", record), CONTEXT)

    assert isinstance(decision, Decision) and decision.outcome == "notified"
    rows = [w for w in decision.writes if isinstance(w, DueNotification)]
    assert [r.recipient_bank for r in rows] == ["007", "011"]
    assert {r.notification_id for r in rows} == {
        notification_id(record["payment_id"], "SETTLED", bank) for bank in ("007", "011")
    }
    assert all(
        r.next_attempt_at == NOW and r.deadline_at == NOW + timedelta(hours=24) for r in rows
    )
    assert all(r.status == "PENDING" and r.attempts == 0 for r in rows)


def test_a_rejection_is_told_to_the_payer_bank_alone() -> None:
    record = payment(AMINA, KARIM, 1_000, reason_code="AC01", reason_message="unknown account")

    decision = STAGE.decide(inbound("payments.rejected", "PaymentRejected", record), CONTEXT)

    assert isinstance(decision, Decision)
    assert [w.recipient_bank for w in decision.writes] == ["007"]  # type: ignore[union-attr]


def test_a_payment_within_one_bank_is_told_once() -> None:
    record = payment(AMINA, RAM, 1_000, fee_minor=0, settlement_window="2026-12-01")

    decision = STAGE.decide(inbound("payments.settled", "PaymentSettled", record), CONTEXT)

    assert isinstance(decision, Decision) and len(decision.writes) == 1


def test_an_event_the_stage_does_not_expect_is_refused() -> None:
    decision = STAGE.decide(inbound("payments.settled", "PaymentInitiated", payment()), CONTEXT)

    assert decision == Refusal("unexpected_event", "PaymentInitiated on payments.settled")
