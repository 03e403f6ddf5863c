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
# Every outcome a notification tells, in the order the schema lists them.
NOTIFIED_OUTCOMES: tuple[str, ...] = (
    *(a.state.value for a in TOLD_ANSWERS),
    *(k.value for k in STEPS),
    REFUSED,
)


class NotificationStatus(enum.StrEnum):
    """PENDING until delivered, or given up (FAILED) at its horizon; an operator's
    redelivery puts a FAILED one back to PENDING."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


FINISHED = (NotificationStatus.DELIVERED, NotificationStatus.FAILED)  # a PaymentNotified's
