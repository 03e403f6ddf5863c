"""Ledger entries as ISO 20022 reports show them: ``Ntry`` of camt.053 and camt.054.

One ``ledger_entries`` row is one entry, with its posting's time and kind and, for a
payment's posting, the payment's references: ``EndToEndId`` = the bank reference,
``TxId`` = Sakk's payment id without dashes, and ``RmtInf/Ustrd`` = the payer's remittance
information when it sent one. ``ReportEntry10`` is the same type in both messages, so one
builder serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker
from sqlalchemy import Connection, select

from engine.domain import steps as catalog
from engine.iso.amounts import to_decimal_text
from engine.iso.build import compact_id, iso_date, iso_datetime
from engine.ledger.models import LedgerEntry, Payment, Posting, table_of

# Bank transaction sub-family per posting kind (ExternalBankTransactionSubFamily1Code):
# a domestic credit transfer, or the return of one.
PAYMENT_SUB_FAMILY = {
    catalog.PAYMENT_POSTING: catalog.PAYMENT_SUB_FAMILY,
    **{s.posting_kind: s.sub_family for s in catalog.STEPS.values() if s.posting_kind},
}


@dataclass(frozen=True)
class Entry:
    entry_id: int
    account: str
    amount_minor: int  # signed: credit > 0
    currency: str
    booked_at: datetime
    kind: str  # the posting's kind: PAYMENT, CAPTURE, REFUND, RETURN, OPENING, ...
    posting_id: str
    bank_reference: str | None
    payment_id: str | None
    remittance_info: str | None


def read_entries(conn: Connection, *conditions: Any) -> list[Entry]:
    """Entries meeting ``conditions`` (on ledger_entries, postings, payments), in time order."""
    e, p, pay = table_of(LedgerEntry), table_of(Posting), table_of(Payment)
    query = (
        select(e.c.id, e.c.account_number, e.c.amount_minor, e.c.currency, p.c.occurred_at,
               p.c.kind, p.c.posting_id, pay.c.bank_reference, pay.c.payment_id,
               pay.c.remittance_info)
        .select_from(e.join(p, p.c.posting_id == e.c.posting_id)
                     .outerjoin(pay, pay.c.payment_id == p.c.payment_id))
        .where(*conditions)
        .order_by(p.c.occurred_at, e.c.id)
    )  # fmt: skip
    return [
        Entry(r.id, r.account_number, int(r.amount_minor), r.currency, r.occurred_at, r.kind,
              r.posting_id, r.bank_reference, r.payment_id, r.remittance_info)
        for r in conn.execute(query)
    ]  # fmt: skip


def amount_elements(e: ElementMaker, amount_minor: int, currency: str) -> list[etree._Element]:
    """``Amt`` (absolute) and ``CdtDbtInd``: ISO 20022 amounts carry no sign."""
    indicator = "DBIT" if amount_minor < 0 else "CRDT"
    return [e.Amt(to_decimal_text(amount_minor, currency), Ccy=currency), e.CdtDbtInd(indicator)]


def entry_element(e: ElementMaker, entry: Entry) -> etree._Element:
    """One ``Ntry`` (ReportEntry10), booked, with its payment's references."""
    parts = [
        e.NtryRef(str(entry.entry_id)),
        *amount_elements(e, entry.amount_minor, entry.currency),
        e.Sts(e.Cd("BOOK")),
        e.BookgDt(e.DtTm(iso_datetime(entry.booked_at))),
        e.ValDt(e.Dt(iso_date(entry.booked_at.date()))),
        e.BkTxCd(_domain(e, entry)),
    ]
    details = _details(e, entry)
    if details:
        parts.append(e.NtryDtls(e.TxDtls(*details)))
    parts.append(e.AddtlNtryInf(entry.kind))
    return e.Ntry(*parts)


def _domain(e: ElementMaker, entry: Entry) -> etree._Element:
    """``BkTxCd/Domn``: PMNT (received or issued credit transfer) for a payment's postings,
    ACMT (miscellaneous credit or debit) for the others (opening balances)."""
    credit = entry.amount_minor >= 0
    sub_family = PAYMENT_SUB_FAMILY.get(entry.kind)
    if sub_family is not None:
        family = "RCDT" if credit else "ICDT"
        return e.Domn(e.Cd("PMNT"), e.Fmly(e.Cd(family), e.SubFmlyCd(sub_family)))
    family = "MCOP" if credit else "MDOP"
    return e.Domn(e.Cd("ACMT"), e.Fmly(e.Cd(family), e.SubFmlyCd("OTHR")))


def _details(e: ElementMaker, entry: Entry) -> list[etree._Element]:
    refs = []
    if entry.bank_reference:
        refs.append(e.EndToEndId(entry.bank_reference))
    if entry.payment_id:
        refs.append(e.TxId(compact_id(entry.payment_id)))
    details = [e.Refs(*refs)] if refs else []
    if entry.remittance_info:
        details.append(e.RmtInf(e.Ustrd(entry.remittance_info)))
    return details
