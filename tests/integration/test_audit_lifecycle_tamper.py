"""Tampering with the lifecycle's rows is found by ``audit verify`` and ``reconcile``.

The ledger is built by the stages' own ``BatchProcessor``s without a broker, with the
lifecycle's traffic: partial captures then a void, a whole capture, a void, an expiry
(fed to settlement as the scheduler publishes it), a hold left active, a partial refund
and a return. Each test alters it as someone with database access could, and checks
the one check meant to catch that alteration names it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from consumers.expiry import expiry_event
from engine.audit.chain import verify
from engine.audit.reconcile import reconcile
from engine.config import Settings, load_settings
from engine.ledger.checks import check_lifecycle
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import Hold, Payment, PaymentStep
from engine.ledger.postings import write_postings
from engine.ledger.reference import load_reference_data, read_file
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from engine.serialization import AvroCodec, SchemaRegistry
from sakk.app import TOPOLOGY, build_stage
from tests.factories import (
    AMINA,
    KARIM,
    RAM,
    REFERENCE_FILE,
    SALMA,
    authorization,
    payment,
    signed,
    step,
    switch_id,
)
from tests.unit.test_postings import draft

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
POS_HOLD = timedelta(days=3)  # the fixture's hold life on the POS channel


def traffic() -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The payments by name, and their steps in the order they are asked."""
    at = BASE + timedelta(minutes=5)
    p = {
        "split": authorization(SALMA, RAM, 100_000, occurred_at=BASE),
        "whole": authorization(KARIM, RAM, 5_000, occurred_at=BASE),
        "voided": authorization(AMINA, RAM, 2_000, occurred_at=BASE),
        "expiring": authorization(SALMA, RAM, 3_000, occurred_at=BASE),
        "active": authorization(SALMA, RAM, 7_000, occurred_at=BASE),
        "sale": payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE", occurred_at=BASE),
        "transfer": payment(AMINA, KARIM, 10_000, occurred_at=BASE),
    }
    steps = [
        step(p["split"], "CAPTURE", "007", 30_000, occurred_at=at),
        step(p["split"], "CAPTURE", "007", 20_000, occurred_at=at),
        step(p["split"], "VOID", "007", occurred_at=at),
        step(p["split"], "REFUND", "007", 10_000, occurred_at=at),
        step(p["whole"], "CAPTURE", "007", final=True, occurred_at=at),
        step(p["voided"], "VOID", "007", occurred_at=at),
        step(p["sale"], "REFUND", "011", 4_000, occurred_at=at),
        step(p["transfer"], "RETURN", "011", reason_code="AC04", occurred_at=at),
    ]
    return p, steps


class Builder:
    """The validator and settlement processors of one ledger, fed on partition 0."""

    def __init__(self, url: str) -> None:
        self.settings: Settings = load_settings(
            environ={}, database_url=url, topic_prefix="lifetamper"
        )
        upgrade(url)
        self.engine = make_engine(url)
        load_reference_data(self.engine, read_file(REFERENCE_FILE))
        self.codec = AvroCodec(SchemaRegistry.from_dir(self.settings.schemas_dir))
        self.validator = BatchProcessor(
            build_stage("validator", self.settings), self.engine, self.codec, self.settings
        )
        self.settlement = BatchProcessor(
            build_stage("settlement", self.settings), self.engine, self.codec, self.settings
        )
        self.offset = 0

    def publish(self, event_type: str, records: list[dict[str, Any]], signer: str) -> None:
        """As banks do: signed, on payments.initiated; what is validated goes to settlement."""
        topic = self.settings.topic("initiated")
        raw = []
        for r in records:
            key, value = r["payer_account"].encode(), self.codec.encode(event_type, r)
            ms = int(r["occurred_at"].timestamp() * 1000)
            headers = signed(topic, key, value, r[signer])
            raw.append(RawMessage(topic, 0, self.next(), key, value, ms, headers=headers))
        result = self.validator.process(raw)
        validated = self.settings.topic("validated")
        self.settle([m for m in result.outgoing if m.topic == validated], raw[0].timestamp_ms)

    def expire(self, record: dict[str, Any]) -> None:
        """The scheduler's expiry of ``record``'s hold, straight to settlement."""
        event = expiry_event(switch_id(record), record["payer_account"], BASE + POS_HOLD)
        value = self.codec.encode("PaymentStepValidated", event)
        message = RawMessage(
            self.settings.topic("validated"), 0, self.next(), record["payer_account"].encode(),
            value, int(event["occurred_at"].timestamp() * 1000),
        )  # fmt: skip
        self.settlement.process([message])

    def settle(self, messages: list[Any], ms: int) -> None:
        self.settlement.process(
            [RawMessage(m.topic, 0, self.next(), m.key, m.value, ms) for m in messages]
        )

    def next(self) -> int:
        self.offset += 1
        return self.offset


Traffic = tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]


