"""The payment state machine.

    (new) --validator--> VALIDATED --settlement--> SETTLED
      |                           \\--settlement--> FAILED
      \\--validator--> REJECTED

SETTLED, REJECTED and FAILED are terminal: a payment ends in exactly one of them.
"""

from __future__ import annotations

from engine.ledger.exceptions import LedgerError
from engine.ledger.models import PaymentState

TERMINAL = frozenset({PaymentState.SETTLED, PaymentState.REJECTED, PaymentState.FAILED})
ALLOWED: dict[PaymentState | None, frozenset[PaymentState]] = {
    None: frozenset({PaymentState.VALIDATED, PaymentState.REJECTED}),
    PaymentState.VALIDATED: frozenset({PaymentState.SETTLED, PaymentState.FAILED}),
}


class IllegalTransitionError(LedgerError):
    """A payment was asked to move to a state its current state does not lead to."""


def check_transition(current: str | None, target: str) -> None:
    source = PaymentState(current) if current is not None else None
    if PaymentState(target) not in ALLOWED.get(source, frozenset()):
        raise IllegalTransitionError(f"payment cannot go from {current or 'new'} to {target}")
