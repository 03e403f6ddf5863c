"""Settlement: posts each validated payment, or fails it with a reason and posts nothing.

A posting for a payment from bank A's customer to bank B's customer::

    payer (A)               -(amount + fee)
    A fee income            +fee
    A settlement account    +amount      A owes the switch
    B settlement account    -amount      the switch owes B
    payee (B)               +amount

Within one bank the two settlement legs are left out. Every posting sums to
zero per currency; the settlement accounts give each bank's net position per
settlement window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from consumers.fees import check_no_vignette_fee, compute_fee
from engine.config import Settings
from engine.events import (
    PAYMENT_FAILED,
    PAYMENT_SETTLED,
    PAYMENT_VALIDATED,
    EventType,
    carried_fields,
    derived_event_id,
)
from engine.ledger.balances import fold, pending
from engine.ledger.models import Account, AccountKind, Payment, PaymentState
from engine.ledger.postings import Leg, PostingDraft
from engine.ledger.queries import select_in
from engine.ledger.recorder import Outcome, Transition
from engine.ledger.reference import FeeSchedule, internal_account, read_fee_schedule
from engine.ledger.states import IllegalTransitionError, check_transition
from engine.money import format_minor
from engine.pipeline.contract import Decision, Emit, Refusal, StageDefaults
from engine.pipeline.messages import Inbound
from engine.reasons import Reason

NAME = "settlement"


def settlement_window(occurred_at: datetime) -> str:
    """The interbank window a payment belongs to: its business day (UTC)."""
    return occurred_at.date().isoformat()


def build_legs(
    payer: str, payee: str, payer_bank: str, payee_bank: str, amount: int, fee: int, currency: str
) -> tuple[Leg, ...]:
    # The payer's debit is the one checked against its funds: applied in place.
    legs = [Leg(payer, -(amount + fee), currency, checked=True), Leg(payee, amount, currency)]
    if fee:
        legs.append(
            Leg(internal_account(payer_bank, AccountKind.FEE_INCOME, currency), fee, currency)
        )
    if payer_bank != payee_bank:
        legs.append(
            Leg(internal_account(payer_bank, AccountKind.SETTLEMENT, currency), amount, currency)
        )
        legs.append(
            Leg(internal_account(payee_bank, AccountKind.SETTLEMENT, currency), -amount, currency)
        )
    return tuple(legs)


@dataclass(slots=True)
class Funds:
    balance_minor: int
    overdraft_limit_minor: int | None  # None: no limit

    def can_pay(self, amount_minor: int) -> bool:
        if self.overdraft_limit_minor is None:
            return True
        return self.balance_minor + self.overdraft_limit_minor >= amount_minor


@dataclass
class SettlementContext:
    """The batch's payments' states and its accounts' funds, as each decision leaves them."""

    states: dict[str, str]
    funds: dict[str, Funds]
    fees: FeeSchedule

    def absorb(self, decision: Decision) -> None:
        for row in decision.writes:
            if isinstance(row, Outcome):
                self.states[row.payment_id] = row.state
            elif isinstance(row, PostingDraft):
                for leg in row.legs:
                    funds = self.funds.get(leg.account_number)
                    if funds is not None:
                        funds.balance_minor += leg.amount_minor


