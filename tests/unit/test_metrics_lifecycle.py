"""The lifecycle's metrics: captures, refunds and returns counted from the events
settlement emits, holds outstanding read from the ledger, labels kept bounded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from engine import metrics

# Every label the engine's metrics may carry: bounded sets (no payment id, account
# number or holder's name can be one of them).
BOUNDED_LABELS = {
    "consumer", "topic", "partition", "channel", "outcome", "reason", "currency", "bank",
    "source_topic", "kind", "claimed_signer", "sender", "status", "result", "recipient_bank",
    "le",
}  # fmt: skip


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def completed(
    step: str,
    amount: int,
    *,
    payer_bank: str = "007",
    payee_bank: str = "011",
    channel: str = "WEB",
    fee: int = 0,
    reason: str | None = None,
) -> dict[str, Any]:
    """The fields of a PaymentStepCompleted record the metrics read."""
    return {
        "step": step, "amount_minor": amount, "fee_minor": fee, "currency": "MAD",
        "payer_bank": payer_bank, "payee_bank": payee_bank, "channel": channel,
        "reason_code": reason, "payer_account": "007780000000000000000111",
        "payee_account": "011810000000000000000333",
    }  # fmt: skip


def step_readings() -> dict[str, float]:
    """The step counters for bank 007's POS captures and bank 011's web refunds and returns."""
    mad = {"currency": "MAD"}
    return {
        "captures": sample("sakk_captures_total", bank="007", channel="POS"),
        "captured": sample("sakk_captured_amount_minor_total", bank="007", channel="POS", **mad),
        "refunds": sample("sakk_refunds_total", bank="011", channel="WEB"),
        "refunded": sample("sakk_refunded_amount_minor_total", bank="011", channel="WEB", **mad),
        "returns": sample("sakk_returns_total", bank="011", channel="WEB", reason="AC04"),
        "returned": sample("sakk_returned_amount_minor_total", bank="011", channel="WEB", **mad),
        "fees": sample("sakk_fees_minor_total", channel="WEB", **mad),
    }


def test_captures_refunds_and_returns_are_counted_per_bank_and_channel_in_minor_units() -> None:
    before = step_readings()
    metrics.observe_steps([
        completed("CAPTURE", 40_000, channel="POS"),
        completed("CAPTURE", 60_000, channel="POS"),  # a second, partial capture counts too
        completed("REFUND", 25_000, fee=200),
        completed("RETURN", 90_000, reason="AC04"),
        completed("VOID", 10_000),  # moves no money: counted by the outcomes metric only
        completed("EXPIRE", 10_000),
    ])  # fmt: skip
    after = step_readings()
    assert {k: after[k] - before[k] for k in before} == {
        "captures": 2, "captured": 100_000, "refunds": 1, "refunded": 25_000, "returns": 1,
        "returned": 90_000, "fees": 200,
    }  # fmt: skip


def test_steps_move_net_positions_a_capture_forward_a_refund_or_return_back() -> None:
    def net(bank: str) -> float:
        return sample("sakk_bank_net_position_minor", bank=bank, currency="MAD")

    payer, payee = net("225"), net("230")
    metrics.observe_steps([completed("CAPTURE", 50_000, payer_bank="225", payee_bank="230")])
    assert (net("225") - payer, net("230") - payee) == (-50_000, 50_000)
    metrics.observe_steps([
        completed("REFUND", 20_000, payer_bank="225", payee_bank="230"),
        completed("RETURN", 30_000, payer_bank="225", payee_bank="230", reason="MD07"),
    ])  # fmt: skip
    assert (net("225"), net("230")) == (payer, payee)  # all the way back
    same = net("022")
    metrics.observe_steps([completed("CAPTURE", 9_999, payer_bank="022", payee_bank="022")])
    assert net("022") == same  # within one bank: no interbank position


def test_hold_gauges_take_the_ledgers_totals_and_zero_a_bank_without_holds_since() -> None:
    gauges = metrics.HoldGauges()
    gauges.set([("007", "MAD", 3, 30_500), ("190", "MAD", 1, 12_000)], 1, 42.0, 1_000.0)
    assert sample("sakk_holds_outstanding", bank="007", currency="MAD") == 3
    assert sample("sakk_holds_outstanding_minor", bank="190", currency="MAD") == 12_000
    assert sample("sakk_holds_overdue") == 1
    assert sample("sakk_holds_overdue_oldest_seconds") == 42.0
    assert sample("sakk_holds_refreshed_timestamp_seconds") == 1_000.0
    gauges.set([("007", "MAD", 1, 10_000)], 0, 0.0, 1_005.0)
    assert sample("sakk_holds_outstanding", bank="190", currency="MAD") == 0
    assert sample("sakk_holds_outstanding_minor", bank="190", currency="MAD") == 0
    assert sample("sakk_holds_outstanding", bank="007", currency="MAD") == 1
    assert sample("sakk_holds_overdue") == 0


def test_every_metric_label_is_a_bounded_set() -> None:
    found = {
        label
        for obj in vars(metrics).values()
        if isinstance(obj, MetricWrapperBase)
        for label in obj._labelnames  # noqa: SLF001 - no public accessor
    }
    assert found <= BOUNDED_LABELS, found - BOUNDED_LABELS
    lifecycle = (metrics.CAPTURES, metrics.CAPTURED_AMOUNT, metrics.REFUNDS,
                 metrics.REFUNDED_AMOUNT, metrics.RETURNS, metrics.RETURNED_AMOUNT,
                 metrics.HOLDS_OUTSTANDING, metrics.HOLDS_OUTSTANDING_AMOUNT)  # fmt: skip
    for metric in lifecycle:
        assert set(metric._labelnames) <= {"bank", "channel", "currency", "reason"}  # noqa: SLF001


def test_the_step_outcomes_are_the_catalogs_applied_ones_with_the_labels_dashboards_use() -> None:
    from engine.domain.steps import STEPS, Money

    requested = {s.outcome for s in STEPS.values() if s.requested_as_step}
    assert requested == metrics.STEP_OUTCOMES
    assert {"captured", "voided", "expired", "refunded", "returned"} == metrics.STEP_OUTCOMES
    assert set(metrics.MONEY_STEPS) == {k for k, s in STEPS.items() if s.money is not Money.NONE}


def test_hold_totals_read_active_holds_per_bank_and_those_past_their_expiry(
    tmp_path: Path,
) -> None:
    from consumers.expiry import hold_totals
    from consumers.settlement import Settlement
    from consumers.validator import Validator
    from engine.config import load_settings
    from engine.ledger.database import make_engine, upgrade
    from engine.ledger.reference import load_reference_data, read_file
    from engine.pipeline.messages import Inbound, RawMessage
    from tests.factories import (
        AMINA,
        RAM,
        REFERENCE_FILE,
        SALMA,
        authorization,
        decide_and_record,
        inbound,
    )

    settings = load_settings(environ={}, database_url=f"sqlite:///{tmp_path / 'l.db'}",
                             data_dir=tmp_path)  # fmt: skip
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    holds = [authorization(SALMA, RAM, 30_000), authorization(AMINA, RAM, 20_000)]
    now = holds[0]["occurred_at"]
    stored_ms = int(now.timestamp() * 1000)  # the broker's time, which the validator judges by
    initiated = [
        Inbound(RawMessage("initiated", 0, i, b"k", None, stored_ms), "PaymentInitiated", h)
        for i, h in enumerate(holds)
    ]
    with engine.begin() as conn:
        validated = [d.emits[0].record for d in decide_and_record(conn, Validator(settings),
                                                                  initiated)]  # fmt: skip
    with engine.begin() as conn:
        decide_and_record(
            conn, Settlement(settings),
            [inbound("validated", "PaymentValidated", v) for v in validated],
        )  # fmt: skip
    totals = hold_totals(engine, now)
    assert totals.by_bank == [("007", "MAD", 2, 50_000)]  # at a POS: no fee to reserve
    assert (totals.overdue, totals.oldest_overdue_s) == (0, 0.0)
    overdue = hold_totals(engine, now + timedelta(days=3, seconds=30))  # POS holds: 3 days
    assert (overdue.overdue, overdue.oldest_overdue_s) == (2, 30.0)
    engine.dispose()


@pytest.mark.parametrize("metric", ["sakk_holds_outstanding", "sakk_captures_total"])
def test_lifecycle_metrics_are_documented_in_the_operations_guide(metric: str) -> None:
    from engine.config import PROJECT_ROOT

    assert metric.removesuffix("_total") in (PROJECT_ROOT / "docs" / "operations.md").read_text()
