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

from sqlalchemy import Connection, and_, func, literal_column, or_, select, union_all
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
        """Every clause of the filter (the search splits the bank and account ones by side)."""
        clauses = self.exact()
        for either in (BankSide(self.bank) if self.bank else None,
                       Last4Side(self.account_last4) if self.account_last4 else None):  # fmt: skip
            if either is not None:
                clauses.append(or_(*(side.clause for side in either.sides())))
        return clauses

    def exact(self) -> list[ColumnElement[bool]]:
        """The clauses about the payment as a whole: ids, state, reason, channel, times."""
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
        if self.since is not None:
            clauses.append(p.c.occurred_at >= self.since)
        if self.until is not None:
            clauses.append(p.c.occurred_at < self.until)
        return clauses


def last4_of(column: Any) -> ColumnElement[str]:
    """An account's last four characters, written as the indexes on them are (0021).

    ``substr(x, length(x) - 3)`` reads the same on SQLite and PostgreSQL, and the ``3``
    is a literal, not a parameter, so SQLite matches the expression to its index.
    """
    return func.substr(column, func.length(column) - literal_column("3"))


@dataclass(frozen=True)
class BankSide:
    """A payment where ``bank`` is the payer's or the payee's bank, as two disjoint sides."""

    bank: str

    def sides(self) -> tuple[Side, Side]:
        p = Payment.__table__
        payee_only = and_(p.c.payee_bank == self.bank, p.c.payer_bank != self.bank)
        return Side(p.c.payer_bank == self.bank, "payer", True), Side(payee_only, "payee", True)


@dataclass(frozen=True)
class Last4Side:
    """A payment whose payer's or payee's account ends in ``digits``, as two disjoint sides."""

    digits: str

    def sides(self) -> tuple[Side, Side]:
        p = Payment.__table__
        payer, payee = last4_of(p.c.payer_account), last4_of(p.c.payee_account)
        return (Side(payer == self.digits, "payer", False),
                Side(and_(payee == self.digits, payer != self.digits), "payee", False))  # fmt: skip


@dataclass(frozen=True)
class Side:
    """One side of a "payer's or payee's" condition, and whether it is about the bank."""

    clause: ColumnElement[bool]
    party: str  # payer | payee
    bank: bool  # the bank's side (else an account's last four digits)


@dataclass(frozen=True)
class Branch:
    """One walk of the search: its clauses and the index it walks newest first."""

    clauses: list[ColumnElement[bool]]
    index: str | None  # None: the primary key


def _index(which: PaymentFilter, side: Side | None) -> str | None:
    """The index a branch walks (0013, 0021): the one that finds its rows soonest.

    Named for SQLite, whose planner knows no row counts unless ``ANALYZE`` ran and could
    take a bank's index for a rare state; PostgreSQL's planner chooses by its statistics.
    """
    if which.payment_id is not None:
        return None
    if which.bank_reference is not None:
        return "ix_payments_bank_reference"
    if side is not None and not side.bank:
        return f"ix_payments_{side.party}_last4"
    if which.reason_code is not None:  # rejections and failures: a few in a hundred
        return "ix_payments_reason_occurred"
    narrowed = "state" if which.state else "channel" if which.channel else ""
    if side is not None:
        return f"ix_payments_{side.party}_bank_{narrowed or 'occurred'}"
    return f"ix_payments_{narrowed}_occurred" if narrowed else "ix_payments_occurred"


def _branches(which: PaymentFilter, audience: Audience) -> list[Branch]:
    """The search as disjoint branches, each walking one index newest first.

    "payer's or payee's" cannot walk one index in time order, so the most selective of
    those conditions (an account's last four digits, then the bank asked for, then the
    audience's own bank) is split into its payer's side and its payee's side; each side
    walks its own ``(..., occurred_at, payment_id)`` index and stops after a page, and
    the others stay as filters.
    """
    ors: list[Last4Side | BankSide] = []
    if which.account_last4 is not None:
        ors.append(Last4Side(which.account_last4))
    if which.bank is not None:
        ors.append(BankSide(which.bank))
    if not audience.sees_every_bank():
        ors.append(BankSide(str(audience.bank_code)))
    exact = which.exact()
    either = [or_(*(side.clause for side in o.sides())) for o in ors]
    if not ors or which.payment_id is not None or which.bank_reference is not None:
        return [Branch(exact + either, _index(which, None))]  # one row or a few: no walk
    return [Branch([*exact, side.clause, *either[1:]], _index(which, side))
            for side in ors[0].sides()]  # fmt: skip


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
    after: list[ColumnElement[bool]] = []
    if cursor is not None:
        at, payment_id = decode_cursor(SEARCH, cursor)
        before = or_(p.c.occurred_at < at, and_(p.c.occurred_at == at, p.c.payment_id < payment_id))
        after = [p.c.occurred_at <= at, before]  # the first bounds the index walk
    newest_first = (p.c.occurred_at.desc(), p.c.payment_id.desc())
    parts = [
        select(*_columns())
        .where(*branch.clauses, *after)
        .order_by(*newest_first)
        .limit(limit + 1)
        .with_hint(p, f"INDEXED BY {branch.index}" if branch.index else "", "sqlite")
        for branch in _branches(which, audience)
    ]
    query: Any = parts[0]
    if len(parts) > 1:
        both = union_all(*(select(part.subquery()) for part in parts)).subquery()
        query = select(both).order_by(both.c.occurred_at.desc(), both.c.payment_id.desc())
        query = query.limit(limit + 1)
    views = [_view(r, audience) for r in conn.execute(query)]
    return page_of(SEARCH, views, limit, lambda v: (v.occurred_at, v.payment_id))
