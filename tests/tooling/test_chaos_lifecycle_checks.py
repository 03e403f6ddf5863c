"""The lifecycle invariants on a real SQLite ledger, fed Kafka-free through the stages.

Authorizations captured in part and in full, voided and expired, a purchase refunded,
a transfer returned, and steps refused: a clean flow keeps every invariant, and each
doctored ledger or wire is caught by the invariant it breaks.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update

from consumers.expiry import expiry_event
from engine.ledger.models import (
    Hold,
    LedgerEntry,
    Notification,
    NotificationAttempt,
    Payment,
    PaymentStep,
    PaymentTransition,
)
from tests.factories import (
    AMINA,
    KARIM,
    RAM,
    SALMA,
    authorization,
    payment,
    signed,
    step,
    switch_id,
)  # fmt: skip
from tests.tooling.test_chaos_invariants import Pump
from tooling.chaos.invariants import Evidence, check_all
from tooling.chaos.wire import WireRecord
from tooling.workload.chaos import ExpectedPayment, Workload
from tooling.workload.core import ExpectedStep, Message
from tooling.workload.flows import APPLIED, REFUSED

POS_HOLD = timedelta(days=3)  # the fixture's hold life on the POS channel


class Story:
    """The payments and steps of the flow, and what each must end as."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.records: list[tuple[str, dict[str, Any]]] = []  # (event type, record)
        self.payments: dict[str, ExpectedPayment] = {}
        self.steps: dict[str, ExpectedStep] = {}
        self.ids: dict[str, dict[str, Any]] = {}  # name -> record

    def pay(self, name: str, record: dict[str, Any], state: str, captured: int, back: int = 0):
        self.records.append(("PaymentInitiated", record))
        self.ids[name] = record
        self.payments[switch_id(record)] = ExpectedPayment(
            switch_id(record), name, {state: None}, captured, back
        )
        return record

    def ask(self, name: str, of: str, kind: str, sender: str, amount: int | None = None,
            outcome: str = APPLIED, reason: str | None = None, applied: int | None = None,
            **extra: Any) -> None:  # fmt: skip
        record = step(self.ids[of], kind, sender, amount, **extra)
        record["occurred_at"] = extra.get("occurred_at") or self.now
        self.records.append(("PaymentStepRequested", record))
        self.ids[name] = record
        self.steps[switch_id(record, "event_id")] = ExpectedStep(
            switch_id(record, "event_id"), switch_id(record), of, kind, sender, outcome, reason,
            applied if outcome == APPLIED else None,
        )  # fmt: skip


def story(now: datetime) -> Story:
    s = Story(now)
    s.pay("card", authorization(AMINA, RAM, 10_000, occurred_at=now), "CAPTURED", 5_000)
    s.ask("above", "card", "CAPTURE", "007", 999_999, REFUSED, "AM09")
    s.ask("partial", "card", "CAPTURE", "007", 3_000, applied=3_000)
    s.ask("final", "card", "CAPTURE", "007", 2_000, applied=2_000, final=True)
    s.pay("voided", authorization(SALMA, RAM, 20_000, occurred_at=now), "VOIDED", 0)
    s.ask("void", "voided", "VOID", "007", applied=20_000)
    s.ask("too_late", "voided", "CAPTURE", "007", 1_000, REFUSED, "AG01")
    expired = authorization(SALMA, RAM, 4_000, occurred_at=now - POS_HOLD - timedelta(seconds=1))
    s.pay("expiring", expired, "EXPIRED", 0)
    s.ask("after_expiry", "expiring", "CAPTURE", "007", 1_000, REFUSED, "TM01")
    expiry = expiry_event(switch_id(expired), SALMA[1], now - timedelta(seconds=1))
    s.steps[expiry["event_id"]] = ExpectedStep(
        expiry["event_id"], switch_id(expired), "expiring", "EXPIRE", "SAKK", APPLIED, None,
        4_000,
    )  # fmt: skip
    s.pay("purchase", payment(SALMA, RAM, 50_000, "WEB", "PURCHASE", occurred_at=now),
          "SETTLED", 50_000, 10_000)  # fmt: skip
    s.ask("refund", "purchase", "REFUND", "007", 10_000, applied=10_000)
    s.ask("refund_above", "purchase", "REFUND", "007", 40_001, REFUSED, "AM09")
    s.pay("transfer", payment(AMINA, KARIM, 5_000, occurred_at=now), "RETURNED", 5_000, 5_000)
    s.ask("return", "transfer", "RETURN", "011", applied=5_000, reason_code="AC04")
    return s


