"""Money: integer minor units plus an ISO 4217 code. No float ever touches an amount."""

from __future__ import annotations

# ISO 4217 minor-unit exponents of the currencies Sakk accepts.
MINOR_UNIT_EXPONENT = {"MAD": 2, "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "XOF": 0, "TND": 3}

MAX_AMOUNT_MINOR = 10**15  # a quadrillion centimes: far above any real payment, far below int64


def is_known_currency(code: str) -> bool:
    return code in MINOR_UNIT_EXPONENT


def format_minor(amount_minor: int, currency: str) -> str:
    """``123456, "MAD"`` -> ``"1,234.56 MAD"`` using integer arithmetic only."""
    exponent = MINOR_UNIT_EXPONENT.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    text = f"{whole:,}" + (f".{frac:0{exponent}d}" if exponent else "")
    return f"{sign}{text} {currency}"


def apply_rate_bps(amount_minor: int, rate_bps: int) -> int:
    """``amount * rate_bps / 10 000``, rounded half up, in integers."""
    if amount_minor < 0 or rate_bps < 0:
        raise ValueError("amount and rate must be non-negative")
    return (amount_minor * rate_bps + 5_000) // 10_000
