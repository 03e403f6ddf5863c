"""Settlement: posts each validated payment, or fails it with a reason and posts nothing.

A one-step payment (SALE) is posted at once (the legs: :mod:`consumers.legs`). An
authorization places a hold instead, and the steps that follow it (captures, voids,
expiries, refunds, returns) come on the same topic, behind the payment on its payer's
partition; their rules are :mod:`consumers.lifecycle`. Every funds check uses the
available balance: balance + overdraft - what the account's active holds reserve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from consumers.fees import check_no_vignette_fee, compute_fee
from consumers.legs import build_legs, settlement_window
from consumers.lifecycle import (
    Funds,
    HoldView,
    PaymentView,
    StepRules,
    completed_record,
    hold_expiry,
)
from consumers.liquidity import LIQUIDITY, liquidity_decision
from consumers.positions import BankBook, interbank
from engine.config import Settings
from engine.domain import STEPS
from engine.domain.outcomes import Outcome as DecisionOutcome
from engine.domain.steps import PAYMENT_POSTING
from engine.events import (
    FUNDS_IN,
    PAYMENT_FAILED,
    PAYMENT_SETTLED,
    PAYMENT_STEP_COMPLETED,
    PAYMENT_STEP_VALIDATED,
    PAYMENT_VALIDATED,
    EventType,
    carried_fields,
    derived_event_id,
)
from engine.ids import own_part
from engine.ledger.balances import fold, pending
from engine.ledger.models import (
    Account,
    Hold,
    HoldState,
    Payment,
    PaymentIntent,
    PaymentIso,
    PaymentState,
    StepKind,
    table_of,
)
from engine.ledger.positions import AlertTo, PositionMoved
from engine.ledger.postings import PostingDraft
from engine.ledger.queries import select_in
from engine.ledger.recorder import (
    HoldChanged,
    HoldPlaced,
    Outcome,
    PaymentProgress,
    Transition,
)
from engine.ledger.reference import FeeSchedule, Limits
from engine.ledger.reference_versions import (
    ReferenceBook,
    ReferenceRefresher,
    latest_occurred_at,
)
from engine.ledger.states import IllegalTransitionError, check_transition
from engine.money import format_minor
from engine.pipeline.contract import Decision, Emit, Refusal, StageDefaults
from engine.pipeline.messages import Inbound
from engine.reasons import Reason
from engine.risk.limits import Refused
from engine.times import as_utc

NAME = "settlement"
STEP_EVENTS = frozenset({PAYMENT_STEP_VALIDATED.name})
__all__ = ["Settlement", "build_legs", "settlement_window"]  # the legs live in consumers.legs


@dataclass
class SettlementContext:
    """The batch's payments, holds and accounts' funds, as each decision leaves them."""

    states: dict[str, str]
    funds: dict[str, Funds]
    fees: FeeSchedule
    limits: Limits = field(default_factory=Limits)
    payments: dict[str, PaymentView] = field(default_factory=dict)  # those steps name
    holds: dict[str, HoldView] = field(default_factory=dict)
    reference: ReferenceBook | None = None  # fees and limits by event time, when they change
    banks: BankBook = field(default_factory=BankBook)  # the interbank limits (positions)

    def fees_at(self, moment: datetime) -> FeeSchedule:
        return self.fees if self.reference is None else self.reference.fees_at(moment)

    def limits_at(self, moment: datetime) -> Limits:
        return self.limits if self.reference is None else self.reference.limits_at(moment)

    def absorb(self, decision: Decision) -> None:
        for row in decision.writes:
            if isinstance(row, PositionMoved):
                self.banks.absorb(row)
            elif isinstance(row, Outcome):
                self.states[row.payment_id] = row.state
                view = self.payments.get(row.payment_id)  # a step later in the batch names it
                if view is not None:
                    view.state, view.captured_minor = row.state, row.captured_minor or 0
                    view.fee_minor = row.fee_minor or 0
            elif isinstance(row, PostingDraft):
                for leg in row.legs:
                    funds = self.funds.get(leg.account_number)
                    if funds is not None:
                        funds.balance_minor += leg.amount_minor
            elif isinstance(row, HoldPlaced):
                self.funds[row.account_number].held_minor += row.reserved_minor
                self.holds[row.payment_id] = HoldView(
                    row.payment_id, row.state, row.amount_minor, row.fee_minor,
                    row.reserved_minor, row.captured_minor, row.expires_at,
                )  # fmt: skip
            elif isinstance(row, HoldChanged):
                hold = self.holds[row.payment_id]
                payer = self.funds[self.payments[row.payment_id].payer_account]
                payer.held_minor += row.reserved_minor - hold.reserved_minor
                hold.state, hold.reserved_minor = row.state, row.reserved_minor
                hold.captured_minor = row.captured_minor
            elif isinstance(row, PaymentProgress):
                payment = self.payments[row.payment_id]
                payment.state, payment.refunded_minor = row.state, row.refunded_minor
                payment.captured_minor = row.captured_minor or 0
                payment.fee_minor = row.fee_minor or 0
                self.states[row.payment_id] = row.state


class Settlement(StageDefaults):
    """Stage: payments.validated -> payments.settled | failed | steps | steps-refused."""

    name = NAME

    def __init__(
        self,
        settings: Settings,
        fee_schedule: FeeSchedule | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: Limits | None = None,
    ):
        self.settings = settings
        self._fixed = (
            None
            if fee_schedule is None and limits is None
            else ReferenceBook.fixed(fee_schedule or FeeSchedule(), limits or Limits())
        )
        self._reference = ReferenceRefresher(
            settings.reference_refresh_ms / 1000, settings.reference_notice_s
        )
        self._clock = clock
        self._next_fold = clock()
        self._alert_to = AlertTo(settings.notify_sender, settings.notify_horizon_s)

    def input_topics(self) -> list[str]:
        return [PAYMENT_VALIDATED.topic(self.settings), FUNDS_IN.topic(self.settings)]

    def load(self, conn: Connection, batch: Sequence[Inbound]) -> SettlementContext:
        book = self._fixed or self._reference.current(
            conn, latest_occurred_at(i.record for i in batch)
        )
        p = table_of(Payment)
        ids = {i.record["payment_id"] for i in batch if i.event_type not in LIQUIDITY}
        states = {
            r.payment_id: r.state
            for r in select_in(conn, select(p.c.payment_id, p.c.state), p.c.payment_id, ids)
        }
        named = {i.record["payment_id"] for i in batch if i.event_type in STEP_EVENTS}
        stepped = named | {own_part(n) for n in named}  # and those from before namespaces
        payments = _payment_views(conn, stepped)
        # Payers are read: what they pay is checked against their funds. A payer's debits
        # all come from its own partition (events are keyed by payer account), so no other
        # instance debits it meanwhile; and should two instances decide the same payments
        # (a rebalance), the guarded outcome refuses the second's batch. A refund or a
        # return debits the payee, read too. Every other credit goes through the balance
        # deltas (engine.ledger.balances).
        paying = {i.record["payer_account"] for i in batch if "payer_account" in i.record} | {
            v.payee_account for v in payments.values()
        }
        banks = BankBook.load(conn, _bank_keys(batch, payments.values()), self._alert_to)
        return SettlementContext(
            states, _funds(conn, paying), book.fees[0], book.limits[0], payments,
            _hold_views(conn, stepped), book, banks,
        )  # fmt: skip

    def committed(self, engine: Engine) -> None:
        """Fold the balance deltas into the accounts, at most every fold interval."""
        if self._clock() < self._next_fold:
            return
        self._next_fold = self._clock() + self.settings.balance_fold_interval_ms / 1000
        with engine.begin() as conn:
            fold(conn, self.settings.balance_fold_max_rows)

    def decide(self, inbound: Inbound, ctx: SettlementContext) -> Decision | Refusal:
        if inbound.event_type in LIQUIDITY:
            return liquidity_decision(inbound, ctx.banks)
        if inbound.event_type == PAYMENT_STEP_VALIDATED.name:
            p = inbound.record
            rules = StepRules(
                ctx.fees_at(p["occurred_at"]), chain=inbound.partition, banks=ctx.banks
            )
            payment = _named_payment(ctx.payments, p["payment_id"])
            hold = ctx.holds.get(payment.payment_id) if payment is not None else None
            return rules.decide(p, payment, hold, ctx.funds)
        if inbound.event_type != PAYMENT_VALIDATED.name:
            return Refusal("unexpected_event", f"{inbound.event_type} on {inbound.topic}")
        p = inbound.record
        current = ctx.states.get(p["payment_id"])
        if current is None:
            return Refusal("unknown_payment", f"payment {p['payment_id']} is not in the ledger")
        amount, currency = p["amount_minor"], p["currency"]
        fees = ctx.fees_at(p["occurred_at"])
        fee = compute_fee(
            fees, p["channel"], p["payment_type"], currency, amount, p.get("egov_service")
        )
        check_no_vignette_fee(p.get("egov_service"), fee)
        payer = ctx.funds[p["payer_account"]]
        settles = payer.can_pay(amount + fee)
        authorizing = p.get("intent") == PaymentIntent.AUTHORIZATION
        target = (
            PaymentState.FAILED
            if not settles
            else PaymentState.AUTHORIZED
            if authorizing
            else PaymentState.SETTLED
        )
        try:
            check_transition(current, target)
        except IllegalTransitionError as exc:
            return Refusal("state_conflict", str(exc))
        if not settles:
            message = (
                f"needs {format_minor(amount + fee, currency)} (fee included), "
                f"{format_minor(max(payer.available_minor or 0, 0), currency)} available"
            )
            return _failed(p, Reason.AM04, message)
        beyond = _beyond_limits(p, ctx.banks)
        if beyond is not None:
            return _failed(p, Reason(beyond.reason_code), beyond.message)
        if authorizing:
            limits = ctx.limits_at(p["occurred_at"])
            life = hold_expiry(limits, p["channel"], currency, self.settings.hold_expiry_s)
            return _authorized(p, fee, p["occurred_at"] + life, ctx.banks)
        return self._settled(inbound, fee, ctx.banks)

    def _settled(self, inbound: Inbound, fee: int, banks: BankBook) -> Decision:
        p = inbound.record
        legs = build_legs(
            p["payer_account"], p["payee_account"], p["payer_bank"], p["payee_bank"],
            p["amount_minor"], fee, p["currency"],
        )  # fmt: skip
        window = settlement_window(p["occurred_at"])
        posting_id = derived_event_id(p["event_id"], "Posting")
        # One hash chain per partition: a payer's postings stay in order on one chain, and
        # settlement instances (each with its partitions) never wait on each other's head.
        draft = PostingDraft(
            posting_id, p["payment_id"], PAYMENT_POSTING, p["occurred_at"], window, legs,
            chain=inbound.partition,
        )  # fmt: skip
        record = _carried(p, PAYMENT_SETTLED)
        record.update(fee_minor=fee, posting_id=posting_id, settlement_window=window)
        outcome = Outcome(
            p["payment_id"], PaymentState.VALIDATED, PaymentState.SETTLED, None, None, fee,
            posting_id, window, p["amount_minor"],
        )  # fmt: skip
        moves = _payment_moves(p, banks, posted=p["amount_minor"])
        return Decision(
            DecisionOutcome.SETTLED, p["payment_id"],
            writes=(outcome, draft, _transition(p, PaymentState.SETTLED, None), *moves),
            emits=(Emit(PAYMENT_SETTLED, record),), channel=p["channel"],
        )  # fmt: skip


def _named_payment(payments: dict[str, PaymentView], payment_id: str) -> PaymentView | None:
    """The payment a step names: by the switch's id, else (a payment from before ids were
    per bank, told to its banks by its bare id) by the bank's own part. Who may act on
    it is the lifecycle's rules' to say, as for any payment."""
    return payments.get(payment_id) or payments.get(own_part(payment_id))


def _authorized(p: dict[str, Any], fee: int, expires_at: datetime, banks: BankBook) -> Decision:
    """An authorization's hold: the amount and its fee reserved until ``expires_at``."""
    amount = p["amount_minor"]
    hold = HoldPlaced(
        p["payment_id"], p["payer_account"], p["payer_bank"], p["currency"], amount, fee,
        amount + fee, 0, HoldState.ACTIVE, p["occurred_at"], expires_at, None, None,
    )  # fmt: skip
    outcome = Outcome(
        p["payment_id"], PaymentState.VALIDATED, PaymentState.AUTHORIZED, None, None, 0, None,
        None, 0,
    )  # fmt: skip
    record = completed_record(
        p, p["event_id"], step_id=p["payment_id"], step=StepKind.AUTHORIZE,
        bank_reference=p["bank_reference"], sender_bank=p["payer_bank"],
        occurred_at=p["occurred_at"], amount_minor=amount, fee_minor=0,
        held_minor=amount + fee, captured_minor=0, refunded_minor=0,
        payment_state=PaymentState.AUTHORIZED, hold_expires_at=expires_at, iso=p.get("iso"),
    )  # fmt: skip
    return Decision(
        STEPS[StepKind.AUTHORIZE].outcome, p["payment_id"],
        writes=(
            outcome, hold, _transition(p, PaymentState.AUTHORIZED, None),
            *_payment_moves(p, banks, held=amount),
        ),  # fmt: skip
        emits=(Emit(PAYMENT_STEP_COMPLETED, record),), channel=p["channel"],
    )  # fmt: skip


