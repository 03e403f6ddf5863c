"""The lifecycle's invariants, checked after a chaos run from the ledger and the wire.

- every step published (and every expiry due) recorded once in ``payment_steps``, applied
  or refused as the workload says, with its reason; no step recorded that nobody asked;
- one distinct ``PaymentStepCompleted`` per applied step (and per authorization), one
  distinct ``PaymentStepRefused`` per refused step;
- a hold per answered authorization, resolved on the wire at most once, by the step the
  hold's ``resolved_by`` names;
- the lifecycle payments end in the state and with the amounts the workload expects.

What the ledger alone shows (captures within holds, refunds within captures, each
money step's posting, available balances) is the product's auditor's:
``engine.ledger.checks.check_lifecycle``, which the harness runs beside these.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from engine.domain import steps as catalog
from engine.domain.notifications import REFUSED as REFUSED_TOLD
from engine.events import PAYMENT_STEP_VALIDATED, SWITCH, derived_event_id
from engine.ledger.models import (
    Hold,
    HoldState,
    PaymentIntent,
    PaymentStep,
    StepKind,
)
from engine.ledger.models import PaymentState as S
from tooling.workload.chaos import Workload
from tooling.workload.flows import APPLIED, REFUSED

ON_HOLD = frozenset(catalog.HOLD_STEPS)
PAID_BACK = frozenset(catalog.MONEY_BACK)
POSTED = frozenset(catalog.MONEY_STEPS)
SETTLED_FIRST = frozenset({S.SETTLED, S.REFUNDED, S.RETURNED})  # a SALE that settled
HELD_FIRST = frozenset({S.AUTHORIZED, S.CAPTURED, S.VOIDED, S.EXPIRED})  # a hold was placed


@dataclass(frozen=True)
class LedgerSteps:
    """What the checks read of the ledger's steps and holds, once."""

    steps: Mapping[str, Any]  # step id -> payment_steps row
    holds: Mapping[str, Any]  # payment id -> holds row

    @classmethod
    def read(cls, conn: Connection) -> LedgerSteps:
        steps = {r.step_id: r for r in conn.execute(select(PaymentStep.__table__))}
        holds = {r.payment_id: r for r in conn.execute(select(Hold.__table__))}
        return cls(steps, holds)

    def applied(self, payment_id: str, kinds: Iterable[str]) -> list[Any]:
        wanted = set(kinds)
        return [
            r
            for r in self.steps.values()
            if r.payment_id == payment_id and r.outcome == APPLIED and r.kind in wanted
        ]


def first_answer(row: Any) -> str:
    """The state a payment was first answered with, from its state now."""
    if row.state in (S.REJECTED, S.FAILED, S.VALIDATED):
        return str(row.state)
    return S.AUTHORIZED if row.intent == PaymentIntent.AUTHORIZATION else S.SETTLED


def refused_subjects(step_id: str) -> tuple[str, str]:
    """The ids a refused step's notification may derive from: the bank's request (refused
    by the validator), or the validated step made of it (refused by settlement)."""
    return step_id, derived_event_id(step_id, PAYMENT_STEP_VALIDATED.name)


def check_steps(ledger: LedgerSteps, workload: Workload) -> list[str]:
    """Every step expected recorded once, as expected; nothing else recorded."""
    problems = []
    for sid, want in sorted(workload.steps.items()):
        row = ledger.steps.get(sid)
        what = f"step {sid} ({want.label}: {want.kind} by {want.sender_bank})"
        if row is None:
            problems.append(f"{what} was never recorded (lost)")
            continue
        got = (row.payment_id, row.kind, row.sender_bank, row.outcome)
        if got != (want.payment_id, want.kind, want.sender_bank, want.outcome):
            problems.append(f"{what} recorded as {got}, expected {want.outcome}")
        elif want.reason is not None and row.reason_code != want.reason:
            problems.append(f"{what} refused with {row.reason_code}, expected {want.reason}")
        elif want.outcome == APPLIED and want.amount_minor not in (None, row.amount_minor):
            problems.append(f"{what} applied {row.amount_minor}, expected {want.amount_minor}")
    problems += [
        f"step {sid} ({row.kind} {row.outcome}) recorded, never published nor due"
        for sid, row in sorted(ledger.steps.items())
        if sid not in workload.steps
    ]
    return problems


def check_lifecycle_payments(payments: Mapping[str, Any], workload: Workload) -> list[str]:
    """The lifecycle payments end with the captured and refunded amounts expected."""
    problems = []
    for pid, want in sorted(workload.payments.items()):
        row = payments.get(pid)
        if row is None or want.captured_minor is None:
            continue
        got = (row.captured_minor or 0, row.refunded_minor or 0)
        if got != (want.captured_minor, want.refunded_minor):
            problems.append(
                f"{pid} ({want.label}) captured/refunded {got}, expected "
                f"{(want.captured_minor, want.refunded_minor)}"
            )
    return problems


