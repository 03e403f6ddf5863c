"""Ledger invariants, checked from the database alone: the one auditor of them.

:func:`check_ledger` is double entry; :func:`check_lifecycle` the holds, captures,
refunds and available balances of the payment lifecycle. ``sakk audit verify`` runs
both, and so do the demo, the benchmark and the chaos harness; the harness adds only
what needs the wire or what its workload expected (tooling.chaos.invariants).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from engine.domain import steps as catalog
from engine.domain.notifications import NotificationStatus
from engine.domain.outcomes import StepOutcome
from engine.domain.steps import StepKind
from engine.events import SWITCH
from engine.ledger.balances import all_balances
from engine.ledger.dead_letters import resolved_dead_letter_ids
from engine.ledger.models import (
    Account,
    DeadLetter,
    Hold,
    LedgerEntry,
    Notification,
    Payment,
    PaymentStep,
    Posting,
)
from engine.ledger.states import LATER, TERMINAL


@dataclass
class LedgerCheck:
    """What was checked and every violation found (empty list: the ledger is sound)."""

    postings: int = 0
    entries: int = 0
    accounts: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def check_ledger(conn: Connection) -> LedgerCheck:
    """Double entry holds: postings balance on two legs or more, balances equal entries.

    Money is conserved too: all entries of a currency sum to zero.
    """
    check = LedgerCheck()
    e = LedgerEntry.__table__
    check.entries = conn.execute(select(func.count()).select_from(e)).scalar_one()
    check.postings = conn.execute(select(func.count()).select_from(Posting.__table__)).scalar_one()
    unbalanced = conn.execute(
        select(e.c.posting_id, e.c.currency, func.sum(e.c.amount_minor))
        .group_by(e.c.posting_id, e.c.currency)
        .having(func.sum(e.c.amount_minor) != 0)
        .limit(20)
    ).all()
    check.violations += [f"posting {p} sums to {s} {c}, not zero" for p, c, s in unbalanced]
    po = Posting.__table__
    hollow = conn.execute(
        select(po.c.posting_id, func.count(e.c.id))
        .join(e, e.c.posting_id == po.c.posting_id, isouter=True)
        .group_by(po.c.posting_id)
        .having(func.count(e.c.id) < 2)
        .limit(20)
    ).all()
    check.violations += [f"posting {p} has {n} entries, fewer than two" for p, n in hollow]
    for currency, total in conn.execute(
        select(e.c.currency, func.sum(e.c.amount_minor)).group_by(e.c.currency)
    ):
        if total != 0:
            check.violations.append(f"money not conserved in {currency}: entries sum to {total}")
    sums = dict(
        conn.execute(
            select(e.c.account_number, func.sum(e.c.amount_minor)).group_by(e.c.account_number)
        ).all()
    )
    accounts = all_balances(conn)  # the row plus the deltas not yet folded in
    check.accounts = len(accounts)
    for number, balance in accounts.items():
        expected = int(sums.get(number) or 0)
        if balance != expected:
            check.violations.append(
                f"account {number}: balance {balance} != sum of entries {expected}"
            )
    return check


@dataclass(frozen=True)
class FlowCounts:
    """What became of what the banks published: ``published = terminal + dead_lettered``.

    Each published message is counted once. A dead letter counts in ``dead_lettered``
    until it is redriven: once its redrive is PUBLISHED and the consumer that refused it
    has handled the copy, the copy's own result counts in its place (a payment's state,
    or, dead-lettered again, the new dead letter) and the first one moves to
    ``redriven``. A redrive's copy is not new input, so the copies on the topic are
    ``redriven`` more messages than the banks published.
    """

    payments: int
    settled: int
    rejected: int
    failed: int
    in_flight: int
    dead_lettered: int
    notifications_pending: int
    postings_for_payments: int
    settled_without_posting: int
    redriven: int = 0  # dead letters whose redriven copy reached a result (not in dead_lettered)
    later: int = 0  # answered, and now in a state of the lifecycle (authorized, refunded, ...)
    steps_applied: int = 0
    steps_refused: int = 0

    @property
    def terminal(self) -> int:
        """Payments that got their first answer, whatever their steps did since."""
        return self.settled + self.rejected + self.failed + self.later


def flow_counts(conn: Connection, dead_letter_consumer: str) -> FlowCounts:
    """The flow's counts; dead letters are those ``dead_letter_consumer`` recorded (the
    stage reading what banks send: the topology's entry)."""
    p = Payment.__table__
    states: dict[str, int] = dict(
        conn.execute(select(p.c.state, func.count()).group_by(p.c.state)).all()
    )
    recorded = conn.execute(
        select(func.count())
        .select_from(DeadLetter.__table__)
        .where(DeadLetter.__table__.c.consumer == dead_letter_consumer)
    ).scalar_one()
    redriven = len(resolved_dead_letter_ids(conn, dead_letter_consumer))
    n = Notification.__table__
    pending = conn.execute(
        select(func.count()).select_from(n).where(n.c.status == NotificationStatus.PENDING)
    ).scalar_one()
    postings = conn.execute(
        select(func.count())
        .select_from(Posting.__table__)
        .where(Posting.__table__.c.kind == "PAYMENT")
    ).scalar_one()
    st = PaymentStep.__table__
    steps: dict[str, int] = dict(
        conn.execute(select(st.c.outcome, func.count()).group_by(st.c.outcome)).all()
    )
    settled_without = conn.execute(
        select(func.count()).select_from(p).where(p.c.state == "SETTLED", p.c.posting_id.is_(None))
    ).scalar_one()
    return FlowCounts(
        payments=sum(states.values()),
        settled=states.get("SETTLED", 0),
        rejected=states.get("REJECTED", 0),
        failed=states.get("FAILED", 0),
        in_flight=states.get("VALIDATED", 0),
        dead_lettered=recorded - redriven,
        notifications_pending=pending,
        postings_for_payments=postings,
        settled_without_posting=settled_without,
        redriven=redriven,
        later=sum(states.get(state, 0) for state in LATER),
        steps_applied=steps.get(StepOutcome.APPLIED, 0),
        steps_refused=steps.get(StepOutcome.REFUSED, 0),
    )


