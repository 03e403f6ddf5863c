"""Auditors and the lifecycle, through the embedded broker on SQLite and PostgreSQL.

A run with authorizations, partial captures, voids, an expiry, refunds and a return is
replayed from its topics (the expiry from payments.validated, where the switch put it)
and reconciled with the live ledger: zero differences, by record time and in the live
ledger's settlement order. ``audit verify`` finds nothing wrong on either side, the
trace shows each payment's whole life, and the settlement windows count the steps'
postings in the windows of their own times.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

import sakk.cli.audit
import sakk.cli.reconcile
import sakk.cli.replay
import sakk.cli.trace  # noqa: F401  (each module registers its command on ``cli``)
from engine.audit.chain import verify
from engine.audit.reconcile import reconcile
from engine.audit.replay import ReplayRequest, replay
from engine.audit.trace import trace_payment
from engine.audit.windows import Window, window_report
from engine.ledger.database import make_engine
from engine.ledger.models import Payment, PaymentStep
from engine.read.audience import Audience
from sakk.app import TOPOLOGY
from sakk.cli import cli
from tests.factories import (
    AMINA,
    KARIM,
    RAM,
    REFERENCE_FILE,
    SALMA,
    authorization,
    payment,
    step,
    switch_id,
)
from tests.integration.test_audit_replay import replay_url  # noqa: F401 - a fixture
from tests.integration.test_lifecycle import POS_HOLD, done

pytestmark = pytest.mark.integration


def lifecycle_traffic() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(payments, their steps, the authorization left to expire): outcomes in any order.

    Every payer has enough without the credits other partitions bring, so how the
    partitions interleave changes no outcome (see docs/auditing.md).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    split = authorization(SALMA, RAM, 100_000)  # captured in parts, the rest voided
    whole = authorization(KARIM, RAM, 5_000)  # interbank, captured whole, refunded whole
    voided = authorization(AMINA, RAM, 2_000)
    expiring = authorization(SALMA, RAM, 3_000, occurred_at=now - POS_HOLD + timedelta(seconds=1))
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE")  # refunded in part by 011
    transfer = payment(AMINA, KARIM, 10_000)  # returned by 011
    steps = [
        step(split, "CAPTURE", "007", 30_000),
        step(split, "CAPTURE", "007", 20_000),
        step(split, "CAPTURE", "007", 60_000),  # above what remains: AM09
        step(split, "VOID", "007"),  # the rest goes back; the captures stand
        step(split, "REFUND", "007", 10_000),
        step(whole, "CAPTURE", "007", final=True),
        step(whole, "REFUND", "007"),
        step(voided, "VOID", "007"),
        step(voided, "CAPTURE", "007"),  # of a voided hold: AG01
        step(sale, "REFUND", "011", 4_000),
        step(transfer, "RETURN", "011", reason_code="AC04"),
    ]
    return [split, whole, voided, expiring, sale, transfer], steps, expiring


def state_of(flow: Any, record: dict[str, Any]) -> str | None:
    """The payment's state, None while the validator has not seen it."""
    with flow.engine.connect() as conn:
        query = select(Payment.state).where(Payment.payment_id == switch_id(record))
        return conn.execute(query).scalar_one_or_none()


def run_lifecycle(flow: Any) -> dict[str, Any]:
    """Publish the traffic, let the expiry happen, refuse a capture after it; wait for all."""
    payments, steps, expiring = lifecycle_traffic()
    flow.publish(payments)
    flow.publish_steps(steps)
    flow.wait_until(lambda: state_of(flow, expiring) == "EXPIRED", timeout_s=30)
    late = step(expiring, "CAPTURE", "007", occurred_at=datetime.now(UTC))  # TM01
    flow.publish_steps([late])
    flow.wait_until(lambda: done(flow, len(payments), len(steps) + 2))  # + the expiry
    return {"payments": payments, "steps": [*steps, late], "expiring": expiring}


