"""Double-entry postings: build the legs, check they balance, write them with the balances.

A posting is refused before it reaches the database unless its legs sum to
zero in every currency; entries and balance changes are written in the
caller's transaction, so they commit or vanish together.

Entries are chained: each entry's hash covers its content, its posting and the
previous entry's hash *in the same chain*. A ledger has one hash chain per chain
key (``PostingDraft.chain``: the partition of the settlement input topic the
posting came from; events are keyed by payer account, so one payer's postings
stay on one chain, in order). Chain 0 is the chain every entry was on before
chain keys existed, and still takes postings that name no chain.

Appends to one chain are serialised on that chain's head row; appends to
different chains never wait for each other, so settlement instances of one
consumer group (each with its own partitions) write side by side. A batch
creates the heads it lacks (insert-if-missing, which waits for a concurrent
insert of the same head rather than failing), then locks the heads it appends
to in ascending chain order (FOR UPDATE on PostgreSQL; SQLite has one writer at
a time), and reads and updates each once; the hashes themselves are computed
here, in Python. Call ``write_postings`` once per transaction: two calls could
lock heads out of order.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from engine.domain import steps as catalog
from engine.ledger.balances import apply_in_place
from engine.ledger.exceptions import ChainKeyError, LedgerError, UnbalancedPostingError
from engine.ledger.models import (
    AccountBalanceDelta,
    LedgerChainHead,
    LedgerEntry,
    Posting,
    table_of,
)
from engine.ledger.prepared import Prepared, prepared, prepared_insert, prepared_update

GENESIS_HASH = "0" * 64  # prev_hash of the first entry of every chain
# Postings that move a payment's money (between banks, when interbank): a one-step
# payment's, and each money step's of the catalog. Opening balances are not among them.
PAYMENT_POSTING_KINDS = catalog.PAYMENT_POSTING_KINDS
DEFAULT_CHAIN = 0  # the chain of every entry written before chain keys, and of keyless postings
# A chain key is a partition of the settlement input topic: engine.config bounds
# topic_partitions to 1..1024, so a ledger has at most this many chains.
MAX_CHAINS = 1024


class ChainHead(NamedTuple):
    """The last link of a chain: ``seq`` of its last entry (0 if none) and that entry's hash."""

    seq: int
    head_hash: str


GENESIS_HEAD = ChainHead(0, GENESIS_HASH)


class Leg(NamedTuple):  # a tuple: a settlement batch builds five per payment
    account_number: str
    amount_minor: int  # signed: positive credits the account's balance, negative debits it
    currency: str
    # A debit the caller checked against the account's funds (a payer, debited from its
    # own partition only): applied to the row in place. Every other change goes to the
    # balance deltas (engine.ledger.balances), so no batch locks the rows every payment
    # touches.
    checked: bool = False


@dataclass(frozen=True, slots=True)
class PostingDraft:
    posting_id: str
    payment_id: str
    kind: str
    occurred_at: datetime
    settlement_window: str
    legs: tuple[Leg, ...]
    chain: int = DEFAULT_CHAIN  # the hash chain its entries are appended to (0..MAX_CHAINS-1)


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
    """Insert postings, their entries and the balance changes in bulk; returns entries written.

    Each draft's entries extend its own chain, in the order of ``drafts``.
    """
    drafts = list(drafts)
    if not drafts:
        return 0
    in_place: dict[str, int] = defaultdict(int)
    appended: dict[str, int] = defaultdict(int)
    for draft in drafts:
        check_chain_key(draft.chain)
        check_balanced(draft.legs)
        for leg in draft.legs:
            (in_place if leg.checked else appended)[leg.account_number] += leg.amount_minor
    for number in in_place.keys() & appended.keys():  # its row is written anyway: in place
        in_place[number] += appended.pop(number)
    prepared(conn, "postings", _insert_postings).run(
        conn,
        [(d.posting_id, d.payment_id, d.kind, _as_utc(d.occurred_at), d.settlement_window)
         for d in drafts],
    )  # fmt: skip
    apply_in_place(conn, in_place)
    prepared(conn, "balance_deltas", _insert_deltas).run(
        conn, [(n, v) for n, v in sorted(appended.items()) if v != 0]
    )
    # The chain heads are locked last, so they are held for as little of the transaction
    # as can be: only appends to the same chains wait, from here to the commit.
    heads = lock_chain_heads(conn, {d.chain for d in drafts})
    entries = []
    for draft in drafts:
        seq, prev = heads[draft.chain]
        posting = posting_part(
            draft.posting_id, draft.payment_id, draft.kind, draft.occurred_at,
            draft.settlement_window,
        )  # fmt: skip
        for leg in draft.legs:
            seq += 1
            digest = leg_hash(
                prev, seq, posting, leg.account_number, leg.amount_minor, leg.currency
            )
            entries.append((draft.posting_id, leg.account_number, leg.amount_minor, leg.currency,
                            draft.chain, seq, prev, digest))  # fmt: skip
            prev = digest
        heads[draft.chain] = ChainHead(seq, prev)
    prepared(conn, "entries", _insert_entries).run(conn, entries)
    prepared(conn, "chain_heads", _update_heads).run(
        conn, [(c, seq, h) for c, (seq, h) in sorted(heads.items())]
    )
    return len(entries)


