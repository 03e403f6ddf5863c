"""camt.053.001.08 end-of-day statements of one account, from the ledger.

Entries are the account's ``ledger_entries`` whose posting's business time falls on the
day (UTC, as settlement windows are), each with its payment's references (``EndToEndId``
= the bank reference, ``TxId`` = Sakk's payment id without dashes, ``RmtInf/Ustrd`` = its
remittance information; :mod:`engine.iso.entries`). The opening balance
is the sum of the entries before the day; the closing balance is opening plus the day's
entries, and it is checked against the ledger's balance (``engine.ledger.balances``)
less the entries after the day: a statement that does not add up is never written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from lxml import etree
from lxml.builder import ElementMaker
from sqlalchemy import Connection, Engine, func, select

from engine.iso.amounts import to_decimal_text
from engine.iso.build import (
    financial_institution,
    iso_date,
    iso_datetime,
    maker,
    message_id,
    serialize,
)
from engine.iso.directory import BankDirectory
from engine.iso.entries import Entry, amount_elements, entry_element, read_entries
from engine.iso.schemas import CAMT_053
from engine.ledger.balances import balance_of
from engine.ledger.models import Account, LedgerEntry, Posting, table_of


class StatementError(ValueError):
    """No statement can be written: unknown account, or a ledger that does not add up."""


@dataclass(frozen=True)
class Statement:
    account: str
    bank_code: str
    currency: str
    day: date
    opening_minor: int
    entries: Sequence[Entry]

    @property
    def closing_minor(self) -> int:
        return self.opening_minor + sum(e.amount_minor for e in self.entries)


def read_statement(engine: Engine, account: str, day: date) -> Statement:
    """The account's statement for ``day``, read in one snapshot (repeatable on PostgreSQL)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return _read(conn, account, day)


def _read(conn: Connection, number: str, day: date) -> Statement:
    accounts = table_of(Account)
    row = conn.execute(
        select(accounts.c.bank_code, accounts.c.currency).where(accounts.c.number == number)
    ).one_or_none()
    if row is None:
        raise StatementError(f"no account {number[:6]}… in the ledger")
    start = datetime.combine(day, time(), UTC)
    end = start + timedelta(days=1)
    opening = _sum(conn, number, Posting.occurred_at < start)
    later = _sum(conn, number, Posting.occurred_at >= end)
    entries = read_entries(conn, LedgerEntry.account_number == number,
                           Posting.occurred_at >= start, Posting.occurred_at < end)  # fmt: skip
    statement = Statement(number, row.bank_code, row.currency, day, opening, entries)
    ledger = balance_of(conn, number)
    if statement.closing_minor + later != ledger:
        raise StatementError(
            f"ledger does not add up for the account: closing {statement.closing_minor} + "
            f"{later} later != balance {ledger}"
        )
    return statement


def _sum(conn: Connection, number: str, when: object) -> int:
    e, p = table_of(LedgerEntry), table_of(Posting)
    total = conn.execute(
        select(func.coalesce(func.sum(e.c.amount_minor), 0))
        .select_from(e.join(p, p.c.posting_id == e.c.posting_id))
        .where(e.c.account_number == number, when)  # type: ignore[arg-type]
    ).scalar_one()
    return int(total)


def build_camt053(
    statement: Statement, created_at: datetime, bics: Mapping[str, str] | None = None
) -> bytes:
    """The statement as a camt.053.001.08 document, validated against its XSD."""
    e, s, bics = maker(CAMT_053), statement, bics or {}
    ident = message_id("C53", s.account, s.day.isoformat())
    day_start = datetime.combine(s.day, time(), UTC)
    stmt = e.Stmt(
        e.Id(ident),
        e.CreDtTm(iso_datetime(created_at)),
        e.FrToDt(e.FrDtTm(iso_datetime(day_start)),
                 e.ToDtTm(iso_datetime(day_start + timedelta(days=1, milliseconds=-1)))),
        e.Acct(e.Id(e.Othr(e.Id(s.account))), e.Ccy(s.currency),
               e.Svcr(financial_institution(e, s.bank_code, bics))),
        _balance(e, "OPBD", s.opening_minor, s),
        _balance(e, "CLBD", s.closing_minor, s),
        _summary(e, s),
        *(entry_element(e, entry) for entry in s.entries),
    )  # fmt: skip
    root = e.Document(e.BkToCstmrStmt(e.GrpHdr(e.MsgId(ident), e.CreDtTm(iso_datetime(created_at))),
                                      stmt))  # fmt: skip
    return serialize(root, CAMT_053)


def statement_document(engine: Engine, account: str, day: date, created_at: datetime) -> bytes:
    """Read and build in one call: what ``sakk iso statement`` writes."""
    statement = read_statement(engine, account, day)
    with engine.connect() as conn:
        bics = BankDirectory.load(conn).bic_of
    return build_camt053(statement, created_at, bics)


def _balance(e: ElementMaker, code: str, amount_minor: int, s: Statement) -> etree._Element:
    return e.Bal(e.Tp(e.CdOrPrtry(e.Cd(code))), *amount_elements(e, amount_minor, s.currency),
                 e.Dt(e.Dt(iso_date(s.day))))  # fmt: skip


def _summary(e: ElementMaker, s: Statement) -> etree._Element:
    credits = [x.amount_minor for x in s.entries if x.amount_minor >= 0]
    debits = [-x.amount_minor for x in s.entries if x.amount_minor < 0]
    net = sum(credits) - sum(debits)

    def total(amounts: list[int]) -> list[etree._Element]:
        return [e.NbOfNtries(str(len(amounts))), e.Sum(to_decimal_text(sum(amounts), s.currency))]

    return e.TxsSummry(
        e.TtlNtries(*total(credits + debits), e.TtlNetNtry(*_net(e, net, s.currency))),
        e.TtlCdtNtries(*total(credits)),
        e.TtlDbtNtries(*total(debits)),
    )


def _net(e: ElementMaker, net: int, currency: str) -> list[etree._Element]:
    return [e.Amt(to_decimal_text(net, currency)), e.CdtDbtInd("DBIT" if net < 0 else "CRDT")]
