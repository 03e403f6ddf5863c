"""The validator: decides whether an initiated payment may go to settlement.

Each rule is a small function returning a :class:`Rejection` or ``None``; the
first rule that refuses decides. Decisions use only the event, its Kafka
record time and the reference data, never the wall clock, so a replay decides
the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select

from consumers.signature_gate import SignatureGate
from engine.config import Settings
from engine.ledger.models import (
    Account,
    AccountKind,
    AccountStatus,
    Bank,
    BankReference,
    Payment,
    PaymentState,
    PaymentTransition,
)
from engine.ledger.reference import Limits, read_limits
from engine.masking import mask_account
from engine.money import MAX_AMOUNT_MINOR, format_minor, is_known_currency
from engine.reasons import Reason
from engine.runtime import DeadLetterReason, EndsWithTransaction, Handled, Inbound, derived_event_id
from engine.trust.signing import Evidence

NAME = "validator"
MAX_REFERENCE_CHARS = 35  # ISO 20022 Max35Text
MAX_ID_CHARS = 64
MAX_ACCOUNT_CHARS = 34  # IBAN length limit
PAYER_KINDS = frozenset({AccountKind.CUSTOMER, AccountKind.MERCHANT, AccountKind.GOVERNMENT})
VIGNETTE = "VIGNETTE"


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
class _BatchContext:
    accounts: dict[str, AccountView]
    references: set[tuple[str, str]]
    payments: set[str]
    banks: frozenset[str]


class Validator(EndsWithTransaction):
    """Stage: payments.initiated -> payments.validated | payments.rejected."""

    name = NAME

    def __init__(
        self, settings: Settings, limits: Limits | None = None, gate: SignatureGate | None = None
    ):
        self.settings = settings
        self._limits = limits
        self.gate = gate or SignatureGate()  # the runtime checks signatures before decoding

    def input_topics(self) -> list[str]:
        return [self.settings.topic("initiated")]

    def process(self, conn: Connection, batch: Sequence[Inbound]) -> list[Handled]:
        if self._limits is None:
            self._limits = read_limits(conn)
        ctx = self._load_context(conn, batch)
        decisions, payments, references, transitions = [], [], [], []
        for inbound in batch:
            p = inbound.record
            if inbound.event_type != "PaymentInitiated":
                raise DeadLetterReason(
                    "unexpected_event", f"{inbound.event_type} on {inbound.topic}"
                )
            if not 0 < len(p["payment_id"]) <= MAX_ID_CHARS or len(p["event_id"]) > MAX_ID_CHARS:
                raise DeadLetterReason(
                    "malformed_id",
                    f"event_id and payment_id must be 1 to {MAX_ID_CHARS} characters",
                )
            if p["payment_id"] in ctx.payments:
                raise DeadLetterReason(
                    "payment_id_reused",
                    f"payment_id {p['payment_id'][:64]} was already used by another event",
                )
            ctx.payments.add(p["payment_id"])
            rejection = self._decide(inbound, ctx)
            key = (p["payer_bank"], p["bank_reference"])
            if rejection is None:
                ctx.references.add(key)
                references.append(
                    {"bank_code": key[0], "bank_reference": key[1], "payment_id": p["payment_id"]}
                )
            payments.append(_payment_row(p, rejection) | _signature_columns(inbound.signature))
            transitions.append(_transition_row(p, rejection))
            decisions.append(_decision(p, rejection))
        conn.execute(insert(Payment), payments)
        if references:
            conn.execute(insert(BankReference), references)
        conn.execute(insert(PaymentTransition), transitions)
        return decisions

    def _decide(self, inbound: Inbound, ctx: _BatchContext) -> Rejection | None:
        p = inbound.record
        rejection = (
            check_formats(p)
            or check_amount(p, self._limits or Limits())
            or check_event_time(p["occurred_at"], inbound.timestamp_ms, self.settings)
            or check_account(
                "payer",
                p["payer_bank"],
                p["payer_account"],
                ctx.accounts.get(p["payer_account"]),
                ctx.banks,
            )
            or check_account(
                "payee",
                p["payee_bank"],
                p["payee_account"],
                ctx.accounts.get(p["payee_account"]),
                ctx.banks,
            )
        )
        if rejection:
            return rejection
        rejection = check_parties(
            p, ctx.accounts[p["payer_account"]], ctx.accounts[p["payee_account"]]
        )
        if rejection:
            return rejection
        if (p["payer_bank"], p["bank_reference"]) in ctx.references:
            return Rejection(
                Reason.AM05, f"bank {p['payer_bank']} already sent reference {p['bank_reference']}"
            )
        return None

    def _load_context(self, conn: Connection, batch: Sequence[Inbound]) -> _BatchContext:
        records = [i.record for i in batch]
        numbers = {r[k] for r in records for k in ("payer_account", "payee_account")}
        accounts = {
            row.number: AccountView(row.number, row.bank_code, row.kind, row.currency, row.status)
            for row in _select_in(conn, Account.__table__, "number", numbers)
        }
        refs = {(r["payer_bank"], r["bank_reference"]) for r in records}
        table = BankReference.__table__
        known_refs = {
            (row.bank_code, row.bank_reference)
            for row in _select_in(conn, table, "bank_reference", {ref for _, ref in refs})
            if (row.bank_code, row.bank_reference) in refs
        }
        payment_ids = {r["payment_id"] for r in records}
        payments = {
            row.payment_id for row in _select_in(conn, Payment.__table__, "payment_id", payment_ids)
        }
        banks = frozenset(conn.execute(select(Bank.code)).scalars())
        return _BatchContext(accounts, known_refs, payments, banks)


def _select_in(conn: Connection, table: Any, column: str, values: Iterable[str]) -> list[Any]:
    values = list(values)
    rows: list[Any] = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        rows.extend(conn.execute(select(table).where(table.c[column].in_(chunk))))
    return rows


def _payment_row(p: dict[str, Any], rejection: Rejection | None) -> dict[str, Any]:
    return {
        "payment_id": p["payment_id"], "initiated_event_id": p["event_id"],
        "bank_reference": p["bank_reference"][:MAX_REFERENCE_CHARS],
        "payer_bank": p["payer_bank"][:8], "payer_account": p["payer_account"][:34],
        "payee_bank": p["payee_bank"][:8], "payee_account": p["payee_account"][:34],
        "amount_minor": p["amount_minor"], "currency": p["currency"][:3], "channel": p["channel"],
        "payment_type": p["payment_type"],
        "merchant_category_code": _clip(p.get("merchant_category_code"), 4),
        "egov_service": _clip(p.get("egov_service"), 32),
        "occurred_at": p["occurred_at"],
        "state": PaymentState.REJECTED if rejection else PaymentState.VALIDATED,
        "reason_code": rejection.reason.value if rejection else None,
        "reason_message": rejection.message[:300] if rejection else None,
        "fee_minor": None, "posting_id": None, "settlement_window": None,
    }  # fmt: skip


def _signature_columns(evidence: Evidence | None) -> dict[str, Any]:
    """The bank's proof of origin, kept with the payment (non-repudiation)."""
    if evidence is None:
        return dict.fromkeys(SIGNATURE_COLUMNS)
    return {
        "signer_bank": evidence.signer, "signer_key_id": evidence.key_id,
        "signature": evidence.signature, "signed_digest": evidence.digest,
    }  # fmt: skip


