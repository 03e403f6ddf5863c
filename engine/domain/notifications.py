"""What a bank is told, and where its notification stands.

A notification tells one outcome to one bank: a payment's first answer (SETTLED,
REJECTED, FAILED), a step that took effect (its kind), or a refused step (REFUSED). The
``PaymentNotified`` schema's ``Outcome`` enum and its ``DeliveryStatus`` enum are checked
against these at start-up (``engine.events``).
"""

from __future__ import annotations

import enum

from engine.domain.states import TOLD_ANSWERS
from engine.domain.steps import STEPS

REFUSED = "REFUSED"  # the outcome told of a refused step
# A bank's exposure rose to the share of its net debit cap it chose (engine.risk.limits):
# told to that bank alone, once per crossing; no payment's outcome.
CAP_ALERT = "CAP_ALERT"
# Every outcome a notification tells, in the order the schema lists them.
NOTIFIED_OUTCOMES: tuple[str, ...] = (
    *(a.state.value for a in TOLD_ANSWERS),
    *(k.value for k in STEPS),
    REFUSED,
    CAP_ALERT,
)


class NotificationStatus(enum.StrEnum):
    """PENDING until delivered, or given up (FAILED) at its horizon; an operator's
    redelivery puts a FAILED one back to PENDING."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


FINISHED = (NotificationStatus.DELIVERED, NotificationStatus.FAILED)  # no attempt follows

# A notification's moves; every one is a guarded update (engine/ledger/notification_writes.py):
# it applies only while the row is still in the state, attempt, lease or round its writer
# expects, so of two writers racing for one notification exactly one wins.
#
#     (new) -> PENDING            the notification stage schedules it, due now
#     PENDING -> PENDING          a dispatcher leases it, a lease is given back, a failed
#                                 attempt is due again later
#     PENDING -> DELIVERED        the bank took it
#     PENDING -> FAILED           still undelivered at its horizon: given up
#     FAILED  -> PENDING          an operator redelivers it (a new round)
TRANSITIONS: frozenset[tuple[NotificationStatus | None, NotificationStatus]] = frozenset(
    {
        (None, NotificationStatus.PENDING),
        (NotificationStatus.PENDING, NotificationStatus.PENDING),
        (NotificationStatus.PENDING, NotificationStatus.DELIVERED),
        (NotificationStatus.PENDING, NotificationStatus.FAILED),
        (NotificationStatus.FAILED, NotificationStatus.PENDING),
    }
)


def check_transition(from_state: NotificationStatus | None, to_state: NotificationStatus) -> None:
    """Raise ValueError for a move the state machine above does not allow."""
    if (from_state, to_state) not in TRANSITIONS:
        raise ValueError(f"notification {from_state} -> {to_state}: not a transition")
