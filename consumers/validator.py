"""The validator: decides whether an initiated payment may go to settlement.

Each rule is a small function returning a :class:`Rejection` or ``None``; the
first rule that refuses decides. Decisions use only the event, its Kafka
record time and the reference data, never the wall clock, so a replay decides
the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from consumers.lifecycle import StepRefusal, refused_step
from consumers.signature_gate import SignatureGate
from engine.config import Settings
from engine.domain import STEPS, Outcome, Party
from engine.events import (
    EVENTS,
    PAYMENT_INITIATED,
    PAYMENT_REJECTED,
    PAYMENT_STEP_REQUESTED,
    PAYMENT_STEP_VALIDATED,
    PAYMENT_VALIDATED,
    EventType,
    carried_fields,
    derived_event_id,
)
from engine.ids import MAX_ACCOUNT_CHARS, MAX_REFERENCE_CHARS, SWITCH_ID_MAX_CHARS
from engine.ledger.models import (
    Account,
    AccountKind,
    AccountStatus,
    Bank,
    BankReference,
    Payment,
    PaymentIntent,
    PaymentState,
    StepKind,
)
from engine.ledger.queries import select_in
from engine.ledger.recorder import NewPayment, PaymentIsoIds, ReferenceTaken, Transition, Write
from engine.ledger.reference import FeeSchedule, Limits
from engine.ledger.reference_versions import (
    ReferenceBook,
    ReferenceRefresher,
    latest_occurred_at,
)
from engine.masking import mask_account
from engine.money import MAX_AMOUNT_MINOR, format_minor, is_known_currency
from engine.pipeline.contract import Decision, Emit, Refusal, StageDefaults
from engine.pipeline.messages import Inbound
from engine.reasons import Reason
from engine.trust.signing import Evidence

NAME = "validator"
MAX_ISO_EXTRAS_CHARS = 20_000  # engine.iso.mapping.MAX_EXTRAS_CHARS: what an import sends
PAYER_KINDS = frozenset({AccountKind.CUSTOMER, AccountKind.MERCHANT, AccountKind.GOVERNMENT})
VIGNETTE = "VIGNETTE"
# What the validator forwards to settlement for each input it accepts.
FORWARDED: dict[str, EventType] = {
    PAYMENT_INITIATED.name: PAYMENT_VALIDATED,
    PAYMENT_STEP_REQUESTED.name: PAYMENT_STEP_VALIDATED,
}


def forwarded_id(event_type: str, event_id: str) -> str:
    """The id of the event forwarded to settlement for an input, from the input's type and id.

    ``event_id`` as the switch keeps it (``BANK:ID``, engine.ids): a replay matches the
    live settlement's answers to the inputs it read by this id.
    """
    return derived_event_id(event_id, FORWARDED.get(event_type, PAYMENT_VALIDATED).name)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class AccountView:
    number: str
    bank_code: str
    kind: str
    currency: str
    status: str


def check_formats(p: dict[str, Any]) -> Rejection | None:
    """Identifiers within their ISO 20022 lengths, references not empty."""
    reference = p["bank_reference"]
    if not 0 < len(reference) <= MAX_REFERENCE_CHARS:
        return Rejection(
            Reason.CH16,
            f"bank reference must be 1 to {MAX_REFERENCE_CHARS} characters, got {len(reference)}",
        )
    for name in ("payer_account", "payee_account"):
        if not 0 < len(p[name]) <= MAX_ACCOUNT_CHARS:
            return Rejection(Reason.CH16, f"{name} must be 1 to {MAX_ACCOUNT_CHARS} characters")
    return None


def check_amount(p: dict[str, Any], limits: Limits) -> Rejection | None:
    """Known currency, amount above zero and within the channel's limit."""
    currency, amount, channel = p["currency"], p["amount_minor"], p["channel"]
    if not is_known_currency(currency):
        return Rejection(Reason.AM03, f"unknown currency {currency[:8]!r}")
    if amount <= 0:
        return Rejection(Reason.AM12, f"amount must be above zero, got {amount}")
    limit = limits.max_amount_minor.get((channel, currency))
    if limit is None:
        return Rejection(Reason.AM03, f"{currency} is not accepted on channel {channel}")
    if amount > min(limit, MAX_AMOUNT_MINOR):
        return Rejection(
            Reason.AM02,
            f"{format_minor(amount, currency)} is above the {channel} "
            f"limit of {format_minor(limit, currency)}",
        )
    return None