def outcomes(url: str) -> list[tuple[str, str, str | None]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ps = PaymentStep.__table__
            rows = conn.execute(select(ps.c.kind, ps.c.outcome, ps.c.reason_code)).all()
    finally:
        engine.dispose()
    return sorted((r.kind, r.outcome, r.reason_code or "") for r in rows)  # type: ignore[misc]


@pytest.mark.parametrize("order", ["record time", "live order"])
def test_replay_of_a_lifecycle_run_reconciles_with_zero_differences(
    flow_factory,
    database_url,
    replay_url,  # noqa: F811 - the fixture
    order,
):
    flow = flow_factory(database_url, expiry_interval_ms=50)
    run_lifecycle(flow)

    request = ReplayRequest(
        REFERENCE_FILE, replay_url, order_from=database_url if order == "live order" else None
    )
    summary = replay(flow.settings, request, TOPOLOGY).summary()

    assert (summary["expiries_read"], summary["expiries_replayed"]) == (1, 1)
    if order == "live order":  # 6 payments, 12 steps and the expiry, each in its place
        assert summary["settlement_order"].endswith("(19 events)")
        assert summary["order_forced"] == 0
    assert summary["expired"] == 1 and summary["voided"] == 2 and summary["returned"] == 1
    assert outcomes(replay_url) == outcomes(database_url)
    replayed = make_engine(replay_url)
    try:
        report = reconcile(flow.engine, replayed, TOPOLOGY)
        assert report.ok, report.sections()
        assert report.matched == 6 and report.balances_compared
        for engine in (flow.engine, replayed):
            with engine.connect() as conn:
                verified = verify(conn)
            assert verified.ok, verified.lifecycle.violations + verified.ledger.violations
            assert verified.lifecycle.holds == 4 and verified.lifecycle.accounts_walked > 0
    finally:
        replayed.dispose()


def test_reconcile_finds_a_step_the_replay_did_not_make(flow_factory, sqlite_url, tmp_path):
    """A step forged into the live ledger, and the amounts it changed, are all named."""
    flow = flow_factory(sqlite_url, expiry_interval_ms=50)
    run = run_lifecycle(flow)
    target = f"sqlite:///{tmp_path / 'replay.db'}"
    replay(flow.settings, ReplayRequest(REFERENCE_FILE, target), TOPOLOGY)
    split = run["payments"][0]
    with flow.engine.begin() as conn:
        conn.execute(
            PaymentStep.__table__.insert().values(
                step_id="forged-refund", payment_id=switch_id(split), kind="REFUND",
                sender_bank="007", bank_reference="FORGED", occurred_at=datetime.now(UTC),
                amount_minor=5_000, fee_minor=0, currency="MAD", outcome="APPLIED",
            )
        )  # fmt: skip
        conn.execute(
            Payment.__table__.update()
            .where(Payment.payment_id == switch_id(split))
            .values(refunded_minor=Payment.refunded_minor + 5_000)
        )
    replayed = make_engine(target)
    try:
        report = reconcile(flow.engine, replayed, TOPOLOGY)
    finally:
        replayed.dispose()
    assert not report.ok
    assert [s["difference"] for s in report.steps] == ["missing in replay"]
    assert {(d["field"], d["live"], d["replay"]) for d in report.payments} == {
        ("refunded_minor", 15_000, 10_000)
    }
    with flow.engine.connect() as conn:
        violations = verify(conn).lifecycle.violations
    assert violations == [f"REFUND step forged-refund of payment {switch_id(split)}: no posting"]


def test_the_trace_shows_the_whole_life_of_a_payment(flow_factory, sqlite_url):
    flow = flow_factory(sqlite_url, expiry_interval_ms=50)
    run = run_lifecycle(flow)
    split, expiring = run["payments"][0], run["expiring"]

    with flow.engine.connect() as conn:
        life = trace_payment(conn, Audience.auditor(), switch_id(split), TOPOLOGY)
        expired = trace_payment(conn, Audience.auditor(), switch_id(expiring), TOPOLOGY)

    assert life.hold is not None
    assert (life.hold["state"], life.hold["amount_minor"], life.hold["captured_minor"]) == (
        "CAPTURED", 100_000, 50_000,
    )  # fmt: skip
    assert life.hold["reserved_minor"] == 0 and life.hold["expires_at"] is not None
    assert [(s["kind"], s["outcome"], s["reason_code"]) for s in life.steps] == [
        ("CAPTURE", "APPLIED", None), ("CAPTURE", "APPLIED", None),
        ("CAPTURE", "REFUSED", "AM09"), ("VOID", "APPLIED", None), ("REFUND", "APPLIED", None),
    ]  # fmt: skip
    assert "remain of the hold" in life.steps[2]["reason_message"]
    assert sorted(p["kind"] for p in life.postings) == ["CAPTURE", "CAPTURE", "REFUND"]
    assert {n["outcome"] for n in life.notifications} >= {"AUTHORIZE", "CAPTURE", "VOID", "REFUND"}
    assert [t["to_state"] for t in life.transitions][-2:] == ["CAPTURED", "CAPTURED"]
    assert [(s["kind"], s["outcome"], s["sender_bank"]) for s in expired.steps] == [
        ("EXPIRE", "APPLIED", "SAKK"), ("CAPTURE", "REFUSED", "007"),
    ]  # fmt: skip
    assert expired.hold is not None and expired.hold["state"] == "EXPIRED"
    from_switch = [e for e in expired.events if e["produced_by"] == "switch (expiry scheduler)"]
    assert [(e["event_type"], e["consumed_by"]) for e in from_switch] == [
        ("PaymentStepValidated", "settlement")
    ]


def test_a_refund_moves_both_net_positions_back_in_its_own_window(flow_factory, database_url):
    flow = flow_factory(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = now - timedelta(days=2)  # another business day: another window
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE", occurred_at=earlier)
    same_day = payment(AMINA, KARIM, 6_000, "WEB", "PURCHASE", occurred_at=now)
    refunds = [step(sale, "REFUND", "011", occurred_at=now), step(same_day, "REFUND", "011")]
    flow.publish([sale, same_day])
    flow.publish_steps(refunds)
    flow.wait_until(lambda: done(flow, 2, 2))

    with flow.engine.connect() as conn:
        then = window_report(conn, Window.containing(earlier))
        today = window_report(conn, Window.containing(now))
    net = {w: {line.bank_code: line.net_minor for line in r.lines} for w, r in
           (("then", then), ("today", today))}  # fmt: skip
    assert net["then"] == {"007": -10_000, "011": 10_000}  # 007's customer paid 011's
    assert net["today"] == {"007": 10_000, "011": -10_000}  # the refund, and 6,000 both ways
    gross = {line.bank_code: (line.gross_debits_minor, line.gross_credits_minor)
             for line in today.lines}  # fmt: skip
    assert gross == {"007": (6_000, 16_000), "011": (16_000, 6_000)}
    for report in (then, today):
        assert set(report.net_by_currency().values()) == {0}


def test_the_auditor_commands_on_a_lifecycle_run(flow_factory, sqlite_url, tmp_path):
    flow = flow_factory(sqlite_url, expiry_interval_ms=50)
    run = run_lifecycle(flow)
    s = flow.settings
    env = {
        "SAKK_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers, "SAKK_DATABASE_URL": sqlite_url,
        "SAKK_TOPIC_PREFIX": s.topic_prefix, "SAKK_DATA_DIR": str(tmp_path),
        "SAKK_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    runner = CliRunner()

    def sakk(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.output

    replayed = str(tmp_path / "replayed.db")
    code, out = sakk("replay", "--reference", str(REFERENCE_FILE), "--database-url", replayed)
    assert code == 0 and "expiries replayed" in out, out
    code, out = sakk("reconcile", "--replay", replayed, "--out", str(tmp_path / "rec"))
    assert code == 0 and "no differences" in out, out
    code, out = sakk("trace", switch_id(run["expiring"]))
    assert code == 0 and "hold EXPIRED" in out and "Steps (applied or refused)" in out, out
    code, out = sakk("trace", switch_id(run["expiring"]), "--format", "json")
    life = json.loads(out)
    assert life["hold"][0]["state"] == "EXPIRED"
    assert [(x["kind"], x["reason_code"]) for x in life["steps"]] == [
        ("EXPIRE", None), ("CAPTURE", "TM01"),
    ]  # fmt: skip
    code, out = sakk("audit", "verify")
    assert code == 0 and "the lifecycle holds: 4 holds" in out, out

    with flow.engine.begin() as conn:  # the hold that was voided now claims an expiry
        conn.execute(
            text("UPDATE holds SET state = 'EXPIRED' WHERE payment_id = :p"),
            {"p": switch_id(run["payments"][2])},
        )
    code, out = sakk("audit", "verify", "--format", "json")
    assert code == 1
    assert json.loads(out)["summary"]["lifecycle_violations"] == 2
