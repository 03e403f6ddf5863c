"""A notification's states and the transitions between them, declared once.

::

    (new) -> PENDING            the notification stage schedules it, due now
    PENDING -> PENDING          a dispatcher leases it, a lease is given back, a failed
                                attempt is due again later
    PENDING -> DELIVERED        the bank took it
    PENDING -> FAILED           still undelivered at its horizon: given up
    FAILED  -> PENDING          an operator redelivers it (a new round)

Every transition is a guarded update: it applies only while the row is still in the
state (and at the attempt, lease or round) the writer expects, so of two writers racing
for one notification exactly one wins.
"""

from __future__ import annotations

from enum import StrEnum


class NotificationState(StrEnum):
    """A notification's ``status`` column; the values are what the ledger stores."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


FINISHED = (NotificationState.DELIVERED, NotificationState.FAILED)

TRANSITIONS: frozenset[tuple[NotificationState | None, NotificationState]] = frozenset(
    {
        (None, NotificationState.PENDING),
        (NotificationState.PENDING, NotificationState.PENDING),
        (NotificationState.PENDING, NotificationState.DELIVERED),
        (NotificationState.PENDING, NotificationState.FAILED),
        (NotificationState.FAILED, NotificationState.PENDING),
    }
)


def check_transition(from_state: NotificationState | None, to_state: NotificationState) -> None:
    """Raise ValueError for a move the state machine above does not allow."""
    if (from_state, to_state) not in TRANSITIONS:
        raise ValueError(f"notification {from_state} -> {to_state}: not a transition")
