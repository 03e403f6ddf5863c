"""The states of a payment, and the first answers that bring it into the lifecycle.

A payment's first answer is given by the validator (VALIDATED or REJECTED) and then by
settlement (SETTLED, FAILED, or AUTHORIZED: the AUTHORIZE step of :mod:`.steps`). Every
later change of state is a step's (:data:`engine.domain.steps.STEPS`); the state machine
is the union of the two (:data:`engine.domain.machine.ALLOWED`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PaymentState(enum.StrEnum):
    VALIDATED = "VALIDATED"
    REJECTED = "REJECTED"
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    # The lifecycle of an authorization, and of settled money (engine.domain.steps):
    AUTHORIZED = "AUTHORIZED"  # a hold reserves the amount; captures may follow
    CAPTURED = "CAPTURED"  # the hold is resolved and something was captured
    VOIDED = "VOIDED"  # released by its bank, nothing captured
    EXPIRED = "EXPIRED"  # released at its expiry, nothing captured
    REFUNDED = "REFUNDED"  # everything captured or settled was refunded
    RETURNED = "RETURNED"  # the payee's bank returned the credit


@dataclass(frozen=True, slots=True)
class Answer:
    """A first answer of a payment that is no step: who gives it, from which state."""

    state: PaymentState
    source: PaymentState | None  # None: the payment is new
    stage: str  # the stage that gives it
    iso_status: str  # its pacs.002 status (TxSts)


# A one-step payment's answers; an authorization's AUTHORIZED is the AUTHORIZE step's.
ANSWERS = (
    Answer(PaymentState.VALIDATED, None, "validator", ""),
    Answer(PaymentState.SETTLED, PaymentState.VALIDATED, "settlement", "ACSC"),
    Answer(PaymentState.REJECTED, None, "validator", "RJCT"),
    Answer(PaymentState.FAILED, PaymentState.VALIDATED, "settlement", "RJCT"),
)
# The answers a bank is told of (VALIDATED is no answer to a bank: settlement follows).
TOLD_ANSWERS = tuple(a for a in ANSWERS if a.iso_status)
