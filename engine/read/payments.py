"""Payments as an audience may see them: one by id, and a search with keyset paging.

The search is the console's (``PaymentFilter``: bank reference, payment id, bank,
an account's last four digits, state, reason code, channel, a time range), newest
first, ``MAX_PAGE`` at most a page. A bank audience finds only payments where it is
the payer's or the payee's bank, whatever the filter says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from engine.ledger.models import Payment
from engine.masking import mask_text
from engine.read.audience import Audience
from engine.read.exceptions import PaymentNotFoundError, ReadError
from engine.read.paging import DEFAULT_PAGE, Page, check_limit, decode_cursor, page_of
from engine.times import as_utc

SEARCH = "payments"  # the cursor's query name
LAST_DIGITS = 4


@dataclass(frozen=True)
class PaymentView:
    """A payment's current state; accounts as the audience may see them, never signatures."""

    payment_id: str
    bank_reference: str
    payer_bank: str
    payer_account: str
    payee_bank: str
    payee_account: str
    amount_minor: int
    currency: str
    channel: str
    payment_type: str
    intent: str
    state: str
    reason_code: str | None
    reason_message: str | None
    fee_minor: int | None
    captured_minor: int | None
    refunded_minor: int
    occurred_at: datetime
    settlement_window: str | None
    remittance_info: str | None


def _view(row: Any, audience: Audience) -> PaymentView:
    whole = audience.unmasked()
    return PaymentView(
        row.payment_id, row.bank_reference,
        row.payer_bank, str(audience.account(row.payer_account, row.payer_bank)),
        row.payee_bank, str(audience.account(row.payee_account, row.payee_bank)),
        int(row.amount_minor), row.currency, row.channel, row.payment_type, row.intent,
        row.state, row.reason_code,
        _text(row.reason_message, whole),
        row.fee_minor, row.captured_minor, int(row.refunded_minor or 0), as_utc(row.occurred_at),
        row.settlement_window,
        _text(row.remittance_info, whole),
    )  # fmt: skip


def _text(value: str | None, whole: bool) -> str | None:
    """Free text (a bank may quote an account in it): masked unless the audience sees all."""
    return value if whole or value is None else mask_text(value)


def _columns() -> list[Any]:
    p = Payment.__table__
    return [p.c[name] for name in PaymentView.__dataclass_fields__]


def visible_to(audience: Audience) -> list[ColumnElement[bool]]:
    """The clauses that keep a bank audience to its own payments (none for the others)."""
    if audience.sees_every_bank():
        return []
    p = Payment.__table__
    return [or_(p.c.payer_bank == audience.bank_code, p.c.payee_bank == audience.bank_code)]


def get_payment(conn: Connection, audience: Audience, payment_id: str) -> PaymentView:
    """One payment; another bank's is as missing as one that never was."""
    p = Payment.__table__
    row = conn.execute(
        select(*_columns()).where(p.c.payment_id == payment_id, *visible_to(audience))
    ).one_or_none()
    if row is None:
        raise PaymentNotFoundError(f"no payment {payment_id} in the ledger")
    return _view(row, audience)


@dataclass(frozen=True)
class PaymentFilter:
    """What a search asks; every field given narrows it (all of them, AND)."""

    payment_id: str | None = None
    bank_reference: str | None = None  # the payer bank's own reference
    bank: str | None = None  # payer's or payee's bank
    account_last4: str | None = None  # of the payer's or the payee's account
    state: str | None = None
    reason_code: str | None = None
    channel: str | None = None
    since: datetime | None = None  # occurred at or after
    until: datetime | None = None  # occurred before

    def __post_init__(self) -> None:
        last4 = self.account_last4
        if last4 is not None and not (len(last4) == LAST_DIGITS and last4.isdigit()):
            raise ReadError(f"account_last4 {last4!r}: expected {LAST_DIGITS} digits")
        if self.since and self.until and self.since >= self.until:
            raise ReadError("since must be before until")

    def where(self) -> list[ColumnElement[bool]]:
        p = Payment.__table__
        equal = {
            "payment_id": self.payment_id,
            "bank_reference": self.bank_reference,
            "state": self.state,
            "reason_code": self.reason_code,
            "channel": self.channel,
        }
        clauses: list[ColumnElement[bool]] = [
            p.c[name] == value for name, value in equal.items() if value is not None
        ]  # fmt: skip
        if self.bank is not None:
            clauses.append(or_(p.c.payer_bank == self.bank, p.c.payee_bank == self.bank))
        if self.account_last4 is not None:
            ends = "%" + self.account_last4
            clauses.append(or_(p.c.payer_account.like(ends), p.c.payee_account.like(ends)))
        if self.since is not None:
            clauses.append(p.c.occurred_at >= self.since)
        if self.until is not None:
            clauses.append(p.c.occurred_at < self.until)
        return clauses


def search_payments(
    conn: Connection,
    audience: Audience,
    which: PaymentFilter,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Page[PaymentView]:
    """Payments matching ``which`` that ``audience`` may see, newest first, a page at a time."""
    check_limit(limit)
    p = Payment.__table__
    query = select(*_columns()).where(*which.where(), *visible_to(audience))
    if cursor is not None:
        at, payment_id = decode_cursor(SEARCH, cursor)
        query = query.where(
            or_(p.c.occurred_at < at, and_(p.c.occurred_at == at, p.c.payment_id < payment_id))
        )
    query = query.order_by(p.c.occurred_at.desc(), p.c.payment_id.desc()).limit(limit + 1)
    views = [_view(r, audience) for r in conn.execute(query)]
    return page_of(SEARCH, views, limit, lambda v: (v.occurred_at, v.payment_id))
