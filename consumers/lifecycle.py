"""The lifecycle of a payment after its first answer: holds, captures, voids, expiries,
refunds and returns. Pure rules: each takes the step and what settlement read for its
batch, and returns the rows to write and the event to emit, or a refusal with its ISO
20022 reason, which posts nothing and changes no hold.

Who may ask what:

==========  ==============================  =========================================
step        sender                          applies to
==========  ==============================  =========================================
CAPTURE     payer's bank, or payee's bank   an ACTIVE hold, up to what remains of it
            (the acquirer, for a merchant)
VOID        payer's or payee's bank         an ACTIVE hold
EXPIRE      the switch (its scheduler)      an ACTIVE hold whose time has come
REFUND      payee's bank                    a SETTLED or CAPTURED payment, up to what
                                            was captured less what was refunded
RETURN      payee's bank                    a SETTLED interbank credit, all that is left
==========  ==============================  =========================================

A bank that is neither the payer's nor the payee's is refused AG01 with one message,
"not a party to this payment or no such payment", whether the payment exists or not and
whatever payer account it guessed; its refusal carries nothing of the payment.

Money. A hold reserves the amount and the fee on the whole amount. A capture posts its
amount with the fee the schedule gives for it, exactly as a one-step payment would, and
uses up the reservation first. Refunds and returns post the other way, through both
banks' settlement accounts when interbank (``build_legs`` with the roles swapped); a
refund carries the fee the schedule gives for (channel, ``REFUND``), charged to the
payee and credited to the payee bank (none on a vignette, ever); a return never does.
The fee of the original payment is not given back. Every posting counts in the
settlement window of the step's own business day.

Time. A decision reads the step's ``occurred_at``, never the clock: a hold is expired for
a capture whose time is at or after ``expires_at``, whether or not its expiry event has
been applied yet, so a replay decides the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from consumers.fees import check_no_vignette_fee, compute_fee
from consumers.legs import build_legs, settlement_window
from consumers.positions import BankBook, interbank
from engine.domain import STEPS, Outcome, StepKind, StepOutcome
from engine.domain.steps import banks_of
from engine.events import (
    PAYMENT_STEP_COMPLETED,
    PAYMENT_STEP_REFUSED,
    SWITCH,
    derived_event_id,
)
from engine.ledger.models import HoldState, PaymentIntent
from engine.ledger.models import PaymentState as S
from engine.ledger.postings import DEFAULT_CHAIN, Leg, PostingDraft
from engine.ledger.recorder import (
    HoldChanged,
    PaymentProgress,
    StepRecorded,
    Transition,
    Write,
)
from engine.ledger.reference import REFUND, FeeSchedule, Limits
from engine.ledger.states import REFUNDABLE, check_transition
from engine.money import format_minor
from engine.pipeline.contract import Decision, Emit
from engine.reasons import RETURN_REASONS, Reason

CONSUMER = "settlement"  # the stage these rules run in, as its transitions name it
APPLIED, REFUSED = StepOutcome.APPLIED, StepOutcome.REFUSED


@dataclass(slots=True)
class Funds:
    """An account's funds: balance, overdraft, and what its active holds reserve."""

    balance_minor: int
    overdraft_limit_minor: int | None  # None: no limit
    held_minor: int = 0

    @property
    def available_minor(self) -> int | None:
        """balance + overdraft - active holds; None for an account without a limit."""
        if self.overdraft_limit_minor is None:
            return None
        return self.balance_minor + self.overdraft_limit_minor - self.held_minor

    def can_pay(self, amount_minor: int) -> bool:
        available = self.available_minor
        return available is None or available >= amount_minor


@dataclass(slots=True)
class PaymentView:
    """What a step needs of the payment it names, as the batch's decisions leave it."""

    payment_id: str
    state: str
    intent: str
    payer_bank: str
    payer_account: str
    payee_bank: str
    payee_account: str
    amount_minor: int
    currency: str
    channel: str
    payment_type: str
    egov_service: str | None
    captured_minor: int
    refunded_minor: int
    fee_minor: int
    iso: dict[str, Any] | None = None  # the bank's ISO 20022 ids (payment_iso), echoed


