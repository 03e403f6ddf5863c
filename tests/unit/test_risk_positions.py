"""Positions over unsettled windows: settling one window restores only its headroom."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.risk.instruction import SettlementBatch
from engine.risk.limits import Allowed, BankLimits, Exposure, Refused, check_outgoing
from engine.risk.positions import (
    PositionDifference,
    after_settlement,
    position_differences,
    row_differences,
    unsettled_positions,
)

EXAMPLES = 200  # random sets of windows, one of them settled
WINDOW_1 = {"007": 60_000, "011": -60_000}
WINDOW_2 = {"007": 40_000, "011": -40_000}
CAP = BankLimits(net_debit_cap_minor=100_000, liquidity_minor=10**9)


def test_a_position_sums_every_unsettled_window() -> None:
    assert unsettled_positions([WINDOW_1, WINDOW_2, {"022": 0}]) == {
        "007": 100_000,
        "011": -100_000,
        "022": 0,
    }


def test_settling_a_window_restores_its_headroom() -> None:
    positions = unsettled_positions([WINDOW_1])
    at_cap = Exposure("007", "MAD", positions["007"] + 40_000)
    assert isinstance(check_outgoing(at_cap, CAP, 1), Refused)

    settled = after_settlement(positions, SettlementBatch.of("w1", 1, "MAD", WINDOW_1))

    assert settled == {"007": 0, "011": 0}
    assert isinstance(check_outgoing(Exposure("007", "MAD", settled["007"]), CAP, 1), Allowed)


def test_settling_one_of_two_closed_windows_keeps_the_other_counting() -> None:
    positions = unsettled_positions([WINDOW_1, WINDOW_2])

    settled = after_settlement(positions, SettlementBatch.of("w1", 1, "MAD", WINDOW_1))

    assert settled["007"] == 40_000  # window 2's debt still counts
    headroom = check_outgoing(Exposure("007", "MAD", settled["007"]), CAP, 60_000)
    assert headroom == Allowed(100_000, 0)
    assert isinstance(check_outgoing(Exposure("007", "MAD", settled["007"]), CAP, 60_001), Refused)


def test_a_bank_the_window_does_not_name_keeps_its_position() -> None:
    positions = {"007": 60_000, "011": -60_000, "022": 5}

    assert after_settlement(positions, SettlementBatch.of("w1", 1, "MAD", WINDOW_1))["022"] == 5


def test_a_bank_of_the_window_without_a_position_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no position for 011"):
        after_settlement({"007": 60_000}, SettlementBatch.of("w1", 1, "MAD", WINDOW_1))


def test_the_auditor_finds_every_position_that_differs() -> None:
    recorded = {"007": 100_000, "011": -99_999, "030": 1}

    assert position_differences(recorded, [WINDOW_1, WINDOW_2]) == [
        PositionDifference("011", -99_999, -100_000),
        PositionDifference("030", 1, 0),
    ]
    assert "its unsettled windows add up to -100000" in str(
        position_differences(recorded, [WINDOW_1, WINDOW_2])[0]
    )
    assert position_differences({"007": 100_000, "011": -100_000}, [WINDOW_1, WINDOW_2]) == []


def test_too_many_unsettled_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="unsettled windows"):
        unsettled_positions([{"007": 0}] * 1_001)


@st.composite
def window(draw: st.DrawFn) -> dict[str, int]:
    banks = ["A", "B", "C", "D"]
    nets = draw(st.lists(st.integers(-(10**9), 10**9), min_size=3, max_size=3))
    return dict(zip(banks, [*nets, -sum(nets)], strict=True))


@settings(max_examples=EXAMPLES, deadline=None)
@given(windows=st.lists(window(), min_size=1, max_size=6), data=st.data())
def test_settling_any_window_leaves_the_positions_of_the_others(
    windows: list[dict[str, int]], data: st.DataObject
) -> None:
    chosen = data.draw(st.integers(0, len(windows) - 1))
    batch = SettlementBatch.of(f"w{chosen}", 1, "MAD", windows[chosen])

    settled = after_settlement(unsettled_positions(windows), batch)

    rest = windows[:chosen] + windows[chosen + 1 :]
    assert position_differences(settled, rest) == []
    assert sum(settled.values()) == 0


def test_row_differences_name_each_bank_whose_row_is_not_the_ledgers() -> None:
    rows = {("007", "MAD"): (7_500, 4_001), ("011", "MAD"): (-7_500, 0), ("012", "MAD"): (0, 0)}
    ledger = {("007", "MAD"): (7_500, 4_000), ("011", "MAD"): (-7_500, 0), ("013", "EUR"): (9, 0)}
    found = row_differences(rows, ledger)
    assert [(d.bank, d.currency) for d in found] == [("007", "MAD"), ("013", "EUR")]
    assert str(found[0]) == (
        "bank 007 MAD position row: holds_minor 4001, the ledger's active interbank holds give 4000"
    )
    assert str(found[1]) == "bank 013 EUR position row missing: the ledger gives posted 9, holds 0"
    assert row_differences(ledger, ledger) == []