def build(url: str, recorded: Traffic) -> Engine:
    """A ledger of ``recorded``: twice the same traffic gives twice the same ledger."""
    payments, steps = recorded
    builder = Builder(url)
    builder.publish("PaymentInitiated", list(payments.values()), "payer_bank")
    builder.publish("PaymentStepRequested", steps, "sender_bank")
    builder.expire(payments["expiring"])
    return builder.engine


@pytest.fixture
def recorded() -> Traffic:
    return traffic()


@pytest.fixture
def ledger(database_url: str, recorded: Traffic):  # type: ignore[no-untyped-def]
    engine = build(database_url, recorded)
    yield engine, recorded[0]
    engine.dispose()


def violations(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return check_lifecycle(conn).violations


def run(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def test_an_honest_lifecycle_ledger_verifies(ledger):
    engine, p = ledger
    with engine.connect() as conn:
        report = verify(conn)
        states = dict(conn.execute(select(Payment.payment_id, Payment.state)).all())
    assert report.ok, report.lifecycle.violations
    assert (report.lifecycle.holds, report.lifecycle.steps) == (5, 9)  # 8 asked + the expiry
    assert [states[switch_id(p[n])] for n in ("split", "whole", "voided", "expiring")] == [
        "CAPTURED", "CAPTURED", "VOIDED", "EXPIRED",
    ]  # fmt: skip
    assert report.summary()["lifecycle_violations"] == 0


def test_a_hold_resolved_twice_is_found(ledger):
    engine, p = ledger
    split = switch_id(p["split"])
    with engine.begin() as conn:
        conn.execute(
            PaymentStep.__table__.insert().values(
                step_id="second-void", payment_id=split, kind="VOID", sender_bank="007",
                bank_reference="AGAIN", occurred_at=BASE, amount_minor=0, fee_minor=0,
                currency="MAD", outcome="APPLIED",
            )
        )  # fmt: skip
    assert any(f"hold of payment {split} resolved 2 times" in v for v in violations(engine))


def test_a_hold_whose_state_its_steps_do_not_lead_to_is_found(ledger):
    engine, p = ledger
    voided = switch_id(p["voided"])
    run(engine, "UPDATE holds SET state = 'EXPIRED' WHERE payment_id = :p", p=voided)
    found = violations(engine)
    assert f"hold of payment {voided} is EXPIRED; its resolving step leads to VOIDED" in found
    assert f"hold of payment {voided} is EXPIRED but the payment is VOIDED" in found


def test_an_active_hold_that_a_step_resolved_is_found(ledger):
    engine, p = ledger
    whole = switch_id(p["whole"])
    run(engine, "UPDATE holds SET state = 'ACTIVE' WHERE payment_id = :p", p=whole)
    assert any(f"hold of payment {whole} is ACTIVE yet resolved" in v for v in violations(engine))


def test_captures_above_the_hold_are_found(ledger):
    engine, p = ledger
    split = switch_id(p["split"])
    run(
        engine,
        "UPDATE payment_steps SET amount_minor = 90000 WHERE payment_id = :p AND kind = 'CAPTURE'"
        " AND amount_minor = 30000",
        p=split,
    )
    found = violations(engine)
    assert f"hold of payment {split}: captures sum to 110000, above the hold's 100000" in found
    assert any("its posting gives the receiver 30000, not 90000" in v for v in found)


def test_captured_amounts_that_disagree_are_found(ledger):
    engine, p = ledger
    whole = switch_id(p["whole"])
    run(engine, "UPDATE payments SET captured_minor = 4000 WHERE payment_id = :p", p=whole)
    found = violations(engine)
    assert f"hold of payment {whole}: captures sum to 5000, the payment says 4000" in found


def test_a_hold_for_another_amount_than_its_authorization_is_found(ledger):
    engine, p = ledger
    active = switch_id(p["active"])
    run(engine, "UPDATE holds SET amount_minor = 9000 WHERE payment_id = :p", p=active)
    assert f"hold of payment {active} is 9000, the payment 7000" in violations(engine)


def test_a_step_that_moves_no_money_yet_names_a_posting_is_found(ledger):
    engine, p = ledger
    voided, whole = switch_id(p["voided"]), switch_id(p["whole"])
    with engine.connect() as conn:
        st = PaymentStep.__table__
        posting = conn.execute(select(st.c.posting_id).where(st.c.payment_id == whole)).scalar_one()
        void = conn.execute(select(st.c.step_id).where(st.c.payment_id == voided)).scalar_one()
    assert not any("yet posts nothing" in v for v in violations(engine))
    run(engine, "UPDATE payment_steps SET posting_id = :x WHERE step_id = :s", x=posting, s=void)
    assert (
        f"applied VOID step {void} of payment {voided} names posting {posting}, yet posts nothing"
        in violations(engine)
    )


def test_refunds_above_the_captures_are_found(ledger):
    engine, p = ledger
    sale = switch_id(p["sale"])
    run(
        engine,
        "UPDATE payment_steps SET amount_minor = 12000 WHERE payment_id = :p",
        p=sale,
    )
    run(engine, "UPDATE payments SET refunded_minor = 12000 WHERE payment_id = :p", p=sale)
    found = violations(engine)
    assert f"payment {sale}: 12000 refunded, above the 10000 captured" in found


def test_a_refund_total_that_disagrees_with_its_steps_is_found(ledger):
    engine, p = ledger
    split = switch_id(p["split"])
    run(engine, "UPDATE payments SET refunded_minor = 0 WHERE payment_id = :p", p=split)
    assert f"payment {split}: refunds and returns sum to 10000, it says 0" in violations(engine)


def test_an_available_balance_below_the_overdraft_now_is_found(ledger):
    engine, p = ledger
    active = switch_id(p["active"])
    run(engine, "UPDATE holds SET reserved_minor = 10000000 WHERE payment_id = :p", p=active)
    found = violations(engine)
    assert any(v.startswith(f"account {SALMA[1]}: available balance -") for v in found)


def test_a_balance_that_went_below_the_overdraft_and_came_back_is_found(ledger):
    """Two forged postings that cancel out: the end balances, chains and sums all agree."""
    engine, _ = ledger
    with engine.begin() as conn:
        out = draft(0, AMINA, KARIM, 5_000_000, BASE + timedelta(hours=1))
        back = draft(0, KARIM, AMINA, 5_000_000, BASE + timedelta(hours=1))
        write_postings(conn, [out, back])
    with engine.connect() as conn:
        report = verify(conn)
    assert not report.walk.breaks and not report.ledger.violations  # nothing else sees it
    assert any(
        v.startswith(f"account {AMINA[1]}: balance -") and out.posting_id in v
        for v in report.lifecycle.violations
    )
    assert not any(KARIM[1] in v for v in report.lifecycle.violations)  # it only went up first


def test_a_step_posting_without_its_step_is_found_by_verify_and_reconcile(
    ledger, recorded, tmp_path
):
    engine, p = ledger
    replayed = build(f"sqlite:///{tmp_path / 'replayed.db'}", recorded)  # the same again
    try:
        assert reconcile(engine, replayed, TOPOLOGY).ok  # the same ids: the two ledgers agree
        capture = switch_id(p["whole"])
        run(engine, "DELETE FROM payment_steps WHERE payment_id = :p", p=capture)
        found = violations(engine)
        assert any(f"payment {capture}: no applied step" in v for v in found)
        report = reconcile(engine, replayed, TOPOLOGY)
        assert [(o["side"], o["kind"]) for o in report.orphan_postings] == [("live", "CAPTURE")]
        assert {s["difference"] for s in report.steps} == {"missing in live"}
    finally:
        replayed.dispose()


def test_a_changed_hold_is_found_by_reconcile(ledger, recorded, tmp_path):
    engine, p = ledger
    replayed = build(f"sqlite:///{tmp_path / 'replayed.db'}", recorded)
    try:
        active = switch_id(p["active"])
        with engine.begin() as conn:
            conn.execute(
                Hold.__table__.update()
                .where(Hold.payment_id == active)
                .values(expires_at=BASE + timedelta(days=30))
            )
        report = reconcile(engine, replayed, TOPOLOGY)
    finally:
        replayed.dispose()
    assert [(h["payment_id"], h["difference"]) for h in report.holds] == [(active, "expires_at")]


def refunded_then_returned() -> list[dict[str, Any]]:
    """A sale partly refunded (it stays SETTLED), then returned: what is left of it."""
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE", occurred_at=BASE)
    at = BASE + timedelta(minutes=5)
    refund = step(sale, "REFUND", "011", 4_000, occurred_at=at)
    returned = step(sale, "RETURN", "011", reason_code="AC04", occurred_at=at + timedelta(1))
    return [sale, refund, returned]


def build_in_turn(url: str, records: list[dict[str, Any]]) -> Engine:
    """The payment, then each of its steps in a batch of its own."""
    builder = Builder(url)
    builder.publish("PaymentInitiated", records[:1], "payer_bank")
    for asked in records[1:]:
        builder.publish("PaymentStepRequested", [asked], "sender_bank")
    return builder.engine


def test_a_sale_partly_refunded_then_returned_keeps_its_refund_posting_accounted_for(
    database_url, tmp_path
):
    records = refunded_then_returned()
    sale = switch_id(records[0])
    engine = build_in_turn(database_url, records)
    replayed = build_in_turn(f"sqlite:///{tmp_path / 'replayed.db'}", records)
    try:
        with engine.connect() as conn:
            state = conn.execute(select(Payment.state).where(Payment.payment_id == sale)).scalar()
            kinds = sorted(
                conn.execute(
                    select(PaymentStep.kind).where(
                        PaymentStep.payment_id == sale, PaymentStep.outcome == "APPLIED"
                    )
                ).scalars()
            )
        assert (state, kinds) == ("RETURNED", ["REFUND", "RETURN"])
        report = reconcile(engine, replayed, TOPOLOGY)
        assert not violations(engine)  # sakk audit verify's lifecycle check agrees
    finally:
        replayed.dispose()
        engine.dispose()
    assert report.orphan_postings == [] and report.ok