SIGNATURE_COLUMNS = ("signer_bank", "signer_key_id", "signature", "signed_digest")


def _clip(value: str | None, length: int) -> str | None:
    """An optional text cut to its column's length (the rejection says what was wrong)."""
    return value[:length] if value else None


def _transition_row(p: dict[str, Any], rejection: Rejection | None) -> dict[str, Any]:
    return {
        "payment_id": p["payment_id"], "from_state": None,
        "to_state": PaymentState.REJECTED if rejection else PaymentState.VALIDATED,
        "reason_code": rejection.reason.value if rejection else None,
        "consumer": NAME, "event_id": p["event_id"], "occurred_at": p["occurred_at"],
    }  # fmt: skip


COMMON_FIELDS = (
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


def _decision(p: dict[str, Any], rejection: Rejection | None) -> Handled:
    event = {k: p[k] for k in COMMON_FIELDS}
    event["causation_event_id"] = p["event_id"]
    if rejection is None:
        event_type = "PaymentValidated"
        event.update(
            payment_type=p["payment_type"],
            merchant_category_code=p.get("merchant_category_code"),
            egov_service=p.get("egov_service"),
        )
    else:
        event_type = "PaymentRejected"
        event.update(reason_code=rejection.reason.value, reason_message=rejection.message)
        # Keep what we emit within the schema's sane sizes even for absurd input.
        event["bank_reference"] = event["bank_reference"][:MAX_REFERENCE_CHARS]
    event["event_id"] = derived_event_id(p["event_id"], event_type)
    return Handled(
        outcome="validated" if rejection is None else "rejected",
        payment_id=p["payment_id"],
        events=[(event_type, event)],
        channel=p["channel"],
        reason=rejection.reason.value if rejection else "",
    )