def _beyond_limits(p: dict[str, Any], banks: BankBook) -> Refused | None:
    """Why the payer's bank may not send this payment (its cap, its liquidity), if so."""
    if not interbank(p["payer_bank"], p["payee_bank"]):
        return None
    return banks.check_outgoing(p["payer_bank"], p["currency"], p["amount_minor"])


def _payment_moves(
    p: dict[str, Any], banks: BankBook, posted: int = 0, held: int = 0
) -> tuple[PositionMoved, ...]:
    """A payment's moves of its banks' positions: the payer's bank up, the payee's down."""
    if not interbank(p["payer_bank"], p["payee_bank"]):
        return ()
    at, cur, ref = p["occurred_at"], p["currency"], p["payment_id"]
    payer = banks.moved(p["payer_bank"], cur, at, posted=posted, holds=held, ref=ref)
    if not posted:
        return (payer,)
    return payer, banks.moved(p["payee_bank"], cur, at, posted=-posted, ref=ref)


def _bank_keys(batch: Sequence[Inbound], payments: Iterable[PaymentView]) -> set[tuple[str, str]]:
    """The (bank, currency) rows a batch may move: its payments' banks, its movements'."""
    keys: set[tuple[str, str]] = set()
    for i in batch:
        r = i.record
        if i.event_type in LIQUIDITY:
            keys.add((r["bank_code"], r["currency"]))
        elif i.event_type == PAYMENT_VALIDATED.name:
            keys |= {(r["payer_bank"], r["currency"]), (r["payee_bank"], r["currency"])}
    for v in payments:
        keys |= {(v.payer_bank, v.currency), (v.payee_bank, v.currency)}
    return keys


