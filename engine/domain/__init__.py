"""The lifecycle's concepts, each described once: steps, outcomes, states, notifications.

Pure data and small rules, free of SQL, Kafka and HTTP: the ledger, the stages, metrics,
ISO 20022, audits and tooling read them here instead of spelling them again.

- :mod:`engine.domain.states`: the payment's states and its first answers;
- :mod:`engine.domain.steps`: the step catalog, one :class:`StepSpec` per :class:`StepKind`;
- :mod:`engine.domain.machine`: the state machine the two make;
- :mod:`engine.domain.outcomes`: a decision's outcome (a metric label), a step's record;
- :mod:`engine.domain.notifications`: what a bank is told, and a notification's status.
"""

from engine.domain.machine import ALLOWED
from engine.domain.notifications import NOTIFIED_OUTCOMES, REFUSED, NotificationStatus
from engine.domain.outcomes import Outcome, StepOutcome
from engine.domain.states import PaymentState
from engine.domain.steps import STEPS, Money, Party, StepKind, StepSpec, spec_of

__all__ = [
    "ALLOWED",
    "NOTIFIED_OUTCOMES",
    "REFUSED",
    "STEPS",
    "Money",
    "NotificationStatus",
    "Outcome",
    "Party",
    "PaymentState",
    "StepKind",
    "StepOutcome",
    "StepSpec",
    "spec_of",
]
