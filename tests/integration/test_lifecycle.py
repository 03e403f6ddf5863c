"""The lifecycle through the embedded broker, on SQLite and PostgreSQL.

Authorizations, captures, voids, expiries, refunds and returns, published as the banks
publish them (signed, on payments.initiated, keyed by the payer's account), each applied
once and told to both banks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from engine.ledger.balances import balance_of
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.models import (
    AccountKind,
    Hold,
    Notification,
    Payment,
    PaymentStep,
    Posting,
)
from engine.ledger.reference import internal_account
from sakk.app import TOPOLOGY
from tests.factories import AMINA, KARIM, RAM, SALMA, authorization, payment, step, switch_id

pytestmark = pytest.mark.integration

POS_HOLD = timedelta(days=3)  # the fixture's hold life on the POS channel
STEP_POSTINGS = ("CAPTURE", "REFUND", "RETURN")


def done(flow: Any, payments: int, steps: int) -> bool:
    """Every payment answered, every step applied or refused, every notification finished."""
    with flow.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        expected, finished = expected_notifications(conn)
    return (
        counts.terminal + counts.dead_lettered >= payments
        and counts.steps_applied + counts.steps_refused >= steps
        and finished >= expected
    )


def run(flow: Any, payments: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
    """Publish the payments, then their steps, and wait until all of it is done."""
    flow.publish(payments)
    flow.publish_steps(steps)
    flow.wait_until(lambda: done(flow, len(payments), len(steps)))


def payment_row(flow: Any, record: dict[str, Any]) -> Any:
    with flow.engine.connect() as conn:
        return conn.execute(select(Payment).where(Payment.payment_id == switch_id(record))).one()


def step_rows(flow: Any, record: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(kind, outcome, reason) of the payment's steps, in the order they were asked."""
    ps = PaymentStep.__table__
    with flow.engine.connect() as conn:
        rows = conn.execute(
            select(ps.c.kind, ps.c.outcome, ps.c.reason_code)
            .where(ps.c.payment_id == switch_id(record))
            .order_by(ps.c.occurred_at, ps.c.bank_reference)
        )
        return [tuple(r) for r in rows]


def told(flow: Any, record: dict[str, Any]) -> set[tuple[str, str]]:
    """(outcome, bank) of every notification about the payment."""
    n = Notification.__table__
    with flow.engine.connect() as conn:
        rows = conn.execute(
            select(n.c.outcome, n.c.recipient_bank).where(n.c.payment_id == switch_id(record))
        )
        return {(r.outcome, r.recipient_bank) for r in rows}


def balance(flow: Any, number: str) -> int:
    with flow.engine.connect() as conn:
        return balance_of(conn, number)


def ledger_ok(flow: Any) -> None:
    with flow.engine.connect() as conn:
        check = check_ledger(conn)
    assert check.ok, check.violations


def test_an_authorization_is_captured_in_parts_and_posted_once(flow_factory, database_url):
    flow = flow_factory(database_url)
    auth = authorization(KARIM, RAM, 15_000)  # payer at 011, merchant at 007
    first = step(auth, "CAPTURE", "007", 5_000, reference="CAP-1")
    last = step(auth, "CAPTURE", "007", 10_000, reference="CAP-2")

    run(flow, [auth], [first, last])  # published back to back: the partition keeps the order

    row = payment_row(flow, auth)
    assert (row.state, row.captured_minor) == ("CAPTURED", 15_000)
    assert step_rows(flow, auth) == [("CAPTURE", "APPLIED", None)] * 2
    assert balance(flow, KARIM[1]) == 20_000 - 15_000
    assert balance(flow, RAM[1]) == 15_000
    assert balance(flow, internal_account("011", AccountKind.SETTLEMENT, "MAD")) == 15_000
    with flow.engine.connect() as conn:
        postings = conn.execute(
            select(func.count()).select_from(Posting).where(Posting.payment_id == switch_id(auth))
        ).scalar_one()
        hold = conn.execute(select(Hold).where(Hold.payment_id == switch_id(auth))).one()
    assert postings == 2
    assert (hold.state, hold.reserved_minor) == ("CAPTURED", 0)
    assert told(flow, auth) == {
        (outcome, bank) for outcome in ("AUTHORIZE", "CAPTURE") for bank in ("011", "007")
    }
    ledger_ok(flow)