def _failed(p: dict[str, Any], reason: Reason, message: str) -> Decision:
    record = _carried(p, PAYMENT_FAILED)
    record.update(reason_code=reason.value, reason_message=message)
    outcome = Outcome(
        p["payment_id"], PaymentState.VALIDATED, PaymentState.FAILED, reason.value, message,
        None, None, None,
    )  # fmt: skip
    return Decision(
        DecisionOutcome.FAILED, p["payment_id"],
        writes=(outcome, _transition(p, PaymentState.FAILED, reason.value)),
        emits=(Emit(PAYMENT_FAILED, record),), channel=p["channel"], reason=reason.value,
    )  # fmt: skip


def _carried(p: dict[str, Any], event: EventType) -> dict[str, Any]:
    record = {k: p.get(k) for k in carried_fields(PAYMENT_VALIDATED, event)}
    record["causation_event_id"] = p["event_id"]
    record["event_id"] = derived_event_id(p["event_id"], event.name)
    return record


def _transition(p: dict[str, Any], to_state: str, reason_code: str | None) -> Transition:
    return Transition(
        p["payment_id"], PaymentState.VALIDATED, to_state, reason_code, NAME, p["event_id"],
        p["occurred_at"],
    )  # fmt: skip


def _funds(conn: Connection, numbers: set[str]) -> dict[str, Funds]:
    """Each account's balance (row and unfolded deltas), overdraft and active holds."""
    a, h = table_of(Account), table_of(Hold)
    rows = select_in(
        conn, select(a.c.number, a.c.balance_minor, a.c.overdraft_limit_minor), a.c.number,
        numbers,
    )  # fmt: skip
    unfolded = pending(conn, numbers)
    held_query = (
        select(h.c.account_number, func.sum(h.c.reserved_minor).label("held"))
        .where(h.c.state == HoldState.ACTIVE)
        .group_by(h.c.account_number)
    )
    held = {
        r.account_number: int(r.held)
        for r in select_in(conn, held_query, h.c.account_number, numbers)
    }
    return {
        r.number: Funds(
            r.balance_minor + unfolded.get(r.number, 0), r.overdraft_limit_minor,
            held.get(r.number, 0),
        )
        for r in rows
    }  # fmt: skip


