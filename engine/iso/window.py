"""A settlement window's report for the banks, as camt.053.001.08 position statements.

One ``Stmt`` per bank and currency, for the bank's settlement position at the switch
(account ``<bank>-SETTLEMENT-<currency>``, serviced by the switch) over the window:

- ``Bal`` ``OPBD`` = 0 at the window's start: positions are netted per window, so each
  window starts flat;
- ``Bal`` ``CLBD`` (closed window, final) or ``ITBD`` (open window, provisional, dated when
  the report was made) = the net position: ``CRDT`` when the switch owes the bank (its
  customers were paid more than they paid out), ``DBIT`` when the bank owes;
- ``TxsSummry``: the postings counted, gross credits and gross debits;
- ``AddtlStmtInf``: the window, its status, postings carried in from closed windows.

The figures are those of ``engine.audit.windows.window_report`` (the same rules as
``sakk settlement report``: late postings carried into the next open window). A closed
window whose ledger no longer matches what its close recorded is not exported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from lxml import etree
from lxml.builder import ElementMaker
from sqlalchemy import Connection, Engine, select

from engine.audit.windows import PositionLine, Window, WindowReport, window_report
from engine.events import SWITCH
from engine.iso.amounts import to_decimal_text
from engine.iso.build import financial_institution, iso_datetime, maker, message_id, serialize
from engine.iso.directory import BankDirectory
from engine.iso.entries import amount_elements
from engine.iso.schemas import CAMT_053
from engine.ledger.models import Account, AccountKind, Bank, table_of
from engine.ledger.reference import internal_account


class WindowExportError(ValueError):
    """The window cannot be exported: unknown bank, nothing in it, or a ledger that moved."""


def parse_window(label: str) -> Window:
    """``2026-11-26`` (a day) or ``2026-11-26T06:00Z/6h`` (a label with its length)."""
    hours = int(label.rpartition("/")[2].rstrip("h")) if "/" in label else 24
    return Window.parse(label, hours)


def window_document(
    engine: Engine, label: str, created_at: datetime, bank: str | None = None
) -> bytes:
    """The window's positions (all banks, or ``bank``'s) as one camt.053 document."""
    window = parse_window(label)
    with engine.connect() as conn:
        report = window_report(conn, window)
        bics = BankDirectory.load(conn).bic_of
        lines = [x for x in report.lines if bank is None or x.bank_code == bank]
        if bank is not None and not lines:  # told all the same: a flat position
            lines = _flat_lines(conn, bank)
    problems = report.mismatches()
    if problems:
        raise WindowExportError(f"window {window.label}: {problems[0]}")
    if not lines:
        raise WindowExportError(f"window {window.label} has no interbank postings")
    return build_window_camt053(report, lines, created_at, bics)


def _flat_lines(conn: Connection, bank: str) -> list[PositionLine]:
    accounts, banks = table_of(Account), table_of(Bank)
    rows = conn.execute(
        select(banks.c.name, accounts.c.currency)
        .join(accounts, accounts.c.bank_code == banks.c.code)
        .where(banks.c.code == bank, accounts.c.kind == AccountKind.SETTLEMENT.value)
        .order_by(accounts.c.currency)
    ).all()
    if not rows:
        raise WindowExportError(f"no bank {bank!r} with a settlement account in the ledger")
    return [PositionLine(bank, r.name, r.currency) for r in rows]


def build_window_camt053(
    report: WindowReport,
    lines: Sequence[PositionLine],
    created_at: datetime,
    bics: Mapping[str, str] | None = None,
) -> bytes:
    """One position statement per line of ``report``, validated against the camt.053 XSD."""
    e, bics = maker(CAMT_053), bics or {}
    window = report.window
    banks = sorted({x.bank_code for x in lines})
    ident = message_id("W53", window.label, *banks)
    statements = [_statement(e, report, line, created_at, bics) for line in lines]
    root = e.Document(e.BkToCstmrStmt(e.GrpHdr(e.MsgId(ident), e.CreDtTm(iso_datetime(created_at))),
                                      *statements))  # fmt: skip
    return serialize(root, CAMT_053)


def _statement(
    e: ElementMaker,
    report: WindowReport,
    line: PositionLine,
    created_at: datetime,
    bics: Mapping[str, str],
) -> etree._Element:
    window, cur = report.window, line.currency
    last = window.end - timedelta(milliseconds=1)
    closing = ("CLBD", last) if report.closed else ("ITBD", min(created_at, last))
    status = "CLOSED" if report.closed else "OPEN (provisional)"
    return e.Stmt(
        e.Id(message_id("W53S", window.label, line.bank_code, cur)),
        e.CreDtTm(iso_datetime(created_at)),
        e.FrToDt(e.FrDtTm(iso_datetime(window.start)), e.ToDtTm(iso_datetime(last))),
        e.Acct(e.Id(e.Othr(e.Id(internal_account(line.bank_code, AccountKind.SETTLEMENT, cur)))),
               e.Ccy(cur), e.Svcr(financial_institution(e, SWITCH, bics))),
        _balance(e, "OPBD", 0, cur, window.start),
        _balance(e, closing[0], line.net_minor, cur, closing[1]),
        e.TxsSummry(
            e.TtlNtries(e.NbOfNtries(str(line.postings)),
                        e.TtlNetNtry(e.Amt(to_decimal_text(line.net_minor, cur)),
                                     e.CdtDbtInd(_direction(line.net_minor)))),
            e.TtlCdtNtries(e.Sum(to_decimal_text(line.gross_credits_minor, cur))),
            e.TtlDbtNtries(e.Sum(to_decimal_text(line.gross_debits_minor, cur))),
        ),
        e.AddtlStmtInf(
            f"Settlement window {window.label} ({window.hours}h), {status}: net position of "
            f"bank {line.bank_code} in {cur}; {line.postings} postings, "
            f"{line.carried_in_postings} carried in from closed windows"
        ),
    )  # fmt: skip


def _balance(
    e: ElementMaker, code: str, amount_minor: int, currency: str, at: datetime
) -> etree._Element:
    return e.Bal(e.Tp(e.CdOrPrtry(e.Cd(code))), *amount_elements(e, amount_minor, currency),
                 e.Dt(e.DtTm(iso_datetime(at))))  # fmt: skip


def _direction(amount_minor: int) -> str:
    return "DBIT" if amount_minor < 0 else "CRDT"
