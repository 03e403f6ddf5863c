"""Each validation rule on its own: the reason code a bank will see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.validator import (
    AccountView,
    check_account,
    check_amount,
    check_event_time,
    check_formats,
    check_parties,
)
from engine.config import load_settings
from engine.ledger.reference import Limits
from engine.reasons import Reason
from tests.factories import AMINA, KARIM, VIGNETTE_DGI, payment, vignette

LIMITS = Limits({("WEB", "MAD"): 5_000_000, ("ATM", "MAD"): 500_000, ("EGOV", "MAD"): 10_000_000})
BANKS = frozenset({"007", "011", "310"})


def view(
    number: str,
    bank: str = "007",
    kind: str = "CUSTOMER",
    currency: str = "MAD",
    status: str = "ACTIVE",
) -> AccountView:
    return AccountView(number, bank, kind, currency, status)


def reason(rejection):  # type: ignore[no-untyped-def]
    return rejection.reason if rejection else None


def test_valid_payment_passes_every_rule():
    p = payment()
    payer, payee = view(AMINA[1]), view(KARIM[1], "011")
    assert check_formats(p) is None
    assert check_amount(p, LIMITS) is None
    assert check_account("payer", "007", AMINA[1], payer, BANKS) is None
    assert check_parties(p, payer, payee) is None


@pytest.mark.parametrize("amount", [0, -1, -(10**12)])
def test_amount_zero_or_negative_is_rejected_am12(amount):
    assert reason(check_amount(payment(amount_minor=amount), LIMITS)) == Reason.AM12


def test_amount_above_channel_limit_is_rejected_am02():
    p = payment(amount_minor=500_001, channel="ATM", payment_type="CASH_WITHDRAWAL")
    rejection = check_amount(p, LIMITS)
    assert reason(rejection) == Reason.AM02
    assert "5,000.00 MAD" in rejection.message


def test_unknown_currency_is_rejected_am03():
    assert reason(check_amount(payment(currency="XXX"), LIMITS)) == Reason.AM03


def test_currency_without_limit_on_channel_is_rejected_am03():
    assert reason(check_amount(payment(currency="EUR"), LIMITS)) == Reason.AM03


def test_reference_longer_than_35_characters_is_rejected_ch16():
    assert reason(check_formats(payment(reference="R" * 36))) == Reason.CH16


def test_one_megabyte_reference_is_rejected_ch16():
    assert reason(check_formats(payment(reference="R" * 1024 * 1024))) == Reason.CH16


def test_unknown_account_is_rejected_ac01():
    assert reason(check_account("payee", "011", "011999", None, BANKS)) == Reason.AC01


def test_account_at_another_bank_is_rejected_ac01():
    assert (
        reason(check_account("payee", "011", AMINA[1], view(AMINA[1], "007"), BANKS)) == Reason.AC01
    )


def test_unknown_bank_is_rejected_rc01():
    assert reason(check_account("payer", "999", AMINA[1], view(AMINA[1]), BANKS)) == Reason.RC01


def test_closed_account_is_rejected_ac04():
    assert (
        reason(check_account("payee", "007", "x", view("x", status="CLOSED"), BANKS)) == Reason.AC04
    )


def test_blocked_account_is_rejected_ac06():
    assert (
        reason(check_account("payer", "007", "x", view("x", status="BLOCKED"), BANKS))
        == Reason.AC06
    )


def test_currency_different_from_accounts_is_rejected_am03():
    p = payment()
    assert (
        reason(check_parties(p, view(AMINA[1], currency="EUR"), view(KARIM[1], "011")))
        == Reason.AM03
    )


def test_payment_to_oneself_is_rejected_ag01():
    p = payment(AMINA, AMINA)
    assert reason(check_parties(p, view(AMINA[1]), view(AMINA[1]))) == Reason.AG01


def test_vignette_must_pay_a_government_account():
    p = vignette()
    assert check_parties(p, view(AMINA[1]), view(VIGNETTE_DGI[1], "310", "GOVERNMENT")) is None
    assert reason(check_parties(p, view(AMINA[1]), view(KARIM[1], "011"))) == Reason.AG01


def test_cash_withdrawal_must_pay_a_cash_account():
    p = payment(payment_type="CASH_WITHDRAWAL", channel="ATM")
    assert reason(check_parties(p, view(AMINA[1]), view(KARIM[1], "011"))) == Reason.AG01
    assert check_parties(p, view(AMINA[1]), view("011-CASH-MAD", "011", "CASH")) is None


def test_internal_account_cannot_initiate_ag01():
    p = payment()
    assert (
        reason(check_parties(p, view("007-FEE_INCOME-MAD", kind="FEE_INCOME"), view(KARIM[1])))
        == Reason.AG01
    )


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(0), None),
        (timedelta(minutes=-4), None),
        (timedelta(minutes=10), Reason.DT01),
        (timedelta(days=-8), Reason.DT01),
    ],
)
def test_event_time_is_judged_against_the_record_time_not_the_wall_clock(offset, expected):
    settings = load_settings(environ={})
    stored = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    record_ms = int(stored.timestamp() * 1000)
    assert reason(check_event_time(stored + offset, record_ms, settings)) == expected