def expected_notifications(conn: Connection) -> tuple[int, int]:
    """(notifications expected for answered payments and their steps, notifications finished).

    A payment's first answer goes to its payer's bank, and to its payee's bank too when
    money reached it (settled) or was held for it (authorized). A step that took effect
    goes to both banks; a refused step to the bank that asked (none for the switch's own).
    """
    p, n, st = Payment.__table__, Notification.__table__, PaymentStep.__table__
    interbank = p.c.payer_bank != p.c.payee_bank
    answered = conn.execute(
        select(func.count()).select_from(p).where(p.c.state.in_(TERMINAL + LATER))
    ).scalar_one()
    reached_payee = p.c.state.in_(("SETTLED", "REFUNDED", "RETURNED")) | (
        (p.c.intent == "AUTHORIZATION") & p.c.state.in_(LATER)
    )
    to_payees = conn.execute(
        select(func.count()).select_from(p).where(interbank, reached_payee)
    ).scalar_one()
    applied = st.c.outcome == StepOutcome.APPLIED
    steps = conn.execute(
        select(func.count()).select_from(st).where(applied | (st.c.sender_bank != SWITCH))
    ).scalar_one()
    steps_to_both = conn.execute(
        select(func.count())
        .select_from(st.join(p, p.c.payment_id == st.c.payment_id))
        .where(applied, interbank)
    ).scalar_one()
    finished = conn.execute(
        select(func.count()).select_from(n).where(n.c.status != NotificationStatus.PENDING)
    ).scalar_one()
    return answered + to_payees + steps + steps_to_both, finished


# -- the lifecycle ---------------------------------------------------------------------------

HOLD_STEPS = catalog.HOLD_STEPS
RELEASES = tuple(k for k in HOLD_STEPS if k not in catalog.MONEY_STEPS)  # always resolve the hold
MONEY_BACK = catalog.MONEY_BACK
STEP_POSTINGS = catalog.STEP_POSTING_KINDS
# A hold's state -> the payment states it allows (engine.ledger.states).
PAYMENT_OF_HOLD = {
    "ACTIVE": ("AUTHORIZED",),
    "CAPTURED": ("CAPTURED", "REFUNDED"),
    "VOIDED": ("VOIDED",),
    "EXPIRED": ("EXPIRED",),
}
SETTLED_SALE = ("SETTLED", "REFUNDED", "RETURNED")  # a one-step payment that was posted
MAX_LIFECYCLE_VIOLATIONS = 1_000  # listed; the count goes on