def lifecycle_flow(ledger) -> tuple[Pump, Evidence, Story]:  # noqa: F811 - the fixture
    settings, engine, balances = ledger
    pump = Pump(settings, engine)
    now = datetime.now(UTC).replace(microsecond=0)
    s = story(now)
    topic = settings.topic("initiated")
    messages = []
    for event_type, r in s.records:
        key, value = r["payer_account"].encode(), pump.codec.encode(event_type, r)
        bank = r.get("sender_bank") or r["payer_bank"]
        messages.append(Message(key, value, "x", r.get("payer_bank") and switch_id(r),
                                signed(topic, key, value, bank)))  # fmt: skip
    workload = Workload(1, messages, s.payments, Counter(), s.steps)
    pump.publish(messages)
    pump.run()
    pump.expire(now)
    pump.run()
    return pump, Evidence(settings, pump.codec, workload, balances, pump.wire, None), s


def set_step(engine: Engine, step_id: str, **values: Any) -> None:
    """Doctor one ``payment_steps`` row."""
    with engine.begin() as conn:
        conn.execute(update(PaymentStep).where(PaymentStep.step_id == step_id).values(**values))


def violations(engine: Engine, evidence: Evidence) -> list[str]:
    with engine.connect() as conn:
        return check_all(conn, evidence)[1]


@pytest.fixture
def lifecycle(ledger):  # noqa: F811 - the fixture
    pump, evidence, s = lifecycle_flow(ledger)
    return ledger[1], pump, evidence, s


def test_a_clean_lifecycle_keeps_every_invariant(lifecycle):
    engine, _pump, evidence, _s = lifecycle
    with engine.connect() as conn:
        checked, found = check_all(conn, evidence)
    assert found == []
    assert checked.states == Counter(
        {"CAPTURED": 1, "VOIDED": 1, "EXPIRED": 1, "SETTLED": 1, "RETURNED": 1}
    )
    assert checked.holds == Counter({"CAPTURED": 1, "VOIDED": 1, "EXPIRED": 1})
    assert checked.steps["CAPTURE APPLIED"] == 2 and checked.steps["EXPIRE APPLIED"] == 1
    assert checked.refusals == Counter({"AM09": 2, "AG01": 1, "TM01": 1})


def test_a_second_delivery_of_the_whole_wire_changes_nothing(lifecycle):
    engine, pump, evidence, s = lifecycle
    pump.expire(s.now)  # nothing is due any more: the hold expired
    pump.run()
    assert violations(engine, evidence) == []


def test_a_hold_resolved_twice_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    steps = evidence.wire["steps"]
    final = next(
        r for r in steps
        if evidence.codec.decode(r.value).record["step_id"] == switch_id(s.ids["final"], "event_id")
    )  # fmt: skip
    record = evidence.codec.decode(final.value).record | {"event_id": "e2", "step_id": "forged"}
    again = evidence.codec.encode("PaymentStepCompleted", record | {"step": "VOID"})
    steps.append(WireRecord(final.topic, 0, len(steps), final.key, again, ()))  # type: ignore[attr-defined]
    found = violations(engine, evidence)
    pid = switch_id(s.ids["card"])
    assert any(f"hold of {pid} (CAPTURED) resolved 2 times" in v for v in found), found


def test_captures_above_the_hold_are_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    set_step(engine, switch_id(s.ids["partial"], "event_id"), amount_minor=9_000)
    found = violations(engine, evidence)
    pid = switch_id(s.ids["card"])
    hold = f"lifecycle: hold of payment {pid}: captures sum to 11000"  # the product's auditor
    assert f"{hold}, above the hold's 10000" in found, found
    assert f"{hold}, the hold says 5000" in found


def test_refunds_above_what_was_captured_are_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    set_step(engine, switch_id(s.ids["refund"], "event_id"), amount_minor=60_000)
    found = violations(engine, evidence)
    pid = switch_id(s.ids["purchase"])
    assert f"lifecycle: payment {pid}: refunds and returns sum to 60000, it says 10000" in found
    assert any(f"of payment {pid}: its posting gives the receiver 10000, not 60000" in v
               for v in found)  # fmt: skip