def check_event_time(occurred_at: datetime, record_ms: int, settings: Settings) -> Rejection | None:
    """The event's time must be near the time the broker stored it (not the wall clock)."""
    stored_ms = int(occurred_at.timestamp() * 1000)
    if stored_ms > record_ms + settings.max_event_skew_s * 1000:
        return Rejection(Reason.DT01, f"event time {occurred_at.isoformat()} is in the future")
    if stored_ms < record_ms - settings.max_event_age_s * 1000:
        age = timedelta(milliseconds=record_ms - stored_ms)
        return Rejection(Reason.DT01, f"event time {occurred_at.isoformat()} is {age} old")
    return None


def check_account(
    role: str, bank: str, number: str, account: AccountView | None, banks: frozenset[str]
) -> Rejection | None:
    """The bank is known, the account exists at that bank and is active."""
    if bank not in banks:
        return Rejection(Reason.RC01, f"{role} bank {bank[:8]!r} is unknown")
    if account is None or account.bank_code != bank:
        return Rejection(
            Reason.AC01, f"{role} account {mask_account(number[:34])} is unknown at bank {bank}"
        )
    if account.status == AccountStatus.CLOSED:
        return Rejection(Reason.AC04, f"{role} account {mask_account(number)} is closed")
    if account.status == AccountStatus.BLOCKED:
        return Rejection(Reason.AC06, f"{role} account {mask_account(number)} is blocked")
    return None


def check_parties(p: dict[str, Any], payer: AccountView, payee: AccountView) -> Rejection | None:
    """Currencies match, payer may initiate, and the payee fits what is paid for."""
    if payer.currency != p["currency"] or payee.currency != p["currency"]:
        return Rejection(
            Reason.AM03,
            f"payment in {p['currency']} between accounts in {payer.currency} and {payee.currency}",
        )
    if payer.number == payee.number:
        return Rejection(Reason.AG01, "payer and payee are the same account")
    if payer.kind not in PAYER_KINDS:
        return Rejection(Reason.AG01, f"a {payer.kind} account cannot initiate payments")
    payment_type = p["payment_type"]
    if payment_type == "CASH_WITHDRAWAL" and payee.kind != AccountKind.CASH:
        return Rejection(Reason.AG01, "a cash withdrawal must be paid to a bank's cash account")
    if payment_type == "EGOV" and payee.kind != AccountKind.GOVERNMENT:
        return Rejection(Reason.AG01, "an e-government payment must go to a government account")
    if p.get("egov_service") == VIGNETTE and payment_type != "EGOV":
        return Rejection(Reason.AG01, "a vignette is paid as an EGOV payment")
    return None


@dataclass
class ValidatorContext:
    """What the batch's rules read: its accounts, references and payments, the banks."""

    accounts: dict[str, AccountView]
    references: set[tuple[str, str]]  # (bank, reference) already taken
    payments: set[str]  # payment ids already used
    banks: frozenset[str]
    limits: Limits
    reference: ReferenceBook | None = None  # limits by event time, when they change

    def limits_at(self, moment: datetime) -> Limits:
        return self.limits if self.reference is None else self.reference.limits_at(moment)

    def absorb(self, decision: Decision) -> None:
        for row in decision.writes:
            if isinstance(row, NewPayment):  # a step names a payment, it makes none
                self.payments.add(row.payment_id)
            elif isinstance(row, ReferenceTaken):
                self.references.add((row.bank_code, row.bank_reference))