def test_six_holds_of_1000_on_a_balance_of_5000_the_sixth_is_refused(flow_factory, database_url):
    flow = flow_factory(database_url)
    holds = [authorization(SALMA, RAM, 100_000) for _ in range(6)]

    run(flow, holds, [])

    states = [payment_row(flow, h).state for h in holds]
    assert states == ["AUTHORIZED"] * 5 + ["FAILED"]
    assert payment_row(flow, holds[5]).reason_code == "AM04"
    assert balance(flow, SALMA[1]) == 500_000  # holds post nothing


def test_two_captures_that_fit_only_one_at_a_time_capture_once(flow_factory, database_url):
    flow = flow_factory(database_url)
    auth = authorization(AMINA, RAM, 30_000)
    both = [step(auth, "CAPTURE", "007", 20_000, reference=f"TWIN-{i}") for i in range(2)]

    run(flow, [auth], both)

    assert sorted(step_rows(flow, auth)) == [
        ("CAPTURE", "APPLIED", None), ("CAPTURE", "REFUSED", "AM09")
    ]  # fmt: skip
    assert payment_row(flow, auth).captured_minor == 20_000
    assert balance(flow, RAM[1]) == 20_000


def test_every_refused_step_posts_nothing_and_says_why(flow_factory, database_url):
    flow = flow_factory(database_url)
    capped = authorization(AMINA, RAM, 10_000)
    voided = authorization(AMINA, RAM, 2_000)
    expired = authorization(AMINA, RAM, 2_000, occurred_at=datetime.now(UTC) - POS_HOLD)
    sale = payment(AMINA, KARIM, 10_000)  # settled: 100.00 + 5.00 fee
    failed = payment(KARIM, AMINA, 50_000)  # Karim has 200.00
    ghost = authorization(AMINA, RAM, 1_000)  # never published
    steps = [
        step(capped, "CAPTURE", "007", 10_001),  # above the hold
        step(voided, "VOID", "007", reference="VOID-1"),
        step(voided, "CAPTURE", "007", reference="VOID-2"),  # of a voided hold
        step(expired, "CAPTURE", "007", occurred_at=datetime.now(UTC)),  # of an expired hold
        step(sale, "REFUND", "011", 10_001),  # above what is refundable
        step(failed, "REFUND", "007"),  # of a payment never settled
        step(ghost, "CAPTURE", "007"),  # of an unknown payment: as for one of others
        step(capped, "CAPTURE", "011", 1_000),  # by a bank that is no party
        step(capped, "VOID", "007", reference="VOID-1"),  # a reference used before: AM05
    ]
    before = {n: balance(flow, n) for n in (AMINA[1], KARIM[1], RAM[1])}

    run(flow, [capped, voided, expired, sale, failed], steps)

    with flow.engine.connect() as conn:
        refusals = dict(
            conn.execute(
                select(PaymentStep.step_id, PaymentStep.reason_code).where(
                    PaymentStep.outcome == "REFUSED"
                )
            ).all()
        )
        postings = conn.execute(
            select(func.count()).select_from(Posting).where(Posting.kind.in_(STEP_POSTINGS))
        ).scalar_one()
    assert [refusals.get(switch_id(s, "event_id")) for s in steps] == [
        "AM09", None, "AG01", "TM01", "AM09", "AG01", "AG01", "AG01", "AM05",
    ]  # fmt: skip
    assert postings == 0
    assert balance(flow, RAM[1]) == before[RAM[1]]
    assert payment_row(flow, capped).state == "AUTHORIZED"
    assert ("REFUSED", "011") in told(flow, capped)  # the bank that asked is told why
    ledger_ok(flow)


