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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from consumers.fees import check_no_vignette_fee, compute_fee
from engine.config import Settings
from engine.ledger.models import (
    Account,
    AccountKind,
    Payment,
    PaymentState,
    PaymentTransition,
    table_of,
)
from engine.ledger.postings import Leg, PostingDraft, write_postings
from engine.ledger.reference import FeeSchedule, internal_account, read_fee_schedule
from engine.ledger.states import IllegalTransitionError, check_transition
from engine.money import format_minor
from engine.reasons import Reason
from engine.runtime import DeadLetterReason, EndsWithTransaction, Handled, Inbound, derived_event_id

NAME = "settlement"
IN_CHUNK = 500


def settlement_window(occurred_at: datetime) -> str:
    """The interbank window a payment belongs to: its business day (UTC)."""
    return occurred_at.date().isoformat()


def build_legs(
    payer: str, payee: str, payer_bank: str, payee_bank: str, amount: int, fee: int, currency: str
) -> tuple[Leg, ...]:
    legs = [Leg(payer, -(amount + fee), currency), Leg(payee, amount, currency)]
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
class _Funds:
    balance_minor: int
    overdraft_limit_minor: int | None  # None: no limit

    def can_pay(self, amount_minor: int) -> bool:
        if self.overdraft_limit_minor is None:
            return True
        return self.balance_minor + self.overdraft_limit_minor >= amount_minor