@dataclass
class LifecycleCheck:
    """The lifecycle's invariants: what was checked and every violation found."""

    holds: int = 0
    steps: int = 0
    payments: int = 0
    accounts_walked: int = 0
    entries_walked: int = 0
    violations: list[str] = field(default_factory=list)
    more: int = 0  # violations found beyond the first MAX_LIFECYCLE_VIOLATIONS

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, violation: str) -> None:
        if len(self.violations) < MAX_LIFECYCLE_VIOLATIONS:
            self.violations.append(violation)
        else:
            self.more += 1


@dataclass(frozen=True, slots=True)
class _Step:
    step_id: str
    kind: str
    amount_minor: int
    posting_id: str | None


def check_lifecycle(conn: Connection) -> LifecycleCheck:
    """Holds, captures, refunds and available balances, as issue 12 requires them.

    - no hold is resolved twice: one resolving step per hold, the one ``resolved_by``
      names, and the hold's state is the one that step leads to;
    - captures never exceed the hold: the applied CAPTURE steps sum to at most its
      amount, and to ``holds.captured_minor`` and ``payments.captured_minor``;
    - refunds never exceed captures: the applied REFUND and RETURN steps sum to
      ``payments.refunded_minor``, at most ``payments.captured_minor``;
    - every applied step's posting is there, of its kind and payment, moving the
      step's amount to its receiver; every step posting has its applied step; a step
      that moves no money (refused, a void, an expiry) names no posting;
    - a hold is for its authorization's amount;
    - no available balance goes below minus the overdraft (see
      :func:`check_available_balances`).

    Read from the database alone, so an altered row is found whoever altered it.
    """
    check = LifecycleCheck()
    payments = _lifecycle_payments(conn)
    steps = _applied_steps(conn)
    check.payments, check.steps = len(payments), sum(len(s) for s in steps.values())
    holds = _holds(conn)
    check.holds = len(holds)
    for payment_id, hold in holds.items():
        _check_hold(check, payment_id, hold, payments.get(payment_id), steps.get(payment_id, []))
    for payment_id, payment in payments.items():
        _check_payment(check, payment_id, payment, payment_id in holds, steps.get(payment_id, []))
    for payment_id in sorted(set(steps) - set(payments)):
        check.add(f"payment {payment_id}: applied steps, but it is missing or was never answered")
    _check_step_postings(conn, check, payments, steps)
    check_available_balances(conn, check)
    return check


def _lifecycle_payments(conn: Connection) -> dict[str, Any]:
    p = Payment.__table__
    query = select(
        p.c.payment_id, p.c.state, p.c.intent, p.c.amount_minor, p.c.captured_minor,
        p.c.refunded_minor, p.c.payer_account, p.c.payee_account,
    ).where(p.c.state.not_in(("VALIDATED", "REJECTED", "FAILED")))  # fmt: skip
    return {r.payment_id: r for r in conn.execute(query)}


def _applied_steps(conn: Connection) -> dict[str, list[_Step]]:
    st = PaymentStep.__table__
    found: dict[str, list[_Step]] = defaultdict(list)
    query = select(
        st.c.payment_id, st.c.step_id, st.c.kind, st.c.amount_minor, st.c.posting_id
    ).where(st.c.outcome == StepOutcome.APPLIED)
    for r in conn.execute(query):
        found[r.payment_id].append(_Step(r.step_id, r.kind, int(r.amount_minor or 0), r.posting_id))
    return found


def _holds(conn: Connection) -> dict[str, Any]:
    h = Hold.__table__
    return {r.payment_id: r for r in conn.execute(select(h))}