@dataclass(slots=True)
class HoldView:
    payment_id: str
    state: str
    amount_minor: int
    fee_minor: int
    reserved_minor: int
    captured_minor: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StepRefusal:
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class HoldChange:
    """What a step does to a hold: its new state, what stays reserved, what is captured."""

    view: HoldView
    state: HoldState
    reserved_minor: int
    captured_minor: int

    def row(self, payment_id: str, at: datetime, step_id: str) -> HoldChanged:
        resolved = self.state != HoldState.ACTIVE
        return HoldChanged(
            payment_id, self.view.state, self.view.captured_minor, self.state,
            self.reserved_minor, self.captured_minor, at if resolved else None,
            step_id if resolved else None,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Effect:
    """A step that takes effect: its amounts, its legs (if money moves), the payment after it."""

    kind: StepKind
    amount: int
    fee: int
    legs: tuple[Leg, ...] | None
    state: str
    captured: int
    refunded: int
    hold: HoldChange | None = None

    @property
    def held(self) -> int:
        return 0 if self.hold is None else self.hold.reserved_minor


def _step_rows(
    s: dict[str, Any], payment: PaymentView, effect: Effect, step_id: str,
    posting_id: str | None, window: str | None,
) -> list[Write]:  # fmt: skip
    """The payment's progress, the step's record and the transition, for an applied step."""
    at, reason = s["occurred_at"], s.get("reason_code")
    return [
        PaymentProgress(
            payment.payment_id, payment.state, payment.refunded_minor, effect.state,
            effect.captured, effect.refunded, payment.fee_minor + effect.fee,
        ),
        StepRecorded(
            step_id, payment.payment_id, effect.kind, s["sender_bank"], s["bank_reference"], at,
            effect.amount, effect.fee, payment.currency, APPLIED, reason, None, posting_id,
            window,
        ),
        Transition(
            payment.payment_id, payment.state, effect.state, reason, CONSUMER, s["event_id"], at
        ),
    ]  # fmt: skip


def _position_moves(
    payment: PaymentView, effect: Effect, banks: BankBook, at: datetime
) -> list[Write]:
    """How a step moves its banks' positions (``consumers.positions``): interbank only."""
    if not interbank(payment.payer_bank, payment.payee_bank):
        return []
    cur, moves, held, ref = payment.currency, list[Write](), 0, payment.payment_id
    if effect.hold is not None:  # what the payer's bank still held of it is released ...
        view, change = effect.hold.view, effect.hold
        left = view.amount_minor - view.captured_minor
        held = (
            -left
            if change.state != HoldState.ACTIVE
            else -(change.captured_minor - view.captured_minor)
        )
    if effect.legs is None:
        if held:
            moves.append(banks.moved(payment.payer_bank, cur, at, holds=held, ref=ref))
        return moves
    payer, payee = payment.payer_bank, payment.payee_bank
    if effect.kind in (StepKind.REFUND, StepKind.RETURN):
        payer, payee = payee, payer  # the payee's bank pays it back
    moves.append(banks.moved(payer, cur, at, posted=effect.amount, holds=held, ref=ref))
    moves.append(banks.moved(payee, cur, at, posted=-effect.amount, ref=ref))
    return moves


def hold_expiry(limits: Limits, channel: str, currency: str, default_s: int) -> timedelta:
    """How long a hold lives on ``channel``: its reference data, else the default."""
    return timedelta(seconds=limits.hold_expiry_s.get((channel, currency), default_s))


@dataclass(frozen=True, slots=True)
class StepRules:
    """The rules of every step, with the fee schedule they charge by and the hash chain
    their postings go to (the partition the step came from, as its payment's did)."""

    fees: FeeSchedule
    chain: int = DEFAULT_CHAIN
    banks: BankBook = field(default_factory=BankBook)  # the interbank limits (positions)

    def decide(
        self,
        s: dict[str, Any],
        payment: PaymentView | None,
        hold: HoldView | None,
        funds: dict[str, Funds],
    ) -> Decision:
        """The decision on step ``s`` (a PaymentStepValidated record)."""
        refusal = _party_refusal(s, payment)
        if refusal is not None or payment is None:
            return self._refused(s, payment, refusal or NOT_A_PARTY)
        kind = StepKind(s["step"])
        if STEPS[kind].on_hold:
            result = self._on_hold(s, kind, payment, hold, funds)
        else:
            result = self._back(s, kind, payment, funds)
        if isinstance(result, StepRefusal):
            return self._refused(s, payment, result)
        return result

    # -- holds ---------------------------------------------------------------------------

    def _on_hold(
        self,
        s: dict[str, Any],
        kind: StepKind,
        payment: PaymentView,
        hold: HoldView | None,
        funds: dict[str, Funds],
    ) -> Decision | StepRefusal:
        if hold is None or payment.intent != PaymentIntent.AUTHORIZATION:
            return StepRefusal(Reason.AG01, f"payment {payment.payment_id} holds no funds")
        at = s["occurred_at"]
        if kind is StepKind.EXPIRE:
            if hold.state != HoldState.ACTIVE:
                return StepRefusal(Reason.AG01, f"the hold was {hold.state.lower()} already")
            if at < hold.expires_at:
                return StepRefusal(Reason.AG01, f"the hold lives until {hold.expires_at:%c}")
            return self._release(s, payment, hold, HoldState.EXPIRED)
        if hold.state == HoldState.EXPIRED or (
            hold.state == HoldState.ACTIVE and at >= hold.expires_at
        ):
            return StepRefusal(Reason.TM01, f"the hold expired at {hold.expires_at.isoformat()}")
        if hold.state != HoldState.ACTIVE:
            what = "fully captured" if hold.state == HoldState.CAPTURED else "voided"
            return StepRefusal(Reason.AG01, f"the hold was {what} already")
        if kind is StepKind.VOID:
            return self._release(s, payment, hold, HoldState.VOIDED)
        return self._capture(s, payment, hold, funds)

    def _capture(
        self, s: dict[str, Any], payment: PaymentView, hold: HoldView, funds: dict[str, Funds]
    ) -> Decision | StepRefusal:
        remaining = hold.amount_minor - hold.captured_minor
        amount = remaining if s.get("amount_minor") is None else s["amount_minor"]
        cur = payment.currency
        if amount > remaining:
            return StepRefusal(
                Reason.AM09,
                f"capture of {format_minor(amount, cur)} above the "
                f"{format_minor(remaining, cur)} that remain of the hold",
            )
        fee = self._fee(payment, payment.payment_type, amount)
        debit = amount + fee
        beyond_hold = max(0, debit - hold.reserved_minor)  # fees of partial captures add up
        payer = funds[payment.payer_account]
        if beyond_hold and not payer.can_pay(beyond_hold):
            return StepRefusal(
                Reason.AM04,
                f"capture needs {format_minor(beyond_hold, cur)} beyond the hold, "
                f"{format_minor(max(payer.available_minor or 0, 0), cur)} available",
            )
        captured = hold.captured_minor + amount
        final = bool(s.get("final")) or captured == hold.amount_minor
        hold_state = HoldState.CAPTURED if final else HoldState.ACTIVE
        reserved = 0 if final else max(0, hold.reserved_minor - debit)
        legs = build_legs(
            payment.payer_account, payment.payee_account, payment.payer_bank, payment.payee_bank,
            amount, fee, cur,
        )  # fmt: skip
        state = S.CAPTURED if final else S.AUTHORIZED
        change = HoldChange(hold, hold_state, reserved, captured)
        return self._applied(s, payment, Effect(
            StepKind.CAPTURE, amount, fee, legs, state, captured, payment.refunded_minor, change,
        ))  # fmt: skip

    def _release(
        self, s: dict[str, Any], payment: PaymentView, hold: HoldView, how: HoldState
    ) -> Decision:
        """A void or an expiry: what remains of the hold goes back, nothing is posted."""
        kind = StepKind.VOID if how == HoldState.VOIDED else StepKind.EXPIRE
        something = hold.captured_minor > 0  # partial captures stand: the payment is CAPTURED
        hold_state = HoldState.CAPTURED if something else how
        state = S.CAPTURED if something else STEPS[kind].target
        released = hold.amount_minor - hold.captured_minor
        change = HoldChange(hold, hold_state, 0, hold.captured_minor)
        return self._applied(s, payment, Effect(
            kind, released, 0, None, state, hold.captured_minor, payment.refunded_minor, change,
        ))  # fmt: skip

    # -- money back ----------------------------------------------------------------------

    def _back(
        self, s: dict[str, Any], kind: StepKind, payment: PaymentView, funds: dict[str, Funds]
    ) -> Decision | StepRefusal:
        """A refund or a return: settled money goes back to the payer."""
        if payment.state in (S.REFUNDED, S.RETURNED):
            return StepRefusal(Reason.ARDT, f"the payment was {payment.state.lower()} in full")
        if payment.state not in REFUNDABLE:
            return StepRefusal(
                Reason.AG01, f"payment {payment.payment_id} was never settled ({payment.state})"
            )
        cur = payment.currency
        left = payment.captured_minor - payment.refunded_minor
        if kind is StepKind.RETURN:
            refusal = _return_refusal(s, payment, left)
            if refusal is not None:
                return refusal
            amount, fee = left, 0
        else:
            amount = left if s.get("amount_minor") is None else s["amount_minor"]
            if amount > left:
                return StepRefusal(
                    Reason.AM09,
                    f"refund of {format_minor(amount, cur)} above the "
                    f"{format_minor(left, cur)} refundable",
                )
            fee = self._fee(payment, REFUND, amount)
        payee = funds[payment.payee_account]
        if not payee.can_pay(amount + fee):
            return StepRefusal(
                Reason.AM04,
                f"the payee needs {format_minor(amount + fee, cur)}, "
                f"{format_minor(max(payee.available_minor or 0, 0), cur)} available",
            )
        if interbank(payment.payer_bank, payment.payee_bank):
            beyond = self.banks.check_outgoing(payment.payee_bank, cur, amount)
            if beyond is not None:  # the payee's bank pays it back: its limits bind
                return StepRefusal(Reason(beyond.reason_code), beyond.message)
        legs = build_legs(
            payment.payee_account, payment.payer_account, payment.payee_bank, payment.payer_bank,
            amount, fee, cur,
        )  # fmt: skip
        refunded = payment.refunded_minor + amount
        done = refunded == payment.captured_minor
        state = STEPS[kind].target if done else payment.state
        return self._applied(
            s, payment, Effect(kind, amount, fee, legs, state, payment.captured_minor, refunded)
        )

    # -- decisions -----------------------------------------------------------------------

    def _fee(self, payment: PaymentView, payment_type: str, amount: int) -> int:
        fee = compute_fee(
            self.fees, payment.channel, payment_type, payment.currency, amount,
            payment.egov_service,
        )  # fmt: skip
        check_no_vignette_fee(payment.egov_service, fee)
        return fee

    def _applied(self, s: dict[str, Any], payment: PaymentView, effect: Effect) -> Decision:
        """A step that takes effect: its rows, and the ``PaymentStepCompleted`` that tells it."""
        if effect.state != payment.state:
            check_transition(payment.state, effect.state)  # the rules only ask for legal ones
        step_id, at = step_id_of(s), s["occurred_at"]
        posting_id = window = None
        writes: list[Write] = []
        if effect.hold is not None:
            writes.append(effect.hold.row(payment.payment_id, at, step_id))
        if effect.legs is not None:
            posting_id = derived_event_id(s["event_id"], "Posting")
            window = settlement_window(at)
            writes.append(PostingDraft(posting_id, payment.payment_id, effect.kind, at, window,
                                       effect.legs, self.chain))  # fmt: skip
        writes += _step_rows(s, payment, effect, step_id, posting_id, window)
        writes += _position_moves(payment, effect, self.banks, at)
        parties = {k: getattr(payment, k) for k in PARTY_FIELDS}
        record = completed_record(
            parties, s["event_id"], step_id=step_id, step=effect.kind,
            bank_reference=s["bank_reference"], sender_bank=s["sender_bank"], occurred_at=at,
            amount_minor=effect.amount, fee_minor=effect.fee, posting_id=posting_id,
            settlement_window=window, held_minor=effect.held, captured_minor=effect.captured,
            refunded_minor=effect.refunded, payment_state=effect.state,
            reason_code=s.get("reason_code"), iso=payment.iso,
        )  # fmt: skip
        return Decision(
            STEPS[effect.kind].outcome, payment.payment_id, writes=tuple(writes),
            emits=(Emit(PAYMENT_STEP_COMPLETED, record),), channel=payment.channel,
        )  # fmt: skip

    def _refused(
        self, s: dict[str, Any], payment: PaymentView | None, refusal: StepRefusal
    ) -> Decision:
        return refused_step(s, payment, refusal)


def refused_step(s: dict[str, Any], payment: PaymentView | None, refusal: StepRefusal) -> Decision:
    """A refused step: recorded with its reason and told to its sender; nothing else.

    What the sender is told of the payment (its banks) only when it is a party to it: a
    bank that is not hears its own request and the reason, as for no payment at all.
    """
    if payment is not None and not is_party(s["sender_bank"], payment):
        payment = None
    step = StepRecorded(
        step_id_of(s), s["payment_id"][:64], s["step"], s["sender_bank"][:8],
        s["bank_reference"][:35], s["occurred_at"], s.get("amount_minor"), 0,
        (s.get("currency") or "")[:3] or None, REFUSED, refusal.reason.value,
        refusal.message[:300], None, None,
    )  # fmt: skip
    record = {
        "event_id": derived_event_id(s["event_id"], PAYMENT_STEP_REFUSED.name),
        "payment_id": s["payment_id"], "step": s["step"], "bank_reference": s["bank_reference"],
        "sender_bank": s["sender_bank"], "occurred_at": s["occurred_at"],
        "payer_account": s["payer_account"],
        "payer_bank": payment.payer_bank if payment else None,
        "payee_bank": payment.payee_bank if payment else None,
        "amount_minor": s.get("amount_minor"), "currency": s.get("currency"),
        "reason_code": refusal.reason.value, "reason_message": refusal.message,
        "causation_event_id": s["event_id"],
    }  # fmt: skip
    return Decision(
        Outcome.STEP_REFUSED, s["payment_id"], writes=(step,),
        emits=(Emit(PAYMENT_STEP_REFUSED, record),), channel=payment.channel if payment else "",
        reason=refusal.reason.value,
    )  # fmt: skip


PARTY_FIELDS = ("payment_id", "payer_bank", "payer_account", "payee_bank", "payee_account",
                "currency", "channel")  # fmt: skip


def completed_record(
    parties: Mapping[str, Any], cause_event_id: str, **step: Any
) -> dict[str, Any]:
    """A PaymentStepCompleted record: the payment's parties, and what the step did."""
    record = {k: parties[k] for k in PARTY_FIELDS}
    record.update(posting_id=None, settlement_window=None, hold_expires_at=None, reason_code=None)
    record.update(iso=None)  # the payment's ISO 20022 ids, when it came in as ISO 20022
    record.update(step)
    record["event_id"] = derived_event_id(cause_event_id, PAYMENT_STEP_COMPLETED.name)
    record["causation_event_id"] = cause_event_id
    return record


def step_id_of(s: dict[str, Any]) -> str:
    """A step's id: the event id of the bank's request (the expiry's own for the switch's)."""
    return str(s.get("causation_event_id") or s["event_id"])[:64]


# A bank that is no party to the payment it names learns nothing of it: the same reason,
# word for word, whether the payment exists, exists with another payer, or is others'.
NOT_A_PARTY = StepRefusal(Reason.AG01, "not a party to this payment or no such payment")


def is_party(bank: str, payment: PaymentView) -> bool:
    """The bank is one of the payment's two (the switch, for its own expiries)."""
    return bank in (payment.payer_bank, payment.payee_bank, SWITCH)


def _party_refusal(s: dict[str, Any], payment: PaymentView | None) -> StepRefusal | None:
    """The sender is a party to the payment, the step names its payer, and the sender may
    ask for this step. Nothing here tells a bank that is no party anything it did not
    know: :data:`NOT_A_PARTY` whatever the payment."""
    sender, kind = s["sender_bank"], s["step"]
    if payment is None or not is_party(sender, payment):
        return NOT_A_PARTY
    if s["payer_account"] != payment.payer_account:
        return StepRefusal(Reason.NOOR, "the step names another payer than the payment's")
    who = STEPS[StepKind(kind)].who_may_ask
    if sender not in banks_of(who, payment.payer_bank, payment.payee_bank, SWITCH):
        return StepRefusal(
            Reason.AG01, f"bank {str(sender)[:8]} may not {str(kind).lower()} this payment"
        )
    if s.get("currency") not in (None, payment.currency):
        return StepRefusal(Reason.AM03, f"the payment is in {payment.currency}")
    if s.get("amount_minor") is not None and s["amount_minor"] <= 0:
        return StepRefusal(Reason.AM12, f"amount must be above zero, got {s['amount_minor']}")
    return None


def _return_refusal(s: dict[str, Any], payment: PaymentView, left: int) -> StepRefusal | None:
    if payment.payer_bank == payment.payee_bank:
        return StepRefusal(Reason.AG01, "only an interbank credit can be returned")
    if payment.intent != PaymentIntent.SALE or payment.state != S.SETTLED:
        return StepRefusal(Reason.AG01, "only a settled credit transfer can be returned")
    if s.get("reason_code") not in RETURN_REASONS:
        return StepRefusal(
            Reason.CH16, f"a return needs a return reason, got {str(s.get('reason_code'))[:4]!r}"
        )
    if s.get("amount_minor") not in (None, left):
        return StepRefusal(Reason.AM09, f"a return returns all that is left ({left})")
    return None