def test_an_expiry_racing_a_capture_exactly_one_wins_and_both_banks_are_told(
    flow_factory, database_url
):
    flow = flow_factory(database_url, expiry_interval_ms=50)
    now = datetime.now(UTC)
    auth = authorization(KARIM, RAM, 5_000, occurred_at=now - POS_HOLD + timedelta(seconds=1))
    expires_at = auth["occurred_at"] + POS_HOLD
    capture = step(auth, "CAPTURE", "007", occurred_at=expires_at - timedelta(milliseconds=1))

    flow.publish([auth])
    flow.wait_until(lambda: done(flow, 1, 0))
    flow.wait_until(lambda: datetime.now(UTC) >= expires_at, timeout_s=5)
    flow.publish_steps([capture])  # the scheduler publishes the expiry meanwhile
    flow.wait_until(lambda: payment_row(flow, auth).state in ("CAPTURED", "EXPIRED"))
    flow.wait_until(lambda: done(flow, 1, 1))

    state = payment_row(flow, auth).state
    winner = "CAPTURE" if state == "CAPTURED" else "EXPIRE"
    applied = [kind for kind, outcome, _ in step_rows(flow, auth) if outcome == "APPLIED"]
    assert applied == [winner]
    assert {(winner, "011"), (winner, "007")} <= told(flow, auth)
    loser = "EXPIRE" if winner == "CAPTURE" else "CAPTURE"
    assert not any(outcome == loser for outcome, _ in told(flow, auth))
    assert balance(flow, RAM[1]) == (5_000 if winner == "CAPTURE" else 0)
    ledger_ok(flow)


def test_a_refund_of_an_interbank_payment_moves_both_net_positions_back(flow_factory, database_url):
    flow = flow_factory(database_url)
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE")  # 25 bps: 0.25 MAD fee
    refund = step(sale, "REFUND", "011")

    run(flow, [sale], [refund])

    assert payment_row(flow, sale).state == "REFUNDED"
    for bank in ("007", "011"):
        assert balance(flow, internal_account(bank, AccountKind.SETTLEMENT, "MAD")) == 0
    assert balance(flow, AMINA[1]) == 100_000 - 25  # the purchase's fee is not given back
    assert balance(flow, KARIM[1]) == 20_000 - 200  # the refund's own 2.00 MAD fee
    assert balance(flow, internal_account("011", AccountKind.FEE_INCOME, "MAD")) == 200
    assert told(flow, sale) >= {("REFUND", "007"), ("REFUND", "011")}
    ledger_ok(flow)


def test_a_returned_credit_goes_back_to_the_payer_with_its_reason(flow_factory, database_url):
    flow = flow_factory(database_url)
    transfer = payment(AMINA, KARIM, 10_000)
    returned = step(transfer, "RETURN", "011", reason_code="AC04")

    run(flow, [transfer], [returned])

    row = payment_row(flow, transfer)
    assert (row.state, row.refunded_minor) == ("RETURNED", 10_000)
    assert step_rows(flow, transfer) == [("RETURN", "APPLIED", "AC04")]
    assert balance(flow, AMINA[1]) == 100_000 - 500  # the transfer's fee stays
    assert balance(flow, KARIM[1]) == 20_000
    ledger_ok(flow)


def test_the_ledger_refuses_an_illegal_transition_whoever_asks(flow_factory, database_url):
    flow = flow_factory(database_url, consumers=())
    rejected = payment(AMINA, KARIM, 0)
    with flow.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO payments (payment_id, initiated_event_id, bank_reference, payer_bank,"
                " payer_account, payee_bank, payee_account, amount_minor, currency, channel,"
                " payment_type, occurred_at, state, intent, refunded_minor) VALUES (:p, :e, 'R',"
                " '007', :a, '011', :b, 0, 'MAD', 'WEB', 'TRANSFER', :t, 'REJECTED', 'SALE', 0)"
            ),
            {"p": switch_id(rejected), "e": switch_id(rejected, "event_id"), "a": AMINA[1],
             "b": KARIM[1], "t": rejected["occurred_at"]},
        )  # fmt: skip
    with (
        pytest.raises(IntegrityError, match="illegal payment transition"),
        flow.engine.begin() as conn,
    ):
        conn.execute(
            text("UPDATE payments SET state = 'SETTLED' WHERE payment_id = :p"),
            {"p": switch_id(rejected)},
        )
    assert payment_row(flow, rejected).state == "REJECTED"
