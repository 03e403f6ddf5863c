"""The cap change as an operator action decides it: pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.ops.action import Plan, Refused
from engine.ops.limits import CapSetter, LimitState, SetBankLimit
from engine.ops.reference_load import LoadReferenceFile, LoadState
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


def load_state(setter: str) -> LoadState:
    cap = {"net_debit_cap_minor": 100_000, "alert_percent": 80}
    return LoadState({"cap 007/MAD": cap}, {"007/MAD": CapSetter(setter, 4)}, {}, 5, False)


FILE = {
    "banks": [{"code": "007", "name": "Attijariwafa bank"}],
    "bank_limits": [{"bank": "007", "currency": "MAD", "net_debit_cap_minor": 900_000,
                     "alert_percent": 80, "liquidity_minor": 0}],
}  # fmt: skip


def test_a_load_refuses_to_overwrite_a_cap_an_operator_set_naming_both_values() -> None:
    refused = LoadReferenceFile("f.json", "0" * 64, FILE, 360, 5.0).decide(
        load_state(SetBankLimit.name), AT
    )
    assert isinstance(refused, Refused)
    assert refused.reason.startswith(
        "bank 007 MAD: an operator set the net debit cap to 1,000.00 MAD, alert at 80 % "
        "(operator action #4); the file says 9,000.00 MAD, alert at 80 %"
    )


def test_a_load_changes_a_cap_a_file_set_as_a_version_in_force_at_once() -> None:
    plan = LoadReferenceFile("f.json", "0" * 64, FILE, 360, 5.0).decide(
        load_state("reference.load"), AT
    )
    assert isinstance(plan, Plan)
    _, (version,) = plan.changes
    assert (version.kind, version.item, version.version, version.effective_from) == (
        "cap", "007/MAD", 6, AT,
    )  # fmt: skip
    assert plan.old == {"cap 007/MAD": {"net_debit_cap_minor": 100_000, "alert_percent": 80}}


def test_a_load_keeping_operator_caps_leaves_them_and_says_so() -> None:
    keep = LoadReferenceFile("f.json", "0" * 64, FILE, 360, 5.0, keep_operator_caps=True)
    plan = keep.decide(load_state(SetBankLimit.name), AT)
    assert isinstance(plan, Plan) and plan.new["kept"] == ["cap 007/MAD"]
    data, versions = plan.changes
    assert versions == [] and data["bank_limits"][0]["net_debit_cap_minor"] == 100_000
