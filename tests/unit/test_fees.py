"""The fee schedule, and the vignette that is always free."""

from __future__ import annotations

import pytest

from consumers.fees import check_no_vignette_fee, compute_fee
from engine.ledger.exceptions import VignetteFeeError
from engine.ledger.reference import FeeSchedule
from engine.money import apply_rate_bps

SCHEDULE = FeeSchedule(
    {
        ("WEB", "TRANSFER", "MAD"): (500, 0, None),
        ("WEB", "PURCHASE", "MAD"): (0, 25, 1000),
        ("EGOV", "EGOV", "MAD"): (0, 100, 5000),
        ("BRANCH", "TRANSFER", "MAD"): (1000, 10, 5000),
    }
)


def test_fixed_fee():
    assert compute_fee(SCHEDULE, "WEB", "TRANSFER", "MAD", 10_000, None) == 500


def test_rate_fee_is_rounded_half_up_in_integers():
    assert compute_fee(SCHEDULE, "WEB", "PURCHASE", "MAD", 40_000, None) == 100
    assert compute_fee(SCHEDULE, "WEB", "PURCHASE", "MAD", 200, None) == 1  # 0.5 -> 1
    assert compute_fee(SCHEDULE, "WEB", "PURCHASE", "MAD", 199, None) == 0  # 0.4975 -> 0


def test_rate_fee_is_capped():
    assert compute_fee(SCHEDULE, "WEB", "PURCHASE", "MAD", 10_000_000, None) == 1000


def test_fixed_plus_rate_capped():
    assert compute_fee(SCHEDULE, "BRANCH", "TRANSFER", "MAD", 100_000, None) == 1100
    assert compute_fee(SCHEDULE, "BRANCH", "TRANSFER", "MAD", 100_000_000, None) == 5000


def test_no_rule_means_no_fee():
    assert compute_fee(SCHEDULE, "POS", "PURCHASE", "MAD", 10_000, None) == 0


def test_vignette_is_free_even_where_egov_payments_carry_a_fee():
    assert compute_fee(SCHEDULE, "EGOV", "EGOV", "MAD", 300_000, "INCOME_TAX") == 3000
    assert compute_fee(SCHEDULE, "EGOV", "EGOV", "MAD", 300_000, "VIGNETTE") == 0


def test_a_fee_on_a_vignette_is_refused():
    with pytest.raises(VignetteFeeError):
        check_no_vignette_fee("VIGNETTE", 1)
    check_no_vignette_fee("VIGNETTE", 0)
    check_no_vignette_fee(None, 500)


def test_apply_rate_refuses_negative_amounts():
    with pytest.raises(ValueError):
        apply_rate_bps(-1, 10)
