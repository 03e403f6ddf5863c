"""ISO 20022 status reason codes (ExternalStatusReason1Code) that Sakk gives."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a payment was rejected by the validator or failed in settlement."""

    AC01 = "AC01"  # IncorrectAccountNumber: the account is unknown
    AC04 = "AC04"  # ClosedAccountNumber
    AC06 = "AC06"  # BlockedAccount
    AG01 = "AG01"  # TransactionForbidden (e.g. payer and payee are the same account)
    AM02 = "AM02"  # NotAllowedAmount: above the channel's limit
    AM03 = "AM03"  # NotAllowedCurrency
    AM04 = "AM04"  # InsufficientFunds
    AM05 = "AM05"  # Duplication
    AM12 = "AM12"  # InvalidAmount: zero or negative
    CH16 = "CH16"  # ElementContentFormallyIncorrect
    DT01 = "DT01"  # InvalidDate
    RC01 = "RC01"  # BankIdentifierIncorrect

    @property
    def label(self) -> str:
        return TITLES[self]


TITLES = {
    Reason.AC01: "unknown account",
    Reason.AC04: "closed account",
    Reason.AC06: "blocked account",
    Reason.AG01: "transaction forbidden",
    Reason.AM02: "amount above the channel limit",
    Reason.AM03: "currency not allowed",
    Reason.AM04: "insufficient funds",
    Reason.AM05: "duplicate",
    Reason.AM12: "invalid amount",
    Reason.CH16: "malformed field",
    Reason.DT01: "invalid date",
    Reason.RC01: "unknown bank",
}