def check_step_events(
    ledger: LedgerSteps,
    payments: Mapping[str, Any],
    completed: Mapping[str, dict[str, Any]],
    refused: Mapping[str, dict[str, Any]],
) -> list[str]:
    """One distinct completed event per applied step and authorization, one refused event
    per refused step (``completed``/``refused``: distinct events by event id)."""
    done = Counter(str(e["step_id"]) for e in completed.values())
    told = Counter(str(e["causation_event_id"]) for e in refused.values())
    expected_done = {sid for sid, r in ledger.steps.items() if r.outcome == APPLIED} | {
        pid for pid, row in payments.items() if first_answer(row) == S.AUTHORIZED
    }
    problems = [
        f"step {sid} has {done[sid]} distinct PaymentStepCompleted events, expected 1"
        for sid in sorted(expected_done | set(done))
        if done[sid] != (1 if sid in expected_done else 0)
    ]
    expected_told: set[str] = set()
    for sid, row in sorted(ledger.steps.items()):
        if row.outcome != REFUSED:
            continue
        subjects = refused_subjects(sid)
        expected_told.update(subjects)
        if sum(told[s] for s in subjects) != 1:
            problems.append(
                f"refused step {sid} has {sum(told[s] for s in subjects)} distinct "
                "PaymentStepRefused events, expected 1"
            )
    problems += [
        f"PaymentStepRefused for {cause}, a step not recorded refused"
        for cause in sorted(set(told) - expected_told)
    ]
    return problems


def check_holds(
    ledger: LedgerSteps, payments: Mapping[str, Any], completed: Mapping[str, dict[str, Any]]
) -> list[str]:
    """A hold per answered authorization, resolved at most once, captured at most in full."""
    resolutions: dict[str, list[str]] = defaultdict(list)
    for event in completed.values():
        if event["step"] in ON_HOLD and event["payment_state"] != S.AUTHORIZED:
            resolutions[str(event["payment_id"])].append(str(event["step_id"]))
    problems = []
    for pid, row in sorted(payments.items()):
        hold = ledger.holds.get(pid)
        held = first_answer(row) == S.AUTHORIZED
        if hold is None:
            if held:
                problems.append(f"authorized payment {pid} has no hold")
            continue
        if not held:
            problems.append(f"{row.state.lower()} payment {pid} has a hold")
            continue
        problems += _hold_problems(pid, hold, resolutions.get(pid, []))
    return problems


def _hold_problems(pid: str, hold: Any, resolved: list[str]) -> list[str]:
    """The hold's resolution as the wire tells it (the ledger's side: check_lifecycle)."""
    problems = []
    if hold.state == HoldState.ACTIVE:
        if resolved or hold.resolved_by is not None:
            problems.append(f"active hold of {pid} was resolved by {resolved}")
    elif len(resolved) != 1:
        problems.append(f"hold of {pid} ({hold.state}) resolved {len(resolved)} times: {resolved}")
    elif hold.resolved_by != resolved[0] or hold.reserved_minor != 0:
        problems.append(
            f"hold of {pid} says resolved by {hold.resolved_by} with {hold.reserved_minor} "
            f"reserved; the wire says {resolved[0]}"
        )
    return problems


def expected_notification_ids(
    payments: Mapping[str, Any], ledger: LedgerSteps, notification_id: Any
) -> tuple[dict[str, set[str]], dict[str, list[set[str]]]]:
    """(payment id -> the notification ids it must have, payment id -> groups of which
    exactly one id must be there: a refused step's, whichever stage refused it)."""
    certain: dict[str, set[str]] = defaultdict(set)
    either: dict[str, list[set[str]]] = defaultdict(list)
    for pid, row in payments.items():
        first = first_answer(row)
        outcome = StepKind.AUTHORIZE if first == S.AUTHORIZED else first
        certain[pid] |= {notification_id(pid, outcome, b) for b in _told(row, first)}
    for sid, step in ledger.steps.items():
        row = payments.get(step.payment_id)
        if step.outcome == APPLIED and row is not None:
            certain[step.payment_id] |= {notification_id(sid, step.kind, b) for b in _parties(row)}
        elif step.outcome == REFUSED and step.sender_bank != SWITCH:
            either[step.payment_id].append(
                {notification_id(s, REFUSED_TOLD, step.sender_bank) for s in refused_subjects(sid)}
            )
    return certain, either


def _parties(row: Any) -> list[str]:
    return [row.payer_bank] + ([row.payee_bank] if row.payee_bank != row.payer_bank else [])


def _told(row: Any, first: str) -> list[str]:
    """Who hears of the first answer: both banks when money reached or was held for the
    payee, the payer's bank alone otherwise."""
    return _parties(row) if first in (S.SETTLED, S.AUTHORIZED) else [row.payer_bank]


def check_notified(
    by_payment: Mapping[str, set[str]], payments: Mapping[str, Any], ledger: LedgerSteps,
    notification_id: Any,
) -> list[str]:  # fmt: skip
    """Each payment's first answer and each of its steps told once to each bank concerned."""
    certain, either = expected_notification_ids(payments, ledger, notification_id)
    problems = []
    for pid in sorted(set(payments) | set(by_payment)):
        have = by_payment.get(pid, set())
        missing = certain.get(pid, set()) - have
        groups = either.get(pid, [])
        wrong = [sorted(g & have) for g in groups if len(g & have) != 1]
        extra = have - certain.get(pid, set()) - set().union(*groups)
        if missing or wrong or extra:
            problems.append(
                f"payment {pid}: notifications missing {sorted(missing)}, unexpected "
                f"{sorted(extra)}, refused steps told {wrong} (each must be told once)"
            )
    return problems
