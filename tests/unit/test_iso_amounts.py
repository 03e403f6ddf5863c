"""ISO 20022 decimal amounts to minor units: exact, never rounded, never float."""

from __future__ import annotations

import pytest

from engine.iso.amounts import AmountError, to_decimal_text, to_minor
from engine.money import MAX_AMOUNT_MINOR


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("0.01", "MAD", 1),
        ("1", "MAD", 100),
        ("1.5", "MAD", 150),
        ("1.500", "MAD", 150),  # trailing zeros change nothing
        ("1234.56", "MAD", 123_456),
        ("9999999999999.99", "MAD", 999_999_999_999_999),  # huge but valid
        ("10000000000000", "MAD", MAX_AMOUNT_MINOR),
        ("12", "XOF", 12),
        ("1.234", "TND", 1_234),
        (" 7.10 ", "EUR", 710),
    ],
)
def test_amounts_are_read_exactly(text: str, currency: str, minor: int) -> None:
    assert to_minor(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "why"),
    [
        ("1.005", "MAD", "3 decimals; MAD allows 2"),
        ("0.001", "EUR", "3 decimals"),
        ("1.5", "XOF", "1 decimals; XOF allows 0"),
        ("10000000000000.01", "MAD", "largest amount"),
        ("1e3", "MAD", "not a decimal"),
        ("-1.00", "MAD", "not a decimal"),
        ("", "MAD", "not a decimal"),
        (".", "MAD", "not a decimal"),
        ("1.00", "JPY", "not one Sakk settles"),
    ],
)
def test_inexact_or_impossible_amounts_are_refused(text: str, currency: str, why: str) -> None:
    with pytest.raises(AmountError, match=why):
        to_minor(text, currency)


def test_minor_units_are_written_back_as_iso_decimals() -> None:
    assert to_decimal_text(123_456, "MAD") == "1234.56"
    assert to_decimal_text(-5, "MAD") == "0.05"
    assert to_decimal_text(12, "XOF") == "12"
    assert to_decimal_text(1, "TND") == "0.001"
