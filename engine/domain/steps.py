"""The step catalog: one spec per kind of step, the one place a step is described.

A step is anything that happens to a payment after (or as) its first answer: a hold
placed (AUTHORIZE), captured, voided or expired, settled money refunded or returned. Its
spec says who may ask for it, which states it applies to and leads to, which way it
moves money (and so whether it is posted), the outcome its decision is counted under,
how ISO 20022 tells it, and who is told. Rules, metrics, ISO documents, notifications,
audits, replay, the demo and the chaos harness read it here; ``engine.events`` checks
the Avro enums against it at start-up.

Adding a step: a member of :class:`StepKind`, its :class:`StepSpec` in :data:`STEPS`,
its rule (``consumers/lifecycle.py``) and its symbol in the schemas' enums.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from engine.domain.outcomes import Outcome
from engine.domain.states import PaymentState as S


class StepKind(enum.StrEnum):
    AUTHORIZE = "AUTHORIZE"
    CAPTURE = "CAPTURE"
    VOID = "VOID"
    EXPIRE = "EXPIRE"
    REFUND = "REFUND"
    RETURN = "RETURN"


class Party(enum.StrEnum):
    """Who asks for a step, or is told of it: a payment's banks, or the switch itself."""

    PAYER_BANK = "payer_bank"
    PAYEE_BANK = "payee_bank"
    SWITCH = "switch"


class Money(enum.Enum):
    """Which way a step moves money: as the payment did, back, or not at all."""

    NONE = "none"
    TO_PAYEE = "to_payee"  # the payer pays the payee, as a one-step payment does
    TO_PAYER = "to_payer"  # the payee pays back (its bank's settlement account too)


BOTH_BANKS = frozenset({Party.PAYER_BANK, Party.PAYEE_BANK})


@dataclass(frozen=True, slots=True)
class StepSpec:
    """Everything the switch knows of one kind of step, apart from its rule."""

    kind: StepKind
    who_may_ask: frozenset[Party]
    sources: frozenset[S]  # the payment states it applies to
    target: S  # the state it leads to when it completes
    money: Money
    outcome: Outcome  # its applied decision's outcome: a metric label
    iso_status: str | None  # pacs.002 TxSts; None: told as a pacs.004 payment return
    sub_family: str | None  # ISO bank transaction sub-family of its posting
    states_after: frozenset[S]  # the states its payment may be in once it was applied
    also_leads_to: frozenset[S] = frozenset()  # e.g. a void after partial captures
    partial: bool = False  # a partial one leaves the payment's state as it was
    requested_as_step: bool = True  # a PaymentStepRequested asks for it
    needs_reason: bool = False  # the asking bank gives an ISO reason (a return's)
    who_is_told: frozenset[Party] = BOTH_BANKS  # once applied; a refusal: who asked

    @property
    def targets(self) -> frozenset[S]:
        """The states it may lead to (a partial one stays where it is)."""
        return self.also_leads_to | {self.target}

    @property
    def posting_kind(self) -> str | None:
        """The kind of its posting: a step that moves money posts it, under its own name."""
        return None if self.money is Money.NONE else self.kind.value

    @property
    def on_hold(self) -> bool:
        """It applies to an authorization's hold."""
        return S.AUTHORIZED in self.sources


