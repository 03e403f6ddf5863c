"""Double-entry postings: build the legs, check they balance, write them with the balances.

A posting is refused before it reaches the database unless its legs sum to
zero in every currency; entries and balance changes are written in the
caller's transaction, so they commit or vanish together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, update

from engine.ledger.exceptions import UnbalancedPostingError
from engine.ledger.models import Account, LedgerEntry, Posting


@dataclass(frozen=True, slots=True)
class Leg:
    account_number: str
    amount_minor: int  # signed: positive credits the account's balance, negative debits it
    currency: str


@dataclass(frozen=True, slots=True)
class PostingDraft:
    posting_id: str
    payment_id: str
    kind: str
    occurred_at: datetime
    settlement_window: str
    legs: tuple[Leg, ...]


def check_balanced(legs: Sequence[Leg]) -> None:
    """Raise :class:`UnbalancedPostingError` unless the legs sum to zero per currency."""
    if len(legs) < 2:
        raise UnbalancedPostingError(f"a posting needs at least two legs, got {len(legs)}")
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if not isinstance(leg.amount_minor, int) or isinstance(leg.amount_minor, bool):
            raise UnbalancedPostingError(f"leg amount must be an int, got {leg.amount_minor!r}")
        totals[leg.currency] += leg.amount_minor
    off = {cur: total for cur, total in totals.items() if total != 0}
    if off:
        raise UnbalancedPostingError(f"posting does not sum to zero: {off}")


def write_postings(conn: Connection, drafts: Iterable[PostingDraft]) -> int:
    """Insert postings, their entries and the balance changes in bulk; returns entries written."""
    drafts = list(drafts)
    if not drafts:
        return 0
    deltas: dict[str, int] = defaultdict(int)
    entries = []
    for draft in drafts:
        check_balanced(draft.legs)
        for leg in draft.legs:
            deltas[leg.account_number] += leg.amount_minor
            entries.append(
                {
                    "posting_id": draft.posting_id,
                    "account_number": leg.account_number,
                    "amount_minor": leg.amount_minor,
                    "currency": leg.currency,
                }
            )
    conn.execute(
        insert(Posting),
        [
            {
                "posting_id": d.posting_id,
                "payment_id": d.payment_id,
                "kind": d.kind,
                "occurred_at": d.occurred_at,
                "settlement_window": d.settlement_window,
            }
            for d in drafts
        ],
    )
    conn.execute(insert(LedgerEntry), entries)
    apply_balance_deltas(conn, deltas)
    return len(entries)


def apply_balance_deltas(conn: Connection, deltas: dict[str, int]) -> None:
    """``balance += delta`` per account, atomically in the database (no read-modify-write)."""
    changed = [{"number_": n, "delta": d} for n, d in sorted(deltas.items()) if d != 0]
    if not changed:
        return
    table = Account.__table__
    conn.execute(
        update(table)
        .where(table.c.number == bindparam("number_"))
        .values(balance_minor=table.c.balance_minor + bindparam("delta")),
        changed,
    )
