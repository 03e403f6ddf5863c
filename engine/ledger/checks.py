"""Ledger invariants, checked from the database alone (demo, chaos harness, auditors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from engine.events import SWITCH
from engine.ledger.balances import all_balances
from engine.ledger.dead_letters import resolved_dead_letter_ids
from engine.ledger.models import (
    DeadLetter,
    LedgerEntry,
    Notification,
    Payment,
    PaymentStep,
    Posting,
)

TERMINAL = ("SETTLED", "REJECTED", "FAILED")
# States a payment reaches after its first answer (engine.ledger.states): it was answered.
LATER = ("AUTHORIZED", "CAPTURED", "VOIDED", "EXPIRED", "REFUNDED", "RETURNED")


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


def flow_counts(conn: Connection, dead_letter_consumer: str = "validator") -> FlowCounts:
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
        select(func.count()).select_from(n).where(n.c.status == "PENDING")
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
        steps_applied=steps.get("APPLIED", 0),
        steps_refused=steps.get("REFUSED", 0),
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
    applied = st.c.outcome == "APPLIED"
    steps = conn.execute(
        select(func.count()).select_from(st).where(applied | (st.c.sender_bank != SWITCH))
    ).scalar_one()
    steps_to_both = conn.execute(
        select(func.count())
        .select_from(st.join(p, p.c.payment_id == st.c.payment_id))
        .where(applied, interbank)
    ).scalar_one()
    finished = conn.execute(
        select(func.count()).select_from(n).where(n.c.status != "PENDING")
    ).scalar_one()
    return answered + to_payees + steps + steps_to_both, finished