_SPECS = (
    StepSpec(
        StepKind.AUTHORIZE, frozenset({Party.PAYER_BANK}), frozenset({S.VALIDATED}),
        S.AUTHORIZED, Money.NONE, Outcome.AUTHORIZED, "ACSP", None,
        frozenset({S.AUTHORIZED, S.CAPTURED, S.VOIDED, S.EXPIRED, S.REFUNDED}),
        requested_as_step=False,  # a PaymentInitiated of intent AUTHORIZATION asks for it
    ),
    StepSpec(
        StepKind.CAPTURE, BOTH_BANKS, frozenset({S.AUTHORIZED}), S.CAPTURED, Money.TO_PAYEE,
        Outcome.CAPTURED, "ACSC", "DMCT", frozenset({S.AUTHORIZED, S.CAPTURED, S.REFUNDED}),
        partial=True,
    ),
    StepSpec(
        StepKind.VOID, BOTH_BANKS, frozenset({S.AUTHORIZED}), S.VOIDED, Money.NONE,
        Outcome.VOIDED, "CANC", None, frozenset({S.VOIDED, S.CAPTURED, S.REFUNDED}),
        also_leads_to=frozenset({S.CAPTURED}),
    ),
    StepSpec(
        StepKind.EXPIRE, frozenset({Party.SWITCH}), frozenset({S.AUTHORIZED}), S.EXPIRED,
        Money.NONE, Outcome.EXPIRED, "CANC", None,
        frozenset({S.EXPIRED, S.CAPTURED, S.REFUNDED}), also_leads_to=frozenset({S.CAPTURED}),
    ),
    StepSpec(
        StepKind.REFUND, frozenset({Party.PAYEE_BANK}), frozenset({S.SETTLED, S.CAPTURED}),
        S.REFUNDED, Money.TO_PAYER, Outcome.REFUNDED, "ACSC", "DMCT",
        # A partial refund leaves a sale SETTLED, and a return may follow it.
        frozenset({S.SETTLED, S.CAPTURED, S.REFUNDED, S.RETURNED}), partial=True,
    ),
    StepSpec(
        StepKind.RETURN, frozenset({Party.PAYEE_BANK}), frozenset({S.SETTLED}), S.RETURNED,
        Money.TO_PAYER, Outcome.RETURNED, None, "RRTN", frozenset({S.RETURNED}),
        needs_reason=True,
    ),
)  # fmt: skip


class StepCatalogError(RuntimeError):
    """The catalog does not describe every step exactly once."""


def _catalog(specs: tuple[StepSpec, ...]) -> Mapping[StepKind, StepSpec]:
    kinds = [s.kind for s in specs]
    if sorted(kinds) != sorted(StepKind) or len(set(kinds)) != len(kinds):
        raise StepCatalogError(f"one spec per step kind: got {kinds}, kinds {list(StepKind)}")
    return MappingProxyType({kind: next(s for s in specs if s.kind is kind) for kind in StepKind})


STEPS: Mapping[StepKind, StepSpec] = _catalog(_SPECS)
# The payment's own posting (a one-step payment's), which no step makes.
PAYMENT_POSTING = "PAYMENT"
PAYMENT_SUB_FAMILY = "DMCT"  # a domestic credit transfer
# Postings that move a payment's money (between banks, when interbank): the payment's
# own and each money step's, in catalog order. Opening balances are not among them.
PAYMENT_POSTING_KINDS = (
    PAYMENT_POSTING,
    *(s.posting_kind for s in STEPS.values() if s.posting_kind),
)
STEP_POSTING_KINDS = PAYMENT_POSTING_KINDS[1:]
MONEY_STEPS = tuple(s.kind for s in STEPS.values() if s.money is not Money.NONE)
HOLD_STEPS = tuple(s.kind for s in STEPS.values() if s.on_hold)
MONEY_BACK = tuple(s.kind for s in STEPS.values() if s.money is Money.TO_PAYER)
REQUESTED_STEPS = tuple(s.kind for s in STEPS.values() if s.requested_as_step)
APPLIED_OUTCOMES = frozenset(s.outcome for s in STEPS.values())


def spec_of(kind: str) -> StepSpec:
    """The spec of step ``kind`` (a StepKind or its name); ValueError for no such step."""
    return STEPS[StepKind(kind)]


def banks_of(parties: frozenset[Party], payer_bank: str, payee_bank: str, switch: str) -> set[str]:
    """The codes of ``parties`` for one payment."""
    code = {Party.PAYER_BANK: payer_bank, Party.PAYEE_BANK: payee_bank, Party.SWITCH: switch}
    return {code[p] for p in parties}
