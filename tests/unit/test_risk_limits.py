"""The net debit cap and liquidity check, funds out, and threshold crossings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.risk.limits import (
    CAP_EXCEEDED,
    INSUFFICIENT_LIQUIDITY,
    MAX_LIMIT_MINOR,
    Allowed,
    BankLimits,
    CapChange,
    Crossing,
    Exposure,
    PositionView,
    Refused,
    Share,
    alerts_in_batch,
    check_cap_change,
    check_funds_out,
    check_outgoing,
    crossing,
)

EXAMPLES = 500  # random cases per property: the rules are integer arithmetic, cheap to try

LIMITS = BankLimits(net_debit_cap_minor=100_000, liquidity_minor=150_000)


def exposure(position: int, held: int = 0) -> Exposure:
    return Exposure("007", "MAD", position, held)


# -- the cap and the liquidity ---------------------------------------------------------


def test_payment_exactly_at_the_cap_passes_with_no_headroom_left() -> None:
    assert check_outgoing(exposure(60_000), LIMITS, 40_000) == Allowed(100_000, 0)


def test_one_minor_unit_over_the_cap_fails_with_am23() -> None:
    result = check_outgoing(exposure(60_000), LIMITS, 40_001)

    assert isinstance(result, Refused)
    assert (result.reason_code, result.limit, result.exceeded_by_minor) == (
        CAP_EXCEEDED,
        "net_debit_cap",
        1,
    )
    assert "net debit cap of 1,000.00 MAD by 0.01 MAD" in result.message
    assert result.message.startswith("bank 007: sending 400.01 MAD")


def test_one_minor_unit_over_the_liquidity_fails_with_am04() -> None:
    limits = BankLimits(net_debit_cap_minor=200_000, liquidity_minor=50_000)

    assert isinstance(check_outgoing(exposure(0), limits, 50_000), Allowed)
    result = check_outgoing(exposure(0), limits, 50_001)

    assert isinstance(result, Refused)
    assert (result.reason_code, result.limit) == (INSUFFICIENT_LIQUIDITY, "liquidity")
    assert "prefunded liquidity of 500.00 MAD" in result.message


def test_beyond_both_limits_the_liquidity_is_named_first() -> None:
    # Cap 50 000, liquidity 80 000: 90 000 is beyond both, and AM04 says by how much.
    result = check_outgoing(exposure(0), BankLimits(50_000, 80_000), 90_000)

    assert isinstance(result, Refused)
    assert (result.reason_code, result.exceeded_by_minor) == (INSUFFICIENT_LIQUIDITY, 10_000)


def test_within_the_liquidity_but_beyond_the_cap_the_cap_is_named() -> None:
    result = check_outgoing(exposure(0), BankLimits(50_000, 80_000), 60_000)

    assert isinstance(result, Refused)
    assert (result.reason_code, result.exceeded_by_minor) == (CAP_EXCEEDED, 10_000)


def test_holds_count_against_the_limits() -> None:
    result = check_outgoing(exposure(60_000, held=30_000), LIMITS, 10_001)

    assert isinstance(result, Refused) and result.exceeded_by_minor == 1
    assert isinstance(check_outgoing(exposure(60_000, held=30_000), LIMITS, 10_000), Allowed)


def test_capturing_a_hold_needs_no_new_room() -> None:
    # At the cap through a hold of 40 000: capturing all of it still passes.
    at_cap = exposure(60_000, held=40_000)

    assert check_outgoing(at_cap, LIMITS, 40_000, released_hold_minor=40_000) == Allowed(100_000, 0)
    assert isinstance(check_outgoing(at_cap, LIMITS, 40_001, released_hold_minor=40_000), Refused)


def test_a_bank_owed_money_may_send_beyond_its_cap_by_what_it_is_owed() -> None:
    assert check_outgoing(exposure(-20_000), LIMITS, 120_000) == Allowed(100_000, 0)
    assert isinstance(check_outgoing(exposure(-20_000), LIMITS, 120_001), Refused)


def test_a_cap_lowered_below_the_position_refuses_every_outgoing_amount() -> None:
    result = check_outgoing(exposure(90_000), BankLimits(50_000, 150_000), 1)

    assert isinstance(result, Refused) and result.exceeded_by_minor == 40_001


@pytest.mark.parametrize("amount", [0, -1, 10**15 + 1])
def test_an_amount_out_of_bounds_is_a_bug(amount: int) -> None:
    with pytest.raises(ValueError, match="amount"):
        check_outgoing(exposure(0), LIMITS, amount)


@pytest.mark.parametrize("released", [-1, 1])
def test_releasing_more_than_is_held_is_a_bug(released: int) -> None:
    with pytest.raises(ValueError, match="released hold"):
        check_outgoing(exposure(0), LIMITS, 1, released_hold_minor=released)


@pytest.mark.parametrize(
    ("cap", "liquidity"), [(-1, 0), (0, -1), (MAX_LIMIT_MINOR + 1, 0), (0, MAX_LIMIT_MINOR + 1)]
)
def test_limits_out_of_bounds_are_refused(cap: int, liquidity: int) -> None:
    with pytest.raises(ValueError):
        BankLimits(cap, liquidity)


def test_an_unknown_currency_or_negative_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="currency"):
        Exposure("007", "XXX", 0)
    with pytest.raises(ValueError, match="held"):
        Exposure("007", "MAD", 0, -1)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    position=st.integers(-(10**12), 10**12),
    held=st.integers(0, 10**12),
    cap=st.integers(0, 10**12),
    liquidity=st.integers(0, 10**12),
    amount=st.integers(1, 10**12),
)
def test_allowed_exactly_when_the_exposure_after_fits_both_limits(
    position: int, held: int, cap: int, liquidity: int, amount: int
) -> None:
    result = check_outgoing(exposure(position, held), BankLimits(cap, liquidity), amount)

    after = position + held + amount
    if after <= min(cap, liquidity):
        assert result == Allowed(after, min(cap, liquidity) - after)
    else:
        assert isinstance(result, Refused)
        if after > liquidity:
            assert (result.reason_code, result.exceeded_by_minor) == (
                INSUFFICIENT_LIQUIDITY,
                after - liquidity,
            )
        else:
            assert (result.reason_code, result.exceeded_by_minor) == (CAP_EXCEEDED, after - cap)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    start=st.integers(-(10**6), 10**6),
    amounts=st.lists(st.integers(1, 10**5), max_size=50),
    cap=st.integers(0, 10**6),
)
def test_applying_only_allowed_payments_never_exceeds_the_cap(
    start: int, amounts: list[int], cap: int
) -> None:
    limits = BankLimits(cap, MAX_LIMIT_MINOR)
    position = min(start, cap)
    for amount in amounts:
        result = check_outgoing(exposure(position), limits, amount)
        if isinstance(result, Allowed):
            position = result.exposure_minor
        assert position <= cap


# -- funds out ---------------------------------------------------------------------------


def test_funds_out_down_to_the_position_passes_and_one_unit_more_fails() -> None:
    assert isinstance(
        check_funds_out(exposure(100_000), BankLimits(200_000, 150_000), 50_000), Allowed
    )
    result = check_funds_out(exposure(100_000), BankLimits(200_000, 150_000), 50_001)

    assert isinstance(result, Refused)
    assert (result.reason_code, result.exceeded_by_minor) == (INSUFFICIENT_LIQUIDITY, 1)
    assert "below its position and holds of 1,000.00 MAD" in result.message


def test_funds_out_counts_holds_too() -> None:
    result = check_funds_out(exposure(100_000, held=10_000), BankLimits(200_000, 150_000), 40_001)

    assert isinstance(result, Refused) and result.exceeded_by_minor == 1


def test_a_bank_owed_money_may_withdraw_all_its_liquidity_but_no_more() -> None:
    # With nothing deposited it may still send what it is owed: 5 000 of headroom.
    assert check_funds_out(exposure(-5_000), BankLimits(100, 150_000), 150_000) == Allowed(
        -5_000, 5_000
    )
    assert isinstance(check_funds_out(exposure(-5_000), BankLimits(100, 150_000), 150_001), Refused)


def test_funds_out_headroom_is_under_the_cap_and_what_is_left() -> None:
    result = check_funds_out(exposure(10_000), BankLimits(50_000, 150_000), 20_000)

    assert result == Allowed(10_000, 40_000)
    assert check_funds_out(exposure(10_000), BankLimits(50_000, 40_000), 20_000) == Allowed(
        10_000, 10_000
    )


@pytest.mark.parametrize("amount", [0, -5])
def test_funds_out_of_nothing_is_a_bug(amount: int) -> None:
    with pytest.raises(ValueError):
        check_funds_out(exposure(0), LIMITS, amount)


# -- threshold crossings -----------------------------------------------------------------


def test_share_reaching_the_threshold_is_a_crossing_exactly_at_it() -> None:
    assert crossing(Share(79_999, 100_000), Share(80_000, 100_000), 80) is Crossing.REACHED
    assert crossing(Share(79_998, 100_000), Share(79_999, 100_000), 80) is Crossing.NONE


def test_staying_above_the_threshold_alerts_no_more() -> None:
    assert crossing(Share(80_000, 100_000), Share(95_000, 100_000), 80) is Crossing.NONE


def test_falling_back_below_rearms_and_the_next_rise_alerts_again() -> None:
    shares = [Share(n, 100_000) for n in (50_000, 85_000, 90_000, 70_000, 81_000)]

    moves = [crossing(a, b, 80) for a, b in zip(shares, shares[1:], strict=False)]

    assert moves == [Crossing.REACHED, Crossing.NONE, Crossing.REARMED, Crossing.REACHED]


def test_a_lowered_cap_can_itself_cross() -> None:
    assert crossing(Share(50_000, 100_000), Share(50_000, 60_000), 80) is Crossing.REACHED


def test_shares_compare_exactly_not_through_a_rounded_percentage() -> None:
    # 2/3 is 66.67 %: below 67 %, at or above 66 %.
    assert not Share(2, 3).at_least(67)
    assert Share(2, 3).at_least(66)


def test_a_cap_of_zero_is_reached_by_any_debt() -> None:
    assert not Share(0, 0).at_least(1)
    assert Share(1, 0).at_least(100)
    assert (Share(0, 0).basis_points, Share(1, 0).basis_points) == (0, 10_000)


def test_the_gauge_is_basis_points_floored_and_zero_when_owed() -> None:
    assert Share(2, 3).basis_points == 6_666
    assert Share(-50, 100).basis_points == 0
    assert Share(150, 100).basis_points == 15_000


@pytest.mark.parametrize("percent", [0, 101])
def test_an_alert_percentage_out_of_range_is_refused(percent: int) -> None:
    with pytest.raises(ValueError, match="alert percentage"):
        crossing(Share(0, 1), Share(1, 1), percent)


def test_a_threshold_crossed_twice_in_one_batch_alerts_once() -> None:
    changes = [Share(n, 100) for n in (85, 60, 90)]

    assert alerts_in_batch(Share(10, 100), changes, 80) is True


def test_a_batch_that_stays_above_or_only_falls_owes_no_alert() -> None:
    assert alerts_in_batch(Share(85, 100), [Share(90, 100), Share(95, 100)], 80) is False
    assert alerts_in_batch(Share(85, 100), [Share(10, 100)], 80) is False
    assert alerts_in_batch(Share(10, 100), [], 80) is False


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    used=st.lists(st.integers(-1_000, 2_000), min_size=1, max_size=40),
    cap=st.integers(0, 1_000),
    percent=st.integers(1, 100),
)
def test_alerts_and_rearms_alternate_so_each_crossing_alerts_once(
    used: list[int], cap: int, percent: int
) -> None:
    shares = [Share(n, cap) for n in used]
    moves = [crossing(a, b, percent) for a, b in zip(shares, shares[1:], strict=False)]
    events = [m for m in moves if m is not Crossing.NONE]

    # Never two alerts without a re-arm between them, and the first move matches the start.
    for a, b in zip(events, events[1:], strict=False):
        assert a is not b
    if events:
        expected_first = Crossing.REARMED if shares[0].at_least(percent) else Crossing.REACHED
        assert events[0] is expected_first


# -- cap changes and the positions view ------------------------------------------------------


def test_a_cap_change_above_the_exposure_has_no_warning() -> None:
    change = check_cap_change(exposure(60_000), 100_000, 70_000)

    assert change == CapChange("007", "MAD", 100_000, 70_000, None)


def test_a_cap_lowered_below_the_exposure_is_recorded_with_a_warning() -> None:
    change = check_cap_change(exposure(60_000, held=5_000), 100_000, 64_999)

    assert change.warning is not None
    assert "650.00 MAD of position and holds, over the new cap of 649.99 MAD" in change.warning


@pytest.mark.parametrize("new_cap", [-1, MAX_LIMIT_MINOR + 1, 100_000])
def test_a_cap_change_out_of_bounds_or_to_the_same_cap_is_refused(new_cap: int) -> None:
    with pytest.raises(ValueError):
        check_cap_change(exposure(0), 100_000, new_cap)


def test_the_positions_view_shows_share_used_and_headroom_under_the_lower_limit() -> None:
    view = PositionView.of(exposure(60_000, held=15_000), BankLimits(100_000, 80_000), 80)

    assert view == PositionView("007", "MAD", 60_000, 15_000, 100_000, 80_000, 7_500, 80, 5_000)


def test_the_positions_view_never_shows_negative_headroom() -> None:
    view = PositionView.of(exposure(120_000), BankLimits(100_000, 150_000), 90)

    assert (view.share_used_bps, view.headroom_minor) == (12_000, 0)