class Validator(StageDefaults):
    """Stage: payments.initiated -> payments.validated | payments.rejected | steps-refused.

    payments.initiated carries the payments banks make and the steps they ask of them.
    """

    name = NAME

    def __init__(
        self, settings: Settings, limits: Limits | None = None, gate: SignatureGate | None = None
    ):
        self.settings = settings
        self._fixed = None if limits is None else ReferenceBook.fixed(FeeSchedule(), limits)
        self._reference = ReferenceRefresher(
            settings.reference_refresh_ms / 1000, settings.reference_notice_s
        )
        self.gate = gate or SignatureGate()  # the processor checks signatures before decoding

    def input_topics(self) -> list[str]:
        return [PAYMENT_INITIATED.topic(self.settings)]

    def load(self, conn: Connection, batch: Sequence[Inbound]) -> ValidatorContext:
        records = [i.record for i in batch]
        book = self._fixed or self._reference.current(conn, latest_occurred_at(records))
        numbers = {r[k] for r in records for k in ("payer_account", "payee_account") if k in r}
        a = Account.__table__
        accounts = {
            row.number: AccountView(row.number, row.bank_code, row.kind, row.currency, row.status)
            for row in select_in(
                conn, select(a.c.number, a.c.bank_code, a.c.kind, a.c.currency, a.c.status),
                a.c.number, numbers,
            )
        }  # fmt: skip
        refs = {(EVENTS[i.event_type].acting_bank(i.record), i.record["bank_reference"])
                for i in batch}  # fmt: skip
        b = BankReference.__table__
        known_refs = {
            (row.bank_code, row.bank_reference)
            for row in select_in(
                conn, select(b.c.bank_code, b.c.bank_reference), b.c.bank_reference,
                {ref for _, ref in refs},
            )
            if (row.bank_code, row.bank_reference) in refs
        }  # fmt: skip
        p = Payment.__table__
        payments = {
            row.payment_id
            for row in select_in(
                conn, select(p.c.payment_id), p.c.payment_id, {r["payment_id"] for r in records}
            )
        }
        banks = frozenset(conn.execute(select(Bank.code)).scalars())
        return ValidatorContext(accounts, known_refs, payments, banks, book.limits[0], book)

    def decide(self, inbound: Inbound, ctx: ValidatorContext) -> Decision | Refusal:
        p = inbound.record
        if inbound.event_type not in (PAYMENT_INITIATED.name, PAYMENT_STEP_REQUESTED.name):
            return Refusal("unexpected_event", f"{inbound.event_type} on {inbound.topic}")
        # The gate put the bank's ids in its namespace, each part checked (engine.ids); the
        # switch's ids must still fit the ledger's columns.
        if not 0 < len(p["payment_id"]) <= SWITCH_ID_MAX_CHARS or not (
            0 < len(p["event_id"]) <= SWITCH_ID_MAX_CHARS
        ):
            return Refusal(
                "malformed_id",
                f"event_id and payment_id must be 1 to {SWITCH_ID_MAX_CHARS} characters",
            )
        if inbound.event_type == PAYMENT_STEP_REQUESTED.name:
            return self._step(inbound, ctx)
        if p["payment_id"] in ctx.payments:
            return Refusal(
                "payment_id_reused",
                f"payment_id {p['payment_id'][:64]} was already used by another event",
            )
        rejection = self._rules(inbound, ctx)
        writes: list[Write] = [
            _new_payment(p, rejection, inbound.signature),
            _transition(p, rejection),
        ]
        if rejection is None:
            writes.append(ReferenceTaken(p["payer_bank"], p["bank_reference"], p["payment_id"]))
        iso = _iso_ids(p)
        if iso is not None:
            writes.insert(1, iso)
        event, record = _event(p, rejection)
        return Decision(
            outcome=Outcome.VALIDATED if rejection is None else Outcome.REJECTED,
            payment_id=p["payment_id"],
            writes=tuple(writes),
            emits=(Emit(event, record),),
            channel=p["channel"],
            reason=rejection.reason.value if rejection else "",
        )

    def _step(self, inbound: Inbound, ctx: ValidatorContext) -> Decision:
        """A step a bank asks for: judged on its form and its reference here, on the
        payment it names in settlement, where the payment's holds and amounts are.
        """
        s = inbound.record
        rejection = _step_rules(s, inbound.timestamp_ms, self.settings, ctx)
        if rejection is not None:
            refusal = StepRefusal(rejection.reason, rejection.message)
            return refused_step(s, None, refusal)
        record = {
            k: s.get(k) for k in carried_fields(PAYMENT_STEP_REQUESTED, PAYMENT_STEP_VALIDATED)
        }
        record["causation_event_id"] = s["event_id"]
        record["event_id"] = forwarded_id(PAYMENT_STEP_REQUESTED.name, s["event_id"])
        taken = ReferenceTaken(s["sender_bank"], s["bank_reference"], s["payment_id"])
        return Decision(
            Outcome.STEP_VALIDATED, s["payment_id"], writes=(taken,),
            emits=(Emit(PAYMENT_STEP_VALIDATED, record),),
        )  # fmt: skip

    def _rules(self, inbound: Inbound, ctx: ValidatorContext) -> Rejection | None:
        """The first rule that refuses decides."""
        p = inbound.record
        payer = ctx.accounts.get(p["payer_account"])
        payee = ctx.accounts.get(p["payee_account"])
        rejection = (
            check_formats(p)
            or check_amount(p, ctx.limits_at(p["occurred_at"]))
            or check_event_time(p["occurred_at"], inbound.timestamp_ms, self.settings)
            or check_account("payer", p["payer_bank"], p["payer_account"], payer, ctx.banks)
            or check_account("payee", p["payee_bank"], p["payee_account"], payee, ctx.banks)
        )
        if rejection:
            return rejection
        assert payer is not None and payee is not None  # check_account refused otherwise
        rejection = check_parties(p, payer, payee)
        if rejection:
            return rejection
        if (p["payer_bank"], p["bank_reference"]) in ctx.references:
            return Rejection(
                Reason.AM05, f"bank {p['payer_bank']} already sent reference {p['bank_reference']}"
            )
        return None


