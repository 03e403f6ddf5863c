"""The legs of a movement of money between two accounts, and the window it counts in.

A posting for a payment from bank A's customer to bank B's customer::

    payer (A)               -(amount + fee)
    A fee income            +fee
    A settlement account    +amount      A owes the switch
    B settlement account    -amount      the switch owes B
    payee (B)               +amount

Within one bank the two settlement legs are left out. Every posting sums to zero per
currency; the settlement accounts give each bank's net position per settlement window.
A refund or a return is the same movement the other way: the payee pays, the payer is
paid, and the fee (if any) goes to the payee's bank.
"""

from __future__ import annotations

from datetime import datetime

from engine.ledger.models import AccountKind
from engine.ledger.postings import Leg
from engine.ledger.reference import internal_account


def settlement_window(occurred_at: datetime) -> str:
    """The interbank window a posting belongs to: its business day (UTC)."""
    return occurred_at.date().isoformat()


def build_legs(
    payer: str, payee: str, payer_bank: str, payee_bank: str, amount: int, fee: int, currency: str
) -> tuple[Leg, ...]:
    # The paying account's debit is the one checked against its funds: applied in place.
    legs = [Leg(payer, -(amount + fee), currency, checked=True), Leg(payee, amount, currency)]
    if fee:
        legs.append(
            Leg(internal_account(payer_bank, AccountKind.FEE_INCOME, currency), fee, currency)
        )
    if payer_bank != payee_bank:
        legs.append(
            Leg(internal_account(payer_bank, AccountKind.SETTLEMENT, currency), amount, currency)
        )
        legs.append(
            Leg(internal_account(payee_bank, AccountKind.SETTLEMENT, currency), -amount, currency)
        )
    return tuple(legs)
