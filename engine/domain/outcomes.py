"""What a stage decided for one event (``Decision.outcome``), and what a step record says.

An :class:`Outcome` is a metric label (``sakk_messages_total``, ``sakk_payment_outcomes_total``,
``sakk_end_to_end_seconds``), the ``handled_events.outcome`` of the event and a key of the
replay's summary: its values are part of the dashboards and never change.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    # a payment's first answers
    VALIDATED = "validated"
    REJECTED = "rejected"
    SETTLED = "settled"
    FAILED = "failed"
    # its steps (engine.domain.steps: each step's ``outcome``)
    AUTHORIZED = "authorized"
    STEP_VALIDATED = "step_validated"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    RETURNED = "returned"
    STEP_REFUSED = "step_refused"
    # a bank's liquidity at the switch (FundsIn, FundsOut): posted, or a withdrawal refused
    FUNDS_IN = "funds_in"
    FUNDS_OUT = "funds_out"
    FUNDS_REFUSED = "funds_refused"
    # the notification stage's
    NOTIFIED = "notified"
    # the processor's own, for a message no stage decided on
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"

    @property
    def summary_key(self) -> str:
        """Its key in the replay's summary ("steps_validated": steps, in the plural)."""
        return SUMMARY_KEYS.get(self, self.value)


SUMMARY_KEYS = {Outcome.STEP_VALIDATED: "steps_validated", Outcome.STEP_REFUSED: "steps_refused"}
# The decisions the validator and settlement make, in the order the replay reports them.
DECIDED = tuple(
    o for o in Outcome if o not in (Outcome.NOTIFIED, Outcome.DUPLICATE, Outcome.DEAD_LETTERED)
)


class StepOutcome(enum.StrEnum):
    """A step as ``payment_steps.outcome`` records it."""

    APPLIED = "APPLIED"
    REFUSED = "REFUSED"
