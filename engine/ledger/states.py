"""The payment state machine, as the ledger enforces it.

The machine itself is the catalog's (:mod:`engine.domain.machine`: the first answers and
each step's transition). REJECTED, FAILED, VOIDED, EXPIRED, REFUNDED and RETURNED are
final. A one-step payment's first answer is SETTLED, REJECTED or FAILED; an
authorization's is AUTHORIZED, REJECTED or FAILED. A partial capture leaves a payment
AUTHORIZED, a partial refund leaves it SETTLED or CAPTURED: those steps change its
amounts, not its state. A hold resolved with something captured (a final capture, or a
void or expiry after partial captures) makes the payment CAPTURED.

The ledger's trigger ``payments_state_transition`` (migration 0007) refuses every other
change of state, whoever makes it.
"""

from __future__ import annotations

from engine.domain.machine import ALLOWED
from engine.domain.states import PaymentState as S
from engine.domain.steps import STEPS, StepKind
from engine.ledger.exceptions import LedgerError

# Ledger checks count answered payments by state, in a fixed order (tuples).
TERMINAL = (S.SETTLED, S.REJECTED, S.FAILED)  # the answers of a one-step payment
LATER = (S.AUTHORIZED, S.CAPTURED, S.VOIDED, S.EXPIRED, S.REFUNDED, S.RETURNED)  # answered
REFUNDABLE = STEPS[StepKind.REFUND].sources

__all__ = [
    "ALLOWED",
    "LATER",
    "REFUNDABLE",
    "TERMINAL",
    "IllegalTransitionError",
    "check_transition",
]


class IllegalTransitionError(LedgerError):
    """A payment was asked to move to a state its current state does not lead to."""


def check_transition(current: str | None, target: str) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current -> target`` is allowed.

    Staying in a state is no transition: a partial step never calls this.
    """
    source = S(current) if current is not None else None
    if S(target) not in ALLOWED.get(source, frozenset()):
        raise IllegalTransitionError(f"payment cannot go from {current or 'new'} to {target}")