class Settlement(EndsWithTransaction):
    """Stage: payments.validated -> payments.settled | payments.failed."""

    name = NAME

    def __init__(self, settings: Settings, fee_schedule: FeeSchedule | None = None):
        self.settings = settings
        self._fees = fee_schedule

    def input_topics(self) -> list[str]:
        return [self.settings.topic("validated")]

    def process(self, conn: Connection, batch: Sequence[Inbound]) -> list[Handled]:
        if self._fees is None:
            self._fees = read_fee_schedule(conn)
        states = self._payment_states(conn, [i.record["payment_id"] for i in batch])
        funds = self._lock_funds(
            conn,
            {i.record["payer_account"] for i in batch} | {i.record["payee_account"] for i in batch},
        )
        drafts: list[PostingDraft] = []
        updates: list[dict[str, Any]] = []
        transitions: list[dict[str, Any]] = []
        decisions: list[Handled] = []
        for inbound in batch:
            p = inbound.record
            current = states.get(p["payment_id"])
            if current is None:
                raise DeadLetterReason(
                    "unknown_payment", f"payment {p['payment_id']} is not in the ledger"
                )
            decision, draft = self._decide(p, funds)
            target = PaymentState.SETTLED if draft else PaymentState.FAILED
            try:
                check_transition(current, target)
            except IllegalTransitionError as exc:
                raise DeadLetterReason("state_conflict", str(exc)) from exc
            states[p["payment_id"]] = target
            if draft is not None:
                drafts.append(draft)
            updates.append(_payment_update(p, decision, draft))
            transitions.append(_transition(p, decision))
            decisions.append(decision)
        write_postings(conn, drafts)
        table = table_of(Payment)
        conn.execute(
            update(table)
            .where(table.c.payment_id == bindparam("pid"))
            .values(
                state=bindparam("state"),
                reason_code=bindparam("reason_code"),
                reason_message=bindparam("reason_message"),
                fee_minor=bindparam("fee_minor"),
                posting_id=bindparam("posting_id"),
                settlement_window=bindparam("settlement_window"),
            ),
            updates,
        )
        conn.execute(insert(PaymentTransition), transitions)
        return decisions

    def _decide(
        self, p: dict[str, Any], funds: dict[str, _Funds]
    ) -> tuple[Handled, PostingDraft | None]:
        amount, currency = p["amount_minor"], p["currency"]
        fee = compute_fee(
            self._fees or FeeSchedule(),
            p["channel"],
            p["payment_type"],
            currency,
            amount,
            p.get("egov_service"),
        )
        check_no_vignette_fee(p.get("egov_service"), fee)
        payer = funds[p["payer_account"]]
        event = {
            k: p[k]
            for k in (
                "payment_id",
                "bank_reference",
                "occurred_at",
                "payer_bank",
                "payer_account",
                "payee_bank",
                "payee_account",
                "amount_minor",
                "currency",
                "channel",
            )
        }
        event["causation_event_id"] = p["event_id"]
        if not payer.can_pay(amount + fee):
            available = payer.balance_minor + (payer.overdraft_limit_minor or 0)
            message = (
                f"needs {format_minor(amount + fee, currency)} (fee included), "
                f"{format_minor(max(available, 0), currency)} available"
            )
            event.update(
                reason_code=Reason.AM04.value,
                reason_message=message,
                event_id=derived_event_id(p["event_id"], "PaymentFailed"),
            )
            return Handled(
                "failed",
                p["payment_id"],
                [("PaymentFailed", event)],
                p["channel"],
                Reason.AM04.value,
            ), None
        legs = build_legs(
            p["payer_account"],
            p["payee_account"],
            p["payer_bank"],
            p["payee_bank"],
            amount,
            fee,
            currency,
        )
        for leg in legs:
            if leg.account_number in funds:
                funds[leg.account_number].balance_minor += leg.amount_minor
        window = settlement_window(p["occurred_at"])
        posting_id = derived_event_id(p["event_id"], "Posting")
        draft = PostingDraft(posting_id, p["payment_id"], "PAYMENT", p["occurred_at"], window, legs)
        event.update(
            fee_minor=fee,
            posting_id=posting_id,
            settlement_window=window,
            event_id=derived_event_id(p["event_id"], "PaymentSettled"),
        )
        return Handled("settled", p["payment_id"], [("PaymentSettled", event)], p["channel"]), draft

    def _payment_states(self, conn: Connection, payment_ids: list[str]) -> dict[str, str]:
        table = Payment.__table__
        states: dict[str, str] = {}
        for start in range(0, len(payment_ids), IN_CHUNK):
            chunk = payment_ids[start : start + IN_CHUNK]
            rows = conn.execute(
                select(table.c.payment_id, table.c.state).where(table.c.payment_id.in_(chunk))
            )
            states.update({r.payment_id: r.state for r in rows})
        return states

    def _lock_funds(self, conn: Connection, numbers: set[str]) -> dict[str, _Funds]:
        """Balances of the batch's accounts, row-locked on PostgreSQL in a stable order."""
        table = Account.__table__
        ordered = sorted(numbers)
        funds: dict[str, _Funds] = {}
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start : start + IN_CHUNK]
            rows = conn.execute(
                select(table.c.number, table.c.balance_minor, table.c.overdraft_limit_minor)
                .where(table.c.number.in_(chunk))
                .order_by(table.c.number)
                .with_for_update()
            )
            funds.update({r.number: _Funds(r.balance_minor, r.overdraft_limit_minor) for r in rows})
        return funds


def _payment_update(
    p: dict[str, Any], decision: Handled, draft: PostingDraft | None
) -> dict[str, Any]:
    event = decision.events[0][1]
    return {
        "pid": p["payment_id"],
        "state": PaymentState.SETTLED if draft else PaymentState.FAILED,
        "reason_code": event.get("reason_code"),
        "reason_message": event.get("reason_message"),
        "fee_minor": event.get("fee_minor"),
        "posting_id": draft.posting_id if draft else None,
        "settlement_window": draft.settlement_window if draft else None,
    }


def _transition(p: dict[str, Any], decision: Handled) -> dict[str, Any]:
    return {
        "payment_id": p["payment_id"], "from_state": PaymentState.VALIDATED,
        "to_state": PaymentState.SETTLED if decision.outcome == "settled" else PaymentState.FAILED,
        "reason_code": decision.reason or None, "consumer": NAME, "event_id": p["event_id"],
        "occurred_at": p["occurred_at"],
    }  # fmt: skip
