"""ISO 20022 amounts (decimal strings) to integer minor units and back, exactly.

Never through float or even Decimal arithmetic: the text is split at the point and the
digits are read as integers, so ``0.1 + 0.2`` cannot happen. An amount with a non-zero
digit beyond the currency's minor unit (``1.005`` MAD) is refused, never rounded:
rounding a bank's instruction would move money it did not ask to move. Trailing zeros
beyond it (``1.50`` or ``1.500`` MAD) change nothing and are accepted.
"""

from __future__ import annotations

import re

from engine.money import MAX_AMOUNT_MINOR, MINOR_UNIT_EXPONENT

# What xs:decimal allows, restricted as ISO 20022 amounts are (no sign, no exponent).
_DECIMAL = re.compile(r"\+?(?P<whole>[0-9]*)(?:\.(?P<frac>[0-9]*))?")


class AmountError(ValueError):
    """An amount Sakk cannot take exactly."""


def to_minor(text: str, currency: str) -> int:
    """``"1234.5"``, ``"MAD"`` -> ``123450``; raises AmountError."""
    if currency not in MINOR_UNIT_EXPONENT:
        raise AmountError(f"currency {currency!r} is not one Sakk settles")
    exponent = MINOR_UNIT_EXPONENT[currency]
    match = _DECIMAL.fullmatch(text.strip())
    if match is None or not (match["whole"] or match["frac"]):
        raise AmountError(f"{text[:40]!r} is not a decimal amount")
    frac = (match["frac"] or "").rstrip("0")
    if len(frac) > exponent:
        raise AmountError(
            f"{text.strip()} {currency} has {len(frac)} decimals; {currency} allows {exponent}"
        )
    minor = int(match["whole"] or "0") * 10**exponent + int(frac.ljust(exponent, "0") or "0")
    if minor > MAX_AMOUNT_MINOR:
        raise AmountError(f"{text.strip()} {currency} is over Sakk's largest amount")
    return minor


def to_decimal_text(amount_minor: int, currency: str) -> str:
    """``123450``, ``"MAD"`` -> ``"1234.50"``: the absolute value, as ISO 20022 writes it."""
    exponent = MINOR_UNIT_EXPONENT.get(currency, 2)
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    return f"{whole}.{frac:0{exponent}d}" if exponent else str(whole)