def _check_hold(
    check: LifecycleCheck, payment_id: str, hold: Any, payment: Any, steps: list[_Step]
) -> None:
    """One resolution at most, its state from it, captures within it and on both rows."""
    where = f"hold of payment {payment_id}"
    by_id = {s.step_id: s for s in steps if s.kind in HOLD_STEPS}
    releases = {s.step_id for s in steps if s.kind in RELEASES}
    resolving = releases | ({hold.resolved_by} if hold.resolved_by else set())
    if len(resolving) > 1:
        check.add(f"{where} resolved {len(resolving)} times (steps {', '.join(sorted(resolving))})")
    if hold.state == "ACTIVE":
        if resolving:
            check.add(f"{where} is ACTIVE yet resolved by step {', '.join(sorted(resolving))}")
    elif hold.resolved_by not in by_id:
        check.add(f"{where} is {hold.state} but names no applied step of it as its resolution")
    else:
        expected = _resolved_state(by_id[hold.resolved_by].kind, int(hold.captured_minor))
        if hold.state != expected:
            check.add(f"{where} is {hold.state}; its resolving step leads to {expected}")
        if hold.reserved_minor:
            check.add(f"{where} is resolved yet reserves {hold.reserved_minor}")
    if payment is not None and hold.amount_minor != payment.amount_minor:
        check.add(f"{where} is {hold.amount_minor}, the payment {payment.amount_minor}")
    captured = sum(s.amount_minor for s in steps if s.kind == StepKind.CAPTURE)
    if captured > hold.amount_minor:
        check.add(f"{where}: captures sum to {captured}, above the hold's {hold.amount_minor}")
    if captured != hold.captured_minor:
        check.add(f"{where}: captures sum to {captured}, the hold says {hold.captured_minor}")
    if payment is None:
        check.add(f"{where}: the payment is missing or was never answered")
        return
    if payment.intent != "AUTHORIZATION":
        check.add(f"{where}: the payment is a {payment.intent}, not an authorization")
    if captured != (payment.captured_minor or 0):
        check.add(f"{where}: captures sum to {captured}, the payment says {payment.captured_minor}")
    if payment.state not in PAYMENT_OF_HOLD.get(hold.state, ()):
        check.add(f"{where} is {hold.state} but the payment is {payment.state}")


def _resolved_state(kind: str, captured: int) -> str:
    """The state a hold is left in by the step that resolved it."""
    spec = catalog.STEPS[StepKind(kind)]
    if spec.money is catalog.Money.TO_PAYEE or captured > 0:
        return "CAPTURED"  # a void or an expiry after partial captures: they stand
    return spec.target  # a hold released: VOIDED or EXPIRED, as its payment


def _check_payment(
    check: LifecycleCheck, payment_id: str, payment: Any, has_hold: bool, steps: list[_Step]
) -> None:
    """Refunds within captures; a settled sale captured whole; an authorization held."""
    where = f"payment {payment_id}"
    captured = payment.captured_minor or 0
    back = sum(s.amount_minor for s in steps if s.kind in MONEY_BACK)
    if back != payment.refunded_minor:
        check.add(f"{where}: refunds and returns sum to {back}, it says {payment.refunded_minor}")
    if payment.refunded_minor > captured:
        check.add(f"{where}: {payment.refunded_minor} refunded, above the {captured} captured")
    if payment.state in ("REFUNDED", "RETURNED") and payment.refunded_minor != captured:
        check.add(f"{where} is {payment.state} with {payment.refunded_minor} of {captured} back")
    if payment.intent == "AUTHORIZATION":
        if not has_hold:
            check.add(f"{where} is an authorization {payment.state} without a hold")
    else:
        if payment.state in SETTLED_SALE and captured != payment.amount_minor:
            check.add(f"{where}: settled for {payment.amount_minor}, captured_minor {captured}")
        if any(s.kind in HOLD_STEPS for s in steps):
            check.add(f"{where}: a hold step applied to a payment that holds nothing")


def _check_step_postings(
    conn: Connection, check: LifecycleCheck, payments: dict[str, Any], steps: dict[str, list[_Step]]
) -> None:
    """Each applied money step and its posting point at each other, for the step's amount."""
    po, e = Posting.__table__, LedgerEntry.__table__
    postings = {
        r.posting_id: r
        for r in conn.execute(
            select(po.c.posting_id, po.c.payment_id, po.c.kind).where(po.c.kind.in_(STEP_POSTINGS))
        )
    }
    received: dict[tuple[str, str], int] = defaultdict(int)
    for r in conn.execute(
        select(e.c.posting_id, e.c.account_number, e.c.amount_minor)
        .join(po, po.c.posting_id == e.c.posting_id)
        .where(po.c.kind.in_(STEP_POSTINGS))
    ):
        received[(r.posting_id, r.account_number)] += int(r.amount_minor)
    claimed: set[str] = set()
    for payment_id, applied in steps.items():
        payment = payments.get(payment_id)
        for s in applied:
            if s.kind not in STEP_POSTINGS:
                continue
            posting = postings.get(s.posting_id or "")
            where = f"{s.kind} step {s.step_id} of payment {payment_id}"
            if posting is None:
                what = f"its posting {s.posting_id} is missing" if s.posting_id else "no posting"
                check.add(f"{where}: {what}")
                continue
            claimed.add(posting.posting_id)
            if (posting.payment_id, posting.kind) != (payment_id, s.kind):
                check.add(f"{where}: its posting is a {posting.kind} of {posting.payment_id}")
            if payment is None:
                continue
            to_payee = catalog.STEPS[StepKind(s.kind)].money is catalog.Money.TO_PAYEE
            receiver = payment.payee_account if to_payee else payment.payer_account
            got = received.get((posting.posting_id, receiver), 0)
            if got != s.amount_minor:
                check.add(f"{where}: its posting gives the receiver {got}, not {s.amount_minor}")
    for posting_id in sorted(set(postings) - claimed):
        p = postings[posting_id]
        check.add(f"{p.kind} posting {posting_id} of payment {p.payment_id}: no applied step")
    _check_steps_that_post_nothing(conn, check)