def _payment_views(conn: Connection, ids: set[str]) -> dict[str, PaymentView]:
    if not ids:
        return {}
    p, iso = table_of(Payment), table_of(PaymentIso)
    query = select(
        p.c.payment_id, p.c.state, p.c.intent, p.c.payer_bank, p.c.payer_account, p.c.payee_bank,
        p.c.payee_account, p.c.amount_minor, p.c.currency, p.c.channel, p.c.payment_type,
        p.c.egov_service, p.c.captured_minor, p.c.refunded_minor, p.c.fee_minor,
        *(iso.c[k] for k in ISO_ID_COLUMNS),
    ).select_from(p.outerjoin(iso, iso.c.payment_id == p.c.payment_id))  # fmt: skip
    return {
        r.payment_id: PaymentView(
            r.payment_id, r.state, r.intent, r.payer_bank, r.payer_account, r.payee_bank,
            r.payee_account, r.amount_minor, r.currency, r.channel, r.payment_type,
            r.egov_service, r.captured_minor or 0, r.refunded_minor or 0, r.fee_minor or 0,
            _iso_ids(r),
        )
        for r in select_in(conn, query, p.c.payment_id, ids)
    }  # fmt: skip


ISO_ID_COLUMNS = ("msg_id", "msg_name", "instr_id", "end_to_end_id", "tx_id", "uetr")


def _iso_ids(row: Any) -> dict[str, Any] | None:
    """The payment's ISO 20022 ids (``payment_iso``) as events carry them; None without."""
    ids = {k: getattr(row, k) for k in ISO_ID_COLUMNS}
    return ids if any(v is not None for v in ids.values()) else None


def _hold_views(conn: Connection, ids: set[str]) -> dict[str, HoldView]:
    if not ids:
        return {}
    h = table_of(Hold)
    query = select(
        h.c.payment_id, h.c.state, h.c.amount_minor, h.c.fee_minor, h.c.reserved_minor,
        h.c.captured_minor, h.c.expires_at,
    )  # fmt: skip
    return {
        r.payment_id: HoldView(
            r.payment_id,
            r.state,
            r.amount_minor,
            r.fee_minor,
            r.reserved_minor,
            r.captured_minor,
            as_utc(r.expires_at),
        )
        for r in select_in(conn, query, h.c.payment_id, ids)
    }
