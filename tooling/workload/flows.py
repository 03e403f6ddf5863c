"""The lifecycle part of the chaos workload: authorizations and the steps that follow them.

Each *flow* is one payment and the steps its banks ask of it, published right after it
on its payer's key, so that they reach settlement behind it and in their order:

- card authorizations at a POS (intent AUTHORIZATION, PURCHASE to a merchant), then
  partial and final captures, full captures, voids, a void after a partial capture;
- authorizations whose hold expires during the run (``occurred_at`` = start - the POS
  hold life + a few seconds), with a capture sent after that time (refused TM01);
- online purchases from an airline, refunded in part or in full; interbank transfers
  returned by the payee's bank (AC04); a captured purchase refunded in part;
- steps that must be refused: a capture above the hold (AM09), a capture of a voided
  hold (AG01), a refund above the refundable (AM09), a step re-sent under a used bank
  reference (AM05).

Why every outcome is known in advance: funds never decide. The payers (and the payees
that return money) are customers set aside for these flows, which no ordinary payment
of the run debits, and each flow takes what it may ever debit or hold (fees included,
from the reference's fee schedule) out of its accounts' opening balances before it is
made. The order of one payment's steps is the order of its partition; and time decides
only by the events' own times (a hold is expired for a capture at or after its expiry,
whether or not the expiry was applied yet).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from consumers.expiry import expiry_event
from consumers.fees import compute_fee
from engine.domain.outcomes import StepOutcome
from engine.events import PAYMENT_STEP_REQUESTED, SWITCH
from engine.ids import switch_id_of
from engine.ledger.models import PaymentIntent, StepKind
from engine.ledger.models import PaymentState as S
from engine.ledger.reference import REFUND
from producers.publisher import encode_message
from tooling.workload.core import ExpectedStep, Message, Minter, fee_schedule_of

APPLIED, REFUSED = StepOutcome.APPLIED, StepOutcome.REFUSED
AIRLINE_MCC = "4511"
RETURN_REASON = "AC04"  # the payee's account was closed since: the transfer goes back
# flow label -> the state its payment must end in
FLOWS: Mapping[str, str] = {
    "capture_partial_final": S.CAPTURED,
    "capture_full": S.CAPTURED,
    "void": S.VOIDED,
    "capture_then_void": S.CAPTURED,
    "capture_above_hold": S.CAPTURED,
    "capture_after_void": S.VOIDED,
    "expiring": S.EXPIRED,
    "refund_partial": S.SETTLED,
    "refund_full": S.REFUNDED,
    "refund_above": S.SETTLED,
    "return": S.RETURNED,
    "capture_refund": S.CAPTURED,
    "resubmitted_step": S.CAPTURED,
}
EXPIRES_IN_S = (3, 15)  # an expiring hold's time comes this many seconds after the start


@dataclass
class Flow:
    """One lifecycle payment: its messages in order, and what each must end as."""

    label: str
    payment: dict[str, Any]
    messages: list[Message] = field(default_factory=list)
    steps: list[ExpectedStep] = field(default_factory=list)
    state: str = ""
    captured_minor: int = 0
    refunded_minor: int = 0


class Budget:
    """What each account may still debit or hold: its opening balance plus its overdraft.

    A flow takes all it could ever debit before it is made, so no funds check of the run
    can refuse it: its outcome is known.
    """

    def __init__(self, reference: Mapping[str, Any]) -> None:
        self.left: dict[str, int | None] = {}
        for a in reference.get("accounts", []):
            overdraft = a.get("overdraft_limit_minor", 0)
            self.left[a["number"]] = (
                None if overdraft is None else a.get("opening_balance_minor", 0) + overdraft
            )

    def take(self, charges: Mapping[str, int]) -> bool:
        """Take every charge (account -> amount), or none when one does not fit."""
        if any((self.left.get(n) or 0) < amount for n, amount in charges.items()
               if self.left.get(n, 0) is not None):  # fmt: skip
            return False
        for number, amount in charges.items():
            left = self.left.get(number, 0)
            if left is not None:
                self.left[number] = left - amount
        return True


class LifecycleFlows:
    """Makes the flows of one workload, with its minter's seeded generator and signers."""

    def __init__(
        self,
        mint: Minter,
        reference: Mapping[str, Any],
        payers: list[tuple[str, str]],
        hold_life: timedelta,
    ) -> None:
        self.mint = mint
        self.rng: random.Random = mint.rng
        self.payers = payers
        self.budget = Budget(reference)
        self.fees = fee_schedule_of(reference)
        self.hold_life = hold_life
        merchants = mint.accounts.merchants
        self.merchants = merchants
        self.airlines = [m for m in merchants if m[2] == AIRLINE_MCC] or merchants
        self._steps = 0

    def labels(self, count: int) -> list[str]:
        """``count`` flow labels, each at least once when ``count`` allows."""
        labels = list(FLOWS)[:count]
        labels += [self.rng.choice(list(FLOWS)) for _ in range(count - len(labels))]
        return labels

    def make(self, label: str) -> Flow | None:
        """The flow ``label``, or None when no set-aside account can afford it."""
        for _attempt in range(20):
            flow = getattr(self, f"_flow_{label}")()
            if flow is not None:
                return flow
        return None

    # -- payments --------------------------------------------------------------------------

    def _authorization(self, label: str, amount: int, **fields: Any) -> Flow | None:
        bank, number, mcc = self.rng.choice(self.merchants)
        return self._payment(
            label, amount, payee=(bank, number), channel="POS", payment_type="PURCHASE",
            merchant_category_code=mcc, intent=PaymentIntent.AUTHORIZATION, **fields,
        )  # fmt: skip

    def _payment(
        self,
        label: str,
        amount: int,
        payee: tuple[str, str],
        back_minor: int = 0,
        payer: tuple[str, str] | None = None,
        **fields: Any,
    ) -> Flow | None:
        """A payment from a set-aside payer, if the payer (and the payee, for
        ``back_minor`` paid back) can afford all of it."""
        payer = payer or self.rng.choice(self.payers)
        if payer[1] == payee[1]:
            return None
        fee = compute_fee(self.fees, fields["channel"], fields["payment_type"], "MAD", amount, None)
        charges = {payer[1]: amount + fee}
        if back_minor:
            refund_fee = compute_fee(self.fees, fields["channel"], REFUND, "MAD", back_minor, None)
            charges[payee[1]] = charges.get(payee[1], 0) + back_minor + 2 * refund_fee
        if not self.budget.take(charges):
            return None
        record = self.mint.record(
            payer=payer, payee_bank=payee[0], payee_account=payee[1], amount_minor=amount,
            **fields,
        )  # fmt: skip
        flow = Flow(label, record, state=FLOWS[label])
        flow.messages.append(self.mint.message(record, label))
        return flow

    def _amount(self) -> int:
        return self.rng.randint(5_000, 300_000)

    # -- steps -----------------------------------------------------------------------------

    def _step(
        self,
        flow: Flow,
        kind: str,
        sender: str,
        amount: int | None = None,
        *,
        outcome: str = APPLIED,
        reason: str | None = None,
        applied_minor: int | None = None,
        final: bool = False,
        reference: str | None = None,
        occurred_at: datetime | None = None,
        reason_code: str | None = None,
    ) -> dict[str, Any]:
        """Add to ``flow`` the request of ``kind`` by ``sender``, and what it must end as."""
        self._steps += 1
        p = flow.payment
        record = {
            "event_id": self.mint.new_id(),
            # The payer's bank names its payment by its own id; the payee's by the
            # switch's id, the one it was told (engine.ids).
            "payment_id": p["payment_id"] if sender == p["payer_bank"] else switch_id_of(p),
            "bank_reference": reference or f"ST{self.mint.seed % 10**6:06d}-{self._steps:08d}",
            "occurred_at": occurred_at or p["occurred_at"] + timedelta(milliseconds=self._steps),
            "sender_bank": sender, "payer_account": p["payer_account"], "step": kind,
            "amount_minor": amount, "currency": None if amount is None else "MAD",
            "final": final, "reason_code": reason_code,
        }  # fmt: skip
        key, value = encode_message(self.mint.codec, PAYMENT_STEP_REQUESTED, record)  # as banks do
        flow.messages.append(
            self.mint.message_of(key, value, f"step_{kind.lower()}", sender)  # signed by sender
        )
        flow.steps.append(
            ExpectedStep(
                switch_id_of(record, "event_id"), switch_id_of(p), flow.label, kind, sender,
                outcome, reason,
                applied_minor if outcome == APPLIED else None,
            )
        )  # fmt: skip
        return record

    def _acquirer_or_issuer(self, flow: Flow) -> str:
        """Who captures or voids: the payer's bank, or the payee's (the acquirer)."""
        return self.rng.choice((flow.payment["payer_bank"], flow.payment["payee_bank"]))

    def _capture(self, flow: Flow, amount: int | None, *, final: bool = False) -> None:
        total = flow.payment["amount_minor"]
        taken = total - flow.captured_minor if amount is None else amount
        flow.captured_minor += taken
        self._step(
            flow, StepKind.CAPTURE, self._acquirer_or_issuer(flow), amount, final=final,
            applied_minor=taken,
        )  # fmt: skip

    def _void(self, flow: Flow) -> None:
        released = flow.payment["amount_minor"] - flow.captured_minor
        self._step(flow, StepKind.VOID, self._acquirer_or_issuer(flow), applied_minor=released)

    def _refund(self, flow: Flow, amount: int | None) -> None:
        left = flow.captured_minor - flow.refunded_minor
        back = left if amount is None else amount
        flow.refunded_minor += back
        self._step(flow, StepKind.REFUND, flow.payment["payee_bank"], amount, applied_minor=back)

    # -- the flows (each returns None when its accounts cannot afford it) ------------------

    def _flow_capture_partial_final(self) -> Flow | None:
        amount = self._amount()
        flow = self._authorization("capture_partial_final", amount)
        if flow is not None:
            first = amount * self.rng.randint(20, 50) // 100
            self._capture(flow, first)
            self._capture(flow, self.rng.randint(1, amount - first), final=True)  # rest released
        return flow

    def _flow_capture_full(self) -> Flow | None:
        flow = self._authorization("capture_full", self._amount())
        if flow is not None:
            self._capture(flow, None)
        return flow

    def _flow_void(self) -> Flow | None:
        flow = self._authorization("void", self._amount())
        if flow is not None:
            self._void(flow)
        return flow

    def _flow_capture_then_void(self) -> Flow | None:
        amount = self._amount()
        flow = self._authorization("capture_then_void", amount)
        if flow is not None:
            self._capture(flow, amount // 3)
            self._void(flow)  # the partial capture stands: CAPTURED
        return flow

    def _flow_capture_above_hold(self) -> Flow | None:
        amount = self._amount()
        flow = self._authorization("capture_above_hold", amount)
        if flow is not None:
            above = amount + self.rng.randint(1, amount)
            self._step(
                flow, StepKind.CAPTURE, self._acquirer_or_issuer(flow), above,
                outcome=REFUSED, reason="AM09",
            )  # fmt: skip
            self._capture(flow, None)
        return flow

    def _flow_capture_after_void(self) -> Flow | None:
        amount = self._amount()
        flow = self._authorization("capture_after_void", amount)
        if flow is not None:
            self._void(flow)
            self._step(
                flow, StepKind.CAPTURE, self._acquirer_or_issuer(flow), amount // 2,
                outcome=REFUSED, reason="AG01",
            )  # fmt: skip
        return flow

    def _flow_expiring(self) -> Flow | None:
        """A hold whose time comes a few seconds into the run: the switch expires it."""
        expires_at = self.mint.start + timedelta(seconds=self.rng.randint(*EXPIRES_IN_S))
        amount = self._amount()
        flow = self._authorization("expiring", amount, occurred_at=expires_at - self.hold_life)
        if flow is None:
            return None
        p = flow.payment
        late = expires_at + timedelta(seconds=1)  # after the expiry, by the event's own time
        self._step(
            flow, StepKind.CAPTURE, p["payee_bank"], amount // 2, outcome=REFUSED,
            reason="TM01", occurred_at=late,
        )  # fmt: skip
        expiry = expiry_event(switch_id_of(p), p["payer_account"], expires_at)
        flow.steps.append(
            ExpectedStep(
                expiry["event_id"], switch_id_of(p), "expiring", StepKind.EXPIRE, SWITCH,
                APPLIED, None, amount,
            )
        )  # fmt: skip
        return flow

    def _online_purchase(self, label: str, amount: int, back_minor: int) -> Flow | None:
        bank, number, mcc = self.rng.choice(self.airlines)
        flow = self._payment(
            label, amount, payee=(bank, number), back_minor=back_minor, channel="WEB",
            payment_type="PURCHASE", merchant_category_code=mcc,
        )  # fmt: skip
        if flow is not None:
            flow.captured_minor = amount  # a settled one-step payment: all of it
        return flow

    def _flow_refund_partial(self) -> Flow | None:
        amount = self._amount()
        flow = self._online_purchase("refund_partial", amount, amount)
        if flow is not None:
            self._refund(flow, self.rng.randint(1, amount - 1))
        return flow

    def _flow_refund_full(self) -> Flow | None:
        amount = self._amount()
        flow = self._online_purchase("refund_full", amount, amount)
        if flow is not None:
            self._refund(flow, amount // 4)
            self._refund(flow, None)  # the rest: REFUNDED
        return flow

    def _flow_refund_above(self) -> Flow | None:
        amount = self._amount()
        flow = self._online_purchase("refund_above", amount, amount)
        if flow is not None:
            self._refund(flow, amount // 2)
            left = amount - flow.refunded_minor
            self._step(
                flow, StepKind.REFUND, flow.payment["payee_bank"], left + 1, outcome=REFUSED,
                reason="AM09",
            )  # fmt: skip
        return flow

    def _flow_return(self) -> Flow | None:
        """An interbank transfer to a set-aside customer, whose bank sends it back (AC04)."""
        payer = self.rng.choice(self.payers)
        payees = [p for p in self.payers if p[0] != payer[0]]
        if not payees:
            return None
        amount = self._amount()
        flow = self._payment(
            "return", amount, payee=self.rng.choice(payees), back_minor=amount, payer=payer,
            channel="MOBILE", payment_type="TRANSFER",
        )  # fmt: skip
        if flow is None:
            return None
        flow.captured_minor = flow.refunded_minor = amount
        self._step(
            flow, StepKind.RETURN, flow.payment["payee_bank"], reason_code=RETURN_REASON,
            applied_minor=amount,
        )  # fmt: skip
        return flow

    def _flow_capture_refund(self) -> Flow | None:
        amount = self._amount()
        bank, number, mcc = self.rng.choice(self.airlines)
        flow = self._payment(
            "capture_refund", amount, payee=(bank, number), back_minor=amount, channel="POS",
            payment_type="PURCHASE", merchant_category_code=mcc,
            intent=PaymentIntent.AUTHORIZATION,
        )  # fmt: skip
        if flow is not None:
            self._capture(flow, None)
            self._refund(flow, amount // 5)
        return flow

    def _flow_resubmitted_step(self) -> Flow | None:
        flow = self._authorization("resubmitted_step", self._amount())
        if flow is not None:
            self._capture(flow, None)
            used = self.mint.codec.decode(flow.messages[-1].value).record
            self._step(
                flow, StepKind.CAPTURE, used["sender_bank"], 100, outcome=REFUSED,
                reason="AM05", reference=used["bank_reference"],
            )  # fmt: skip  # the same bank, the same reference: AM05
        return flow