def _check_steps_that_post_nothing(conn: Connection, check: LifecycleCheck) -> None:
    """A refused step, a void and an expiry move no money: none names a posting."""
    st = PaymentStep.__table__
    posts = (st.c.outcome == "APPLIED") & st.c.kind.in_(STEP_POSTINGS)
    query = select(st.c.step_id, st.c.payment_id, st.c.kind, st.c.outcome, st.c.posting_id)
    for r in conn.execute(query.where(st.c.posting_id.is_not(None), ~posts)):
        check.add(
            f"{r.outcome.lower()} {r.kind} step {r.step_id} of payment {r.payment_id} "
            f"names posting {r.posting_id}, yet posts nothing"
        )


def check_available_balances(conn: Connection, check: LifecycleCheck) -> None:
    """No available balance below minus the overdraft, at the end and along the way.

    For every account with a limit (``overdraft_limit_minor`` not NULL; accounts without
    one may go negative by design):

    - now: balance + overdraft - what its ACTIVE holds reserve >= 0;
    - ever: its entries summed in the order they were written (``ledger_entries.id``,
      which follows ``chain_seq`` within each chain; an account's credits come on other
      payers' chains) never leave it below -overdraft. The walk sees balances, not
      holds: a hold's history is not kept entry by entry. The limit is today's.
    """
    a, h = Account.__table__, Hold.__table__
    limits = {
        r.number: int(r.overdraft_limit_minor)
        for r in conn.execute(
            select(a.c.number, a.c.overdraft_limit_minor).where(
                a.c.overdraft_limit_minor.is_not(None)
            )
        )
    }
    held: dict[str, int] = dict(
        conn.execute(
            select(h.c.account_number, func.sum(h.c.reserved_minor))
            .where(h.c.state == "ACTIVE")
            .group_by(h.c.account_number)
        ).all()
    )
    balances = all_balances(conn)
    for number, limit in sorted(limits.items()):
        available = balances.get(number, 0) + limit - int(held.get(number) or 0)
        if available < 0:
            check.add(
                f"account {number}: available balance {available} (balance "
                f"{balances.get(number, 0)}, overdraft {limit}, held {held.get(number) or 0})"
            )
    _walk_running_balances(conn, check, limits)


def _walk_running_balances(conn: Connection, check: LifecycleCheck, limits: dict[str, int]) -> None:
    e, a = LedgerEntry.__table__, Account.__table__
    query = (
        select(e.c.id, e.c.account_number, e.c.amount_minor, e.c.posting_id)
        .join(a, a.c.number == e.c.account_number)
        .where(a.c.overdraft_limit_minor.is_not(None))
        .order_by(e.c.account_number, e.c.id)
    )
    running: dict[str, int] = defaultdict(int)
    lowest_reported: set[str] = set()
    for r in conn.execute(query.execution_options(yield_per=10_000)):
        limit = limits.get(r.account_number)
        if limit is None:
            continue
        check.entries_walked += 1
        running[r.account_number] += int(r.amount_minor)
        if running[r.account_number] < -limit and r.account_number not in lowest_reported:
            lowest_reported.add(r.account_number)  # its first fall is the one worth naming
            check.add(
                f"account {r.account_number}: balance {running[r.account_number]} after entry "
                f"{r.id} (posting {r.posting_id}), below its overdraft -{limit}"
            )
    check.accounts_walked = len(running)
