"""camt.054.001.08 debit and credit notifications: one ``Ntfctn`` per ledger entry.

A posting's entries (the payer's debit, the settlement accounts, the payee's credit, the
fee) each become one notification to the account's holder, through its bank: the
account, its currency and its bank (``Acct/Svcr``), and the entry as a camt.053
statement shows it (:mod:`engine.iso.entries`: references and remittance information).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from engine.iso.build import financial_institution, iso_datetime, maker, message_id, serialize
from engine.iso.directory import BankDirectory
from engine.iso.entries import Entry, entry_element, read_entries
from engine.iso.schemas import CAMT_054
from engine.ledger.models import Account, LedgerEntry, Posting, table_of


class EntryNotFoundError(ValueError):
    """Nothing to notify: no such posting or entry (on that account)."""


def read_posting_entries(
    conn: Connection,
    posting_id: str | None = None,
    entry_id: int | None = None,
    account: str | None = None,
) -> list[Entry]:
    """The entries of one posting, or one entry; only ``account``'s when given."""
    if (posting_id is None) == (entry_id is None):
        raise ValueError("name a posting or an entry, not both")
    conditions = [Posting.posting_id == posting_id] if posting_id else [LedgerEntry.id == entry_id]
    if account is not None:
        conditions.append(LedgerEntry.account_number == account)
    entries = read_entries(conn, *conditions)
    if not entries:
        named = f"posting {posting_id}" if posting_id else f"entry {entry_id}"
        where = " on that account" if account else ""
        raise EntryNotFoundError(f"no ledger entry for {named}{where}")
    return entries


def build_camt054(
    entries: Sequence[Entry],
    created_at: datetime,
    bank_of: Mapping[str, str],
    bics: Mapping[str, str] | None = None,
) -> bytes:
    """One notification per entry, validated against its XSD.

    ``bank_of``: account number to bank code (the account's servicer).
    """
    if not entries:
        raise ValueError("a camt.054 notifies at least one entry")
    e, bics = maker(CAMT_054), bics or {}
    created = iso_datetime(created_at)
    notifications = [
        e.Ntfctn(
            e.Id(message_id("C54N", str(entry.entry_id))),
            e.CreDtTm(created),
            e.Acct(
                e.Id(e.Othr(e.Id(entry.account))),
                e.Ccy(entry.currency),
                e.Svcr(financial_institution(e, bank_of[entry.account], bics)),
            ),
            entry_element(e, entry),
        )  # fmt: skip
        for entry in entries
    ]
    ident = message_id("C54", *(str(entry.entry_id) for entry in entries))
    root = e.Document(e.BkToCstmrDbtCdtNtfctn(e.GrpHdr(e.MsgId(ident), e.CreDtTm(created)),
                                              *notifications))  # fmt: skip
    return serialize(root, CAMT_054)


def notification_document(
    engine: Engine,
    created_at: datetime,
    posting_id: str | None = None,
    entry_id: int | None = None,
    account: str | None = None,
) -> bytes:
    """Read and build in one call: what ``sakk iso notification`` writes."""
    with engine.connect() as conn:
        entries = read_posting_entries(conn, posting_id, entry_id, account)
        accounts = table_of(Account)
        numbers = sorted({entry.account for entry in entries})
        rows = conn.execute(
            select(accounts.c.number, accounts.c.bank_code).where(accounts.c.number.in_(numbers))
        )
        bank_of = {r.number: r.bank_code for r in rows}
        bics = BankDirectory.load(conn).bic_of
    return build_camt054(entries, created_at, bank_of, bics)
