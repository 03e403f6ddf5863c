"""The chaos run's interbank risk invariants (``tooling.chaos.risk_checks``) on a real ledger.

A clean flow with its window settled to a faithful confirmation passes; a bank beyond
its cap, a confirmation that differs from what was settled, a refusal its payer's bank
was never told of, a movement not decided as it had to be, and nets that do not sum to
zero are each caught.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from engine.audit.window_settlement import confirm_window, parties_of, read_answers, settle_window
from engine.audit.windows import Window, close_window
from engine.config import Settings
from engine.ledger.models import (
    Notification,
    NotificationAttempt,
    Payment,
    SettlementWindowPosition,
)
from engine.ops.action import Actor, run_action
from engine.ops.limits import SetBankLimit
from engine.risk.confirmation import AnswerLine, answer_lines, build_answer
from tests.tooling.test_chaos_invariants import flow
from tooling.chaos.invariants import Evidence
from tooling.chaos.operator import Movement, OperatorRun, WindowRun
from tooling.chaos.risk_checks import RiskChecked, check_risk
from tooling.workload.chaos import ExpectedPayment

OPERATOR = Actor("test", "risk checks")
NOW = datetime.now(UTC)


def risk(engine: Engine, evidence: Evidence, operator: OperatorRun | None = None) -> tuple[
    RiskChecked, list[str]
]:  # fmt: skip
    checked = RiskChecked()
    with engine.connect() as conn:
        payments = {r.payment_id: r for r in conn.execute(select(Payment.__table__))}
        found = check_risk(
            conn, evidence.settings, evidence.workload, operator, None, payments, checked
        )
    return checked, found


def settled_window(
    settings: Settings, engine: Engine, answer: Mapping[str, int] | None = None
) -> OperatorRun:
    """Close today's window, instruct it, confirm it (with ``answer``'s nets, by bank, when
    given, else the faithful ones): what the run's operator does."""
    window = Window.containing(NOW)
    close_window(engine, window, NOW, early=True)
    with engine.connect() as conn:
        parties = parties_of(
            conn,
            settings.settlement_switch_code,
            settings.settlement_bank_code,
            settings.settlement_clearing_system,
        )
    run = WindowRun(label=window.label)

    def keep(instructions: Mapping[str, bytes]) -> None:
        run.instructions = dict(instructions)

    result = settle_window(engine, window.label, parties, "test", NOW, keep)
    for b in result.batches:
        faithful = answer_lines(b)
        lines = faithful if answer is None else tuple(
            AnswerLine(x.bank, answer.get(x.bank, x.net_minor), x.currency) for x in faithful
        )  # fmt: skip
        sent = build_answer(b.message_id, faithful, parties, NOW)
        answers = read_answers([("a.xml", sent)], parties)
        confirmed = confirm_window(engine, answers, "test", NOW, window.label)
        assert confirmed.ok, confirmed.differences
        run.confirmations[b.currency] = build_answer(b.message_id, lines, parties, NOW)
    return OperatorRun(window=run)


def test_a_flow_with_its_window_settled_keeps_every_risk_invariant(ledger):
    settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    run_action(engine, SetBankLimit("007", "MAD", 1_000_000, 80), OPERATOR, NOW)
    operator = settled_window(settings, engine)
    checked, found = risk(engine, evidence, operator)
    assert found == []
    label = Window.containing(NOW).label
    assert checked.windows == {label: "SETTLED"}
    assert checked.settled_nets == {"007 MAD": 10_000, "011 MAD": -10_000}
    assert checked.positions["007 MAD"]["exposure_minor"] == 0  # settled: headroom back


def test_an_exposure_beyond_its_cap_is_caught(ledger):
    _settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    # An operator may lower a cap below the exposure (everything is then refused): the
    # final row is beyond it, which a run that never lowers a cap must not show.
    run_action(engine, SetBankLimit("007", "MAD", 9_999, 80), OPERATOR, NOW)
    _checked, found = risk(engine, evidence)
    assert "bank 007 MAD: exposure 10000 beyond its cap 9999" in found


def test_a_confirmation_that_differs_from_what_was_settled_is_caught(ledger):
    settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    operator = settled_window(settings, engine, answer={"007": 9_000, "011": -9_000})
    _checked, found = risk(engine, evidence, operator)
    assert any("its confirmation says {007 MAD: 9000, 011 MAD: -9000}" in v for v in found)
    assert not any("its instruction says" in v for v in found)


def test_a_window_the_run_settled_that_is_not_settled_is_caught(ledger):
    _settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    label = Window.containing(NOW).label
    _checked, found = risk(engine, evidence, OperatorRun(window=WindowRun(label=label)))
    assert any(v.startswith(f"window {label} was closed, settled and confirmed") for v in found)


def as_pressing(evidence: Evidence) -> tuple[Evidence, str]:
    """The flow's payment that failed AM04 (its payer's funds), labelled a pressing bank's."""
    pid = next(
        p for p, e in evidence.workload.payments.items() if e.label == "payment" and "011:" in p
    )
    payments = dict(evidence.workload.payments)
    payments[pid] = ExpectedPayment(pid, "pressing_liquidity", {"SETTLED": None, "FAILED": "AM04"})
    workload = dataclasses.replace(evidence.workload, payments=payments)
    return dataclasses.replace(evidence, workload=workload), pid


def test_a_refusal_that_does_not_name_its_limit_is_caught(ledger):
    _settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    evidence, pid = as_pressing(evidence)
    checked, found = risk(engine, evidence)
    assert checked.refusals == {"011 AM04": 1} and checked.told == 1
    assert [v for v in found if pid in v] == [
        f"payment {pid} refused AM04 does not name its limit: "
        "'needs 505.00 MAD (fee included), 300.00 MAD available'"
    ]


def test_a_refusal_its_payer_bank_was_never_told_of_is_caught(ledger):
    _settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    evidence, pid = as_pressing(evidence)
    n, a = Notification.__table__, NotificationAttempt.__table__
    with engine.begin() as conn:
        ids = select(n.c.notification_id).where(n.c.payment_id == pid)
        conn.execute(a.delete().where(a.c.notification_id.in_(ids)))
        conn.execute(n.delete().where(n.c.payment_id == pid))
    checked, found = risk(engine, evidence)
    assert checked.told == 0
    assert f"payment {pid} refused AM04: its payer's bank 011 was not told ([])" in found


def test_a_movement_not_decided_as_it_had_to_be_is_caught(ledger):
    _settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    never = Movement("FundsOut", "007", 1, "REFUSED", "it had to be", movement_id="nope",
                     liquidity_before_minor=0)  # fmt: skip
    _checked, found = risk(engine, evidence, OperatorRun(movements=[never]))
    assert any(v.startswith("FundsOut of 1 for bank 007 is None") for v in found)
    assert any("asked for more than its deposit" in v for v in found)


def test_nets_that_do_not_sum_to_zero_are_caught(ledger):
    _settings, engine, _ = ledger
    _pump, evidence = flow(ledger)
    window = Window.containing(NOW)
    close_window(engine, window, NOW, early=True)
    with engine.begin() as conn:
        conn.execute(insert(SettlementWindowPosition), [{
            "label": window.label, "bank_code": "310", "currency": "MAD",
            "gross_debits_minor": 0, "gross_credits_minor": 5, "net_minor": 5,
        }])  # fmt: skip
    _checked, found = risk(engine, evidence)
    assert f"closed window {window.label}: nets sum to 5 MAD, not zero" in found
