"""Double-entry postings: build the legs, check they balance, write them with the balances.

A posting is refused before it reaches the database unless its legs sum to
zero in every currency; entries and balance changes are written in the
caller's transaction, so they commit or vanish together.

Entries are chained: each entry's hash covers its content, its posting and the
previous entry's hash. Appends are serialised on the single chain-head row
(locked FOR UPDATE on PostgreSQL; SQLite has one writer at a time), read once
and updated once per batch; the hashes themselves are computed here, in Python.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from engine.ledger.exceptions import LedgerError, UnbalancedPostingError
from engine.ledger.models import Account, LedgerChainHead, LedgerEntry, Posting, table_of

GENESIS_HASH = "0" * 64  # prev_hash of the first entry
CHAIN_HEAD_ID = 1


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


def utc_text(moment: datetime) -> str:
    """A time as hashed: UTC with microseconds (naive means UTC, as SQLite returns it)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def posting_part(
    posting_id: str, payment_id: str, kind: str, occurred_at: datetime, settlement_window: str
) -> str:
    """The posting's share of each of its entries' hashed content (computed once per posting)."""
    return _to_json([posting_id, payment_id, kind, utc_text(occurred_at), settlement_window])[1:-1]


def leg_hash(
    prev_hash: str,
    chain_seq: int,
    posting: str,
    account_number: str,
    amount_minor: int,
    currency: str,
) -> str:
    """SHA-256 of ``prev_hash`` + the entry as the canonical JSON array (see ``entry_hash``)."""
    content = (
        f"{prev_hash}[{chain_seq:d},{posting},{_to_json(account_number)},{amount_minor:d},"
        f"{_to_json(currency)}]"
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def entry_hash(
    prev_hash: str,
    chain_seq: int,
    posting_id: str,
    payment_id: str,
    kind: str,
    occurred_at: datetime,
    settlement_window: str,
    account_number: str,
    amount_minor: int,
    currency: str,
) -> str:
    """SHA-256 of ``prev_hash`` followed by the entry, with its posting, as compact JSON.

    The array hashed: ``[chain_seq, posting_id, payment_id, kind, occurred_at (UTC text),
    settlement_window, account_number, amount_minor, currency]``. Auditors recompute it.
    """
    posting = posting_part(posting_id, payment_id, kind, occurred_at, settlement_window)
    return leg_hash(prev_hash, chain_seq, posting, account_number, amount_minor, currency)


def write_postings(conn: Connection, drafts: Iterable[PostingDraft]) -> int:
    """Insert postings, their entries and the balance changes in bulk; returns entries written."""
    drafts = list(drafts)
    if not drafts:
        return 0
    deltas: dict[str, int] = defaultdict(int)
    for draft in drafts:
        check_balanced(draft.legs)
        for leg in draft.legs:
            deltas[leg.account_number] += leg.amount_minor
    conn.execute(
        insert(Posting),
        [
            {
                "posting_id": d.posting_id,
                "payment_id": d.payment_id,
                "kind": d.kind,
                "occurred_at": _as_utc(d.occurred_at),
                "settlement_window": d.settlement_window,
            }
            for d in drafts
        ],
    )
    apply_balance_deltas(conn, deltas)
    # The chain head is locked last, so it is held for as little of the transaction as can be.
    seq, prev = lock_chain_head(conn)
    entries = []
    for draft in drafts:
        posting = posting_part(
            draft.posting_id,
            draft.payment_id,
            draft.kind,
            draft.occurred_at,
            draft.settlement_window,
        )
        for leg in draft.legs:
            seq += 1
            digest = leg_hash(
                prev, seq, posting, leg.account_number, leg.amount_minor, leg.currency
            )
            entries.append(
                {
                    "posting_id": draft.posting_id,
                    "account_number": leg.account_number,
                    "amount_minor": leg.amount_minor,
                    "currency": leg.currency,
                    "chain_seq": seq,
                    "prev_hash": prev,
                    "entry_hash": digest,
                }
            )
            prev = digest
    conn.execute(insert(LedgerEntry), entries)
    conn.execute(
        update(LedgerChainHead)
        .where(LedgerChainHead.id == CHAIN_HEAD_ID)
        .values(seq=seq, head_hash=prev)
    )
    return len(entries)


def lock_chain_head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the chain's last entry, row-locked until the caller's transaction ends."""
    head = LedgerChainHead.__table__
    row = conn.execute(
        select(head.c.seq, head.c.head_hash).where(head.c.id == CHAIN_HEAD_ID).with_for_update()
    ).one_or_none()
    if row is None:
        raise LedgerError("ledger_chain_head row missing: run `sakk db upgrade`")
    return int(row.seq), str(row.head_hash)


def _as_utc(moment: datetime) -> datetime:
    # SQLite keeps a time's wall clock and drops its zone: store UTC so hashes verify.
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment


def apply_balance_deltas(conn: Connection, deltas: dict[str, int]) -> None:
    """``balance += delta`` per account, atomically in the database (no read-modify-write)."""
    changed = [{"number_": n, "delta": d} for n, d in sorted(deltas.items()) if d != 0]
    if not changed:
        return
    table = table_of(Account)
    conn.execute(
        update(table)
        .where(table.c.number == bindparam("number_"))
        .values(balance_minor=table.c.balance_minor + bindparam("delta")),
        changed,
    )