def _insert_postings(dialect: Dialect) -> Prepared:
    columns = ("posting_id", "payment_id", "kind", "occurred_at", "settlement_window")
    return prepared_insert(table_of(Posting), dialect, columns)


def _insert_entries(dialect: Dialect) -> Prepared:
    columns = ("posting_id", "account_number", "amount_minor", "currency", "chain_id",
               "chain_seq", "prev_hash", "entry_hash")  # fmt: skip
    return prepared_insert(table_of(LedgerEntry), dialect, columns)


def _insert_deltas(dialect: Dialect) -> Prepared:
    return prepared_insert(
        table_of(AccountBalanceDelta), dialect, ("account_number", "delta_minor")
    )


def _update_heads(dialect: Dialect) -> Prepared:
    return prepared_update(table_of(LedgerChainHead), dialect, ("chain_id",), ("seq", "head_hash"))


def check_chain_key(chain: int) -> None:
    """Raise :class:`ChainKeyError` unless ``chain`` is an int in ``0..MAX_CHAINS-1``."""
    if not isinstance(chain, int) or isinstance(chain, bool) or not 0 <= chain < MAX_CHAINS:
        raise ChainKeyError(f"chain key {chain!r}: expected an int in 0..{MAX_CHAINS - 1}")


def lock_chain_heads(conn: Connection, chains: Iterable[int]) -> dict[int, ChainHead]:
    """(seq, hash) of each chain's last entry, row-locked until the caller's transaction ends.

    A chain without a head gets one at (0, genesis). Heads are locked in ascending
    chain order, so two transactions locking overlapping sets never deadlock.
    """
    wanted = sorted(set(chains))
    for chain in wanted:
        check_chain_key(chain)
    if not wanted:
        return {}
    create_missing_heads(conn, wanted)
    head = table_of(LedgerChainHead)
    # ORDER BY sits below the row locks in PostgreSQL's plan: rows are locked in this order.
    rows = conn.execute(
        select(head.c.chain_id, head.c.seq, head.c.head_hash)
        .where(head.c.chain_id.in_(wanted))
        .order_by(head.c.chain_id)
        .with_for_update()
    ).all()
    found = {int(r.chain_id): ChainHead(int(r.seq), str(r.head_hash)) for r in rows}
    if len(found) != len(wanted):
        missing = sorted(set(wanted) - set(found))
        raise LedgerError(f"chain heads {missing} missing right after their creation")
    return found


def lock_all_chain_heads(conn: Connection) -> dict[int, ChainHead]:
    """Every existing chain head, row-locked in ascending chain order (a window close)."""
    head = table_of(LedgerChainHead)
    rows = conn.execute(
        select(head.c.chain_id, head.c.seq, head.c.head_hash)
        .order_by(head.c.chain_id)
        .limit(MAX_CHAINS + 1)
        .with_for_update()
    ).all()
    if len(rows) > MAX_CHAINS:
        raise LedgerError(f"more than {MAX_CHAINS} chain heads in ledger_chain_head")
    return {int(r.chain_id): ChainHead(int(r.seq), str(r.head_hash)) for r in rows}


def create_missing_heads(conn: Connection, chains: Sequence[int]) -> None:
    """Insert (chain, 0, genesis) for each chain that has no head; existing heads are untouched.

    ``ON CONFLICT DO NOTHING`` makes it race-free: on PostgreSQL a second transaction
    inserting the same head waits for the first to end, then does nothing.
    """
    rows = [{"chain_id": c, "seq": 0, "head_hash": GENESIS_HASH} for c in sorted(chains)]
    head = table_of(LedgerChainHead)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(head).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(head).values(rows).on_conflict_do_nothing())
    else:
        raise LedgerError(f"chain heads are created on PostgreSQL and SQLite only, not {dialect}")


def _as_utc(moment: datetime) -> datetime:
    # SQLite keeps a time's wall clock and drops its zone: store UTC so hashes verify.
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment
