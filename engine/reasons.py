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
    AM09 = "AM09"  # WrongAmount: above what remains of a hold, or of what is refundable
    AM12 = "AM12"  # InvalidAmount: zero or negative
    AM23 = "AM23"  # AmountExceedsSettlementLimit: beyond the paying bank's net debit cap
    CH16 = "CH16"  # ElementContentFormallyIncorrect
    DT01 = "DT01"  # InvalidDate
    RC01 = "RC01"  # BankIdentifierIncorrect
    TM01 = "TM01"  # InvalidCutOffTime: the hold expired before the step
    # Steps of a payment (ExternalPaymentCancellationRejection1Code / return codes):
    ARDT = "ARDT"  # AlreadyReturned: refunded or returned in full already
    NOOR = "NOOR"  # NoOriginalTransactionReceived: the step names no payment the switch knows
    # Return reasons a payee's bank may give (ExternalReturnReason1Code), beyond those above:
    BE04 = "BE04"  # MissingCreditorAddress
    MD07 = "MD07"  # EndCustomerDeceased
    MS02 = "MS02"  # NotSpecifiedReasonCustomerGenerated
    MS03 = "MS03"  # NotSpecifiedReasonAgentGenerated

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
    Reason.AM23: "beyond the bank's net debit cap",
    Reason.CH16: "malformed field",
    Reason.DT01: "invalid date",
    Reason.RC01: "unknown bank",
    Reason.AM09: "wrong amount",
    Reason.TM01: "after the cut-off",
    Reason.ARDT: "already returned",
    Reason.NOOR: "no such payment",
    Reason.BE04: "creditor address missing",
    Reason.MD07: "customer deceased",
    Reason.MS02: "customer's reason",
    Reason.MS03: "bank's reason",
}
# Why a payee's bank may return a credit it cannot apply.
RETURN_REASONS = frozenset(
    {Reason.AC01, Reason.AC04, Reason.AC06, Reason.AG01, Reason.AM05, Reason.BE04,
     Reason.MD07, Reason.MS02, Reason.MS03}
)  # fmt: skip
