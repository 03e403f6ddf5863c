"""The fee schedule: what a payer pays on top of a payment.

The vehicle-tax vignette is paid online free of charge by law: its fee is zero
whatever the schedule says, and settlement refuses to post one.
"""

from __future__ import annotations

from engine.ledger.exceptions import VignetteFeeError
from engine.ledger.reference import FeeSchedule
from engine.money import apply_rate_bps

VIGNETTE = "VIGNETTE"


def compute_fee(
    schedule: FeeSchedule,
    channel: str,
    payment_type: str,
    currency: str,
    amount_minor: int,
    egov_service: str | None,
) -> int:
    """Fee in minor units: fixed + basis points of the amount, capped; 0 without a rule."""
    if egov_service == VIGNETTE:
        return 0
    rule = schedule.rules.get((channel, payment_type, currency))
    if rule is None:
        return 0
    fixed_minor, rate_bps, max_minor = rule
    fee = fixed_minor + apply_rate_bps(amount_minor, rate_bps)
    return fee if max_minor is None else min(fee, max_minor)


def check_no_vignette_fee(egov_service: str | None, fee_minor: int) -> None:
    """Refuse, loudly, any fee on a vignette payment."""
    if egov_service == VIGNETTE and fee_minor != 0:
        raise VignetteFeeError(f"a vignette payment carries no fee, got {fee_minor}")