class Settlement(StageDefaults):
    """Stage: payments.validated -> payments.settled | payments.failed."""

    name = NAME

    def __init__(
        self,
        settings: Settings,
        fee_schedule: FeeSchedule | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self._fees = fee_schedule
        self._clock = clock
        self._next_fold = clock()

    def input_topics(self) -> list[str]:
        return [PAYMENT_VALIDATED.topic(self.settings)]

    def load(self, conn: Connection, batch: Sequence[Inbound]) -> SettlementContext:
        if self._fees is None:
            self._fees = read_fee_schedule(conn)
        p, a = Payment.__table__, Account.__table__
        ids = {i.record["payment_id"] for i in batch}
        states = {
            r.payment_id: r.state
            for r in select_in(conn, select(p.c.payment_id, p.c.state), p.c.payment_id, ids)
        }
        payers = {i.record["payer_account"] for i in batch}
        # Only payers are read: what they pay is checked against their funds. A payer's
        # debits all come from its own partition (events are keyed by payer account),
        # so no other instance debits it meanwhile; and should two instances decide the
        # same payments (a rebalance), the guarded outcome refuses the second's batch.
        # Payees are credited through the balance deltas (engine.ledger.balances).
        query = select(a.c.number, a.c.balance_minor, a.c.overdraft_limit_minor)
        rows = select_in(conn, query, a.c.number, payers)
        unfolded = pending(conn, payers)
        funds = {
            r.number: Funds(r.balance_minor + unfolded.get(r.number, 0), r.overdraft_limit_minor)
            for r in rows
        }
        return SettlementContext(states, funds, self._fees)

    def committed(self, engine: Engine) -> None:
        """Fold the balance deltas into the accounts, at most every fold interval."""
        if self._clock() < self._next_fold:
            return
        self._next_fold = self._clock() + self.settings.balance_fold_interval_ms / 1000
        with engine.begin() as conn:
            fold(conn, self.settings.balance_fold_max_rows)

    def decide(self, inbound: Inbound, ctx: SettlementContext) -> Decision | Refusal:
        p = inbound.record
        current = ctx.states.get(p["payment_id"])
        if current is None:
            return Refusal("unknown_payment", f"payment {p['payment_id']} is not in the ledger")
        amount, currency = p["amount_minor"], p["currency"]
        fee = compute_fee(
            ctx.fees, p["channel"], p["payment_type"], currency, amount, p.get("egov_service")
        )
        check_no_vignette_fee(p.get("egov_service"), fee)
        payer = ctx.funds[p["payer_account"]]
        settles = payer.can_pay(amount + fee)
        target = PaymentState.SETTLED if settles else PaymentState.FAILED
        try:
            check_transition(current, target)
        except IllegalTransitionError as exc:
            return Refusal("state_conflict", str(exc))
        if settles:
            return self._settled(inbound, fee)
        available = payer.balance_minor + (payer.overdraft_limit_minor or 0)
        message = (
            f"needs {format_minor(amount + fee, currency)} (fee included), "
            f"{format_minor(max(available, 0), currency)} available"
        )
        return _failed(p, Reason.AM04, message)

    def _settled(self, inbound: Inbound, fee: int) -> Decision:
        p = inbound.record
        legs = build_legs(
            p["payer_account"], p["payee_account"], p["payer_bank"], p["payee_bank"],
            p["amount_minor"], fee, p["currency"],
        )  # fmt: skip
        window = settlement_window(p["occurred_at"])
        posting_id = derived_event_id(p["event_id"], "Posting")
        draft = PostingDraft(posting_id, p["payment_id"], "PAYMENT", p["occurred_at"], window, legs)
        record = _carried(p, PAYMENT_SETTLED)
        record.update(fee_minor=fee, posting_id=posting_id, settlement_window=window)
        outcome = Outcome(
            p["payment_id"], PaymentState.VALIDATED, PaymentState.SETTLED, None, None, fee,
            posting_id, window,
        )  # fmt: skip
        return Decision(
            "settled", p["payment_id"],
            writes=(outcome, draft, _transition(p, PaymentState.SETTLED, None)),
            emits=(Emit(PAYMENT_SETTLED, record),), channel=p["channel"],
        )  # fmt: skip


def _failed(p: dict[str, Any], reason: Reason, message: str) -> Decision:
    record = _carried(p, PAYMENT_FAILED)
    record.update(reason_code=reason.value, reason_message=message)
    outcome = Outcome(
        p["payment_id"], PaymentState.VALIDATED, PaymentState.FAILED, reason.value, message,
        None, None, None,
    )  # fmt: skip
    return Decision(
        "failed", p["payment_id"],
        writes=(outcome, _transition(p, PaymentState.FAILED, reason.value)),
        emits=(Emit(PAYMENT_FAILED, record),), channel=p["channel"], reason=reason.value,
    )  # fmt: skip


def _carried(p: dict[str, Any], event: EventType) -> dict[str, Any]:
    record = {k: p[k] for k in carried_fields(PAYMENT_VALIDATED, event)}
    record["causation_event_id"] = p["event_id"]
    record["event_id"] = derived_event_id(p["event_id"], event.name)
    return record


def _transition(p: dict[str, Any], to_state: str, reason_code: str | None) -> Transition:
    return Transition(
        p["payment_id"], PaymentState.VALIDATED, to_state, reason_code, NAME, p["event_id"],
        p["occurred_at"],
    )  # fmt: skip