SWITCH_ONLY = frozenset({Party.SWITCH})  # steps no bank may ask for (an expiry)


def _step_rules(
    s: dict[str, Any], record_ms: int, settings: Settings, ctx: ValidatorContext
) -> Rejection | None:
    """A step's form, its time, its sender, and its reference not used before (AM05)."""
    reference = s["bank_reference"]
    if not 0 < len(reference) <= MAX_REFERENCE_CHARS:
        return Rejection(
            Reason.CH16, f"bank reference must be 1 to {MAX_REFERENCE_CHARS} characters"
        )
    if not 0 < len(s["payer_account"]) <= MAX_ACCOUNT_CHARS:
        return Rejection(Reason.CH16, f"payer_account must be 1 to {MAX_ACCOUNT_CHARS} characters")
    if STEPS[StepKind(s["step"])].who_may_ask == SWITCH_ONLY:
        return Rejection(Reason.AG01, "only the switch expires a hold")
    if s["sender_bank"] not in ctx.banks:
        return Rejection(Reason.RC01, f"sender bank {s['sender_bank'][:8]!r} is unknown")
    late = check_event_time(s["occurred_at"], record_ms, settings)
    if late is not None:
        return late
    if (s["sender_bank"], reference) in ctx.references:
        return Rejection(Reason.AM05, f"bank {s['sender_bank']} already sent reference {reference}")
    return None


def _new_payment(
    p: dict[str, Any], rejection: Rejection | None, evidence: Evidence | None
) -> NewPayment:
    """The payment row, with the bank's proof of origin (non-repudiation) when signed."""
    return NewPayment(
        p["payment_id"], p["event_id"], p["bank_reference"][:MAX_REFERENCE_CHARS],
        p["payer_bank"][:8], p["payer_account"][:34], p["payee_bank"][:8],
        p["payee_account"][:34], p["amount_minor"], p["currency"][:3], p["channel"],
        p["payment_type"], _clip(p.get("merchant_category_code"), 4),
        _clip(p.get("egov_service"), 32), p["occurred_at"],
        PaymentState.REJECTED if rejection else PaymentState.VALIDATED,
        rejection.reason.value if rejection else None,
        rejection.message[:300] if rejection else None,
        evidence.signer if evidence else None, evidence.key_id if evidence else None,
        evidence.signature if evidence else None, evidence.digest if evidence else None,
        p.get("intent") or PaymentIntent.SALE, _clip(p.get("remittance_info"), 140),
    )  # fmt: skip


def _iso_ids(p: dict[str, Any]) -> PaymentIsoIds | None:
    """The payment's ISO 20022 ids and extras (engine.iso), when it came in as ISO 20022.

    A bank's claim, echoed back to it: clipped to what ISO 20022 allows, never trusted.
    """
    ids, extras = p.get("iso") or {}, p.get("iso_extras")
    if not ids and extras is None:
        return None
    return PaymentIsoIds(
        p["payment_id"], _clip(ids.get("msg_id"), 35), _clip(ids.get("msg_name"), 35),
        _clip(ids.get("instr_id"), 35), _clip(ids.get("end_to_end_id"), 35),
        _clip(ids.get("tx_id"), 35), _clip(ids.get("uetr"), 36),
        extras if extras is None or len(extras) <= MAX_ISO_EXTRAS_CHARS else _DROPPED_EXTRAS,
    )  # fmt: skip


_DROPPED_EXTRAS = json.dumps({"dropped": f"over {MAX_ISO_EXTRAS_CHARS} characters"})


def _clip(value: str | None, length: int) -> str | None:
    """An optional text cut to its column's length (the rejection says what was wrong)."""
    return value[:length] if value else None


def _transition(p: dict[str, Any], rejection: Rejection | None) -> Transition:
    return Transition(
        p["payment_id"], None, PaymentState.REJECTED if rejection else PaymentState.VALIDATED,
        rejection.reason.value if rejection else None, NAME, p["event_id"], p["occurred_at"],
    )  # fmt: skip


def _event(p: dict[str, Any], rejection: Rejection | None) -> tuple[EventType, dict[str, Any]]:
    event = PAYMENT_VALIDATED if rejection is None else PAYMENT_REJECTED
    record = {k: p.get(k) for k in carried_fields(PAYMENT_INITIATED, event)}
    if rejection is not None:
        record.update(reason_code=rejection.reason.value, reason_message=rejection.message)
        # Keep what we emit within the schema's sane sizes even for absurd input.
        record["bank_reference"] = p["bank_reference"][:MAX_REFERENCE_CHARS]
    record["causation_event_id"] = p["event_id"]
    record["event_id"] = derived_event_id(p["event_id"], event.name)
    return event, record