def test_an_available_balance_below_zero_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    with engine.begin() as conn:
        conn.execute(
            update(Hold)
            .where(Hold.payment_id == switch_id(s.ids["voided"]))
            .values(state="ACTIVE", reserved_minor=10**9, resolved_by=None)
        )
    found = violations(engine, evidence)
    assert any(v.startswith(f"lifecycle: account {SALMA[1]}: available balance -") for v in found)


def test_a_balance_that_went_below_its_overdraft_is_caught(lifecycle):
    """A debit and its reversal appended later: the balance ends right, went below zero."""
    engine, _pump, evidence, _s = lifecycle
    with engine.begin() as conn:
        posting = conn.execute(select(LedgerEntry.posting_id)).scalars().first()
        conn.execute(LedgerEntry.__table__.insert(), [
            {"posting_id": posting, "account_number": AMINA[1], "amount_minor": amount,
             "currency": "MAD", "chain_id": 999, "chain_seq": seq, "prev_hash": "0" * 64,
             "entry_hash": "0" * 64}
            for seq, amount in ((1, -(10**9)), (2, 10**9))
        ])  # fmt: skip
    found = violations(engine, evidence)
    assert any(
        v.startswith(f"lifecycle: account {AMINA[1]}: balance -") and "below its overdraft" in v
        for v in found
    ), found


def test_a_lost_step_and_a_step_nobody_asked_are_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    lost = switch_id(s.ids["void"], "event_id")
    with engine.begin() as conn:
        conn.execute(delete(PaymentStep).where(PaymentStep.step_id == lost))
    del evidence.workload.steps[switch_id(s.ids["return"], "event_id")]
    found = violations(engine, evidence)
    assert any(f"step {lost} (voided: VOID by 007) was never recorded" in v for v in found)
    assert any(
        f"step {switch_id(s.ids['return'], 'event_id')} (RETURN APPLIED) recorded, never published"
        in v
        for v in found
    )


def test_a_step_refused_with_another_reason_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    sid = switch_id(s.ids["too_late"], "event_id")
    set_step(engine, sid, reason_code="AM09")
    assert any(
        f"step {sid} (voided: CAPTURE by 007) refused with AM09, expected AG01" in v
        for v in violations(engine, evidence)
    )


def test_a_step_told_to_nobody_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    pid = switch_id(s.ids["transfer"])
    with engine.begin() as conn:
        told = select(Notification.notification_id).where(
            Notification.payment_id == pid, Notification.outcome == "RETURN",
            Notification.recipient_bank == "011",
        )  # fmt: skip
        attempts = NotificationAttempt.__table__
        conn.execute(attempts.delete().where(attempts.c.notification_id.in_(told)))
        conn.execute(delete(Notification).where(Notification.notification_id.in_(told)))
    found = violations(engine, evidence)
    assert any(f"payment {pid}: notifications missing ['" in v for v in found), found


def test_an_applied_step_without_its_posting_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    sid = switch_id(s.ids["refund"], "event_id")
    set_step(engine, sid, posting_id=None)
    found = violations(engine, evidence)
    assert any(f"REFUND step {sid} of payment" in v and v.endswith(": no posting") for v in found)
    assert any("REFUND posting" in v and v.endswith(": no applied step") for v in found)


def test_a_payment_with_other_amounts_than_expected_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    pid = switch_id(s.ids["purchase"])
    with engine.begin() as conn:
        conn.execute(update(Payment).where(Payment.payment_id == pid).values(refunded_minor=0))
    found = violations(engine, evidence)
    assert any(f"{pid} (purchase) captured/refunded (50000, 0)" in v for v in found), found
    assert f"lifecycle: payment {pid}: refunds and returns sum to 10000, it says 0" in found


def test_a_payment_in_another_final_state_than_expected_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    pid = switch_id(s.ids["voided"])
    evidence.workload.payments[pid] = ExpectedPayment(pid, "voided", {"EXPIRED": None}, 0, 0)
    assert any(
        f"wrong outcome: {pid} (voided) is VOIDED" in v for v in violations(engine, evidence)
    )


def test_a_step_that_moved_its_payment_twice_is_caught(lifecycle):
    engine, _pump, evidence, s = lifecycle
    pid = switch_id(s.ids["card"])
    with engine.begin() as conn:
        row = (
            conn.execute(
                select(PaymentTransition.__table__).where(PaymentTransition.payment_id == pid)
            )
            .all()[-1]
            ._asdict()
        )
        conn.execute(PaymentTransition.__table__.insert(), [row | {"id": None}])
    assert any(v.startswith(f"effect: {pid} moved") for v in violations(engine, evidence))
