"""The cap change as an operator action decides it: pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.ops.action import Plan, Refused
from engine.ops.limits import LimitState, SetBankLimit
from engine.risk.limits import Exposure

AT = datetime(2026, 12, 6, tzinfo=UTC)
OWES_800 = LimitState(True, 100_000, 80, Exposure("007", "MAD", 70_000, 10_000))


def test_a_cap_lowered_below_the_exposure_is_taken_with_its_warning() -> None:
    plan = SetBankLimit("007", "MAD", 50_000, 80).decide(OWES_800, AT)
    assert isinstance(plan, Plan) and not plan.noop
    assert plan.old == {"net_debit_cap_minor": 100_000, "alert_percent": 80}
    assert "already has 800.00 MAD" in plan.new["warning"]


def test_the_same_cap_and_percentage_change_nothing_and_a_percentage_alone_does() -> None:
    assert SetBankLimit("007", "MAD", 100_000, 80).decide(OWES_800, AT).noop  # type: ignore[union-attr]
    plan = SetBankLimit("007", "MAD", 100_000, 90).decide(OWES_800, AT)
    assert isinstance(plan, Plan) and plan.new["alert_percent"] == 90 and not plan.new["warning"]


def test_an_unknown_bank_a_bad_percentage_or_cap_is_refused() -> None:
    unknown = LimitState(False, None, None, None)
    assert isinstance(SetBankLimit("999", "MAD", 1, 80).decide(unknown, AT), Refused)
    assert isinstance(SetBankLimit("007", "MAD", 1, 0).decide(OWES_800, AT), Refused)
    assert isinstance(SetBankLimit("007", "MAD", -1, 80).decide(OWES_800, AT), Refused)


def test_a_first_cap_for_a_bank_without_one_is_taken() -> None:
    first = LimitState(True, None, None, None)
    plan = SetBankLimit("011", "MAD", 0, 50).decide(first, AT)
    assert isinstance(plan, Plan) and plan.old["net_debit_cap_minor"] is None
