"""Verify the ledger: the entries' hash chain, double entry, and the closed windows.

The walk recomputes every entry's hash from its stored content and ``prev_hash``
and checks that each ``prev_hash`` is the hash of the entry before it, with no
gap in ``chain_seq``. So:

- an altered entry (amount, account, its posting's time or window...) fails its
  own hash;
- a deleted entry leaves a gap, and the next entry's ``prev_hash`` points at it;
- an inserted entry fails its hash, or the link, or leaves the chain head behind.

An attacker who can write the database can also recompute every hash after the
entry he altered and move the head. That is caught by anchors held outside the
ledger: each window-closed event on ``payments.windows`` carries the chain head
at the close, and ``--anchor SEQ:HASH`` takes any head an auditor noted down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from engine.audit.windows import all_window_reports, read_closes
from engine.ledger.checks import LedgerCheck, check_ledger
from engine.ledger.models import LedgerChainHead, LedgerEntry, Posting
from engine.ledger.postings import CHAIN_HEAD_ID, GENESIS_HASH, entry_hash

WALK_CHUNK = 10_000
MAX_BREAKS_LISTED = 1_000


@dataclass(frozen=True)
class ChainBreak:
    chain_seq: int | None
    entry_id: int | None
    posting_id: str | None
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"chain_seq": self.chain_seq, "entry_id": self.entry_id,
                "posting_id": self.posting_id, "problem": self.problem}  # fmt: skip


@dataclass(frozen=True)
class Anchor:
    """A chain head known from outside the walk: the entry at ``chain_seq`` has ``chain_hash``."""

    chain_seq: int
    chain_hash: str
    source: str


@dataclass
class ChainWalk:
    entries: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    head_seq: int | None = None
    head_hash: str | None = None
    breaks: list[ChainBreak] = field(default_factory=list)
    hashes_at: dict[int, str] = field(default_factory=dict)  # at the anchors' seqs

    def add(self, item: ChainBreak) -> None:
        if len(self.breaks) < MAX_BREAKS_LISTED:
            self.breaks.append(item)


@dataclass
class VerifyReport:
    walk: ChainWalk
    ledger: LedgerCheck
    window_problems: list[str] = field(default_factory=list)
    anchor_problems: list[str] = field(default_factory=list)
    anchors_checked: int = 0
    windows_checked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.walk.breaks or self.ledger.violations or self.window_problems
                    or self.anchor_problems)  # fmt: skip

    @property
    def first_break(self) -> ChainBreak | None:
        return self.walk.breaks[0] if self.walk.breaks else None

    def summary(self) -> dict[str, Any]:
        first = self.first_break
        return {
            "ok": self.ok, "entries": self.walk.entries, "chain_last_seq": self.walk.last_seq,
            "chain_head_seq": self.walk.head_seq, "chain_head_hash": self.walk.head_hash,
            "chain_breaks": len(self.walk.breaks),
            "first_break": first.as_dict() if first else None,
            "postings": self.ledger.postings, "accounts": self.ledger.accounts,
            "ledger_violations": len(self.ledger.violations),
            "windows_checked": self.windows_checked,
            "window_problems": len(self.window_problems),
            "anchors_checked": self.anchors_checked, "anchor_problems": len(self.anchor_problems),
        }  # fmt: skip

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "chain_breaks": [b.as_dict() for b in self.walk.breaks],
            "ledger_violations": [{"violation": v} for v in self.ledger.violations],
            "window_problems": [{"problem": p} for p in self.window_problems],
            "anchor_problems": [{"problem": p} for p in self.anchor_problems],
        }


def walk_chain(conn: Connection, anchor_seqs: Iterable[int] = ()) -> ChainWalk:
    """Recompute the chain in ``chain_seq`` order, in chunks; every break is recorded."""
    wanted = set(anchor_seqs)
    walk = ChainWalk()
    if 0 in wanted:
        walk.hashes_at[0] = GENESIS_HASH
    e, p = LedgerEntry.__table__, Posting.__table__
    expected_seq, prev_hash, after = 1, GENESIS_HASH, 0
    while True:
        rows = conn.execute(
            select(e.c.id, e.c.chain_seq, e.c.prev_hash, e.c.entry_hash, e.c.posting_id,
                   e.c.account_number, e.c.amount_minor, e.c.currency, p.c.payment_id, p.c.kind,
                   p.c.occurred_at, p.c.settlement_window)
            .join(p, p.c.posting_id == e.c.posting_id, isouter=True)
            .where(e.c.chain_seq > after)
            .order_by(e.c.chain_seq)
            .limit(WALK_CHUNK)
        ).all()  # fmt: skip
        if not rows:
            break
        for r in rows:
            _check_entry(walk, r, expected_seq, prev_hash)
            if r.chain_seq in wanted:
                walk.hashes_at[r.chain_seq] = r.entry_hash
            walk.entries += 1
            prev_hash, expected_seq = r.entry_hash, r.chain_seq + 1
        after = rows[-1].chain_seq
    walk.last_seq, walk.last_hash = expected_seq - 1, prev_hash
    _check_head(conn, walk)
    return walk


def _check_entry(walk: ChainWalk, r: Any, expected_seq: int, prev_hash: str) -> None:
    if r.chain_seq != expected_seq:
        missing = (f"#{expected_seq}" if r.chain_seq == expected_seq + 1
                   else f"#{expected_seq} to #{r.chain_seq - 1}")  # fmt: skip
        walk.add(
            ChainBreak(
                r.chain_seq,
                r.id,
                r.posting_id,
                f"entries {missing} are missing (deleted) before this one",
            )
        )
    elif r.prev_hash != prev_hash:
        walk.add(
            ChainBreak(
                r.chain_seq,
                r.id,
                r.posting_id,
                "prev_hash is not the hash of the entry before: the chain was cut "
                "or rewritten here",
            )
        )
    if r.payment_id is None:
        walk.add(ChainBreak(r.chain_seq, r.id, r.posting_id, "its posting does not exist"))
        return
    recomputed = entry_hash(
        r.prev_hash,
        r.chain_seq,
        r.posting_id,
        r.payment_id,
        r.kind,
        r.occurred_at,
        r.settlement_window,
        r.account_number,
        int(r.amount_minor),
        r.currency,
    )
    if recomputed != r.entry_hash:
        walk.add(
            ChainBreak(
                r.chain_seq,
                r.id,
                r.posting_id,
                f"content altered: entry ({r.account_number}, {r.amount_minor} "
                f"{r.currency}) or its posting does not match its hash",
            )
        )


def _check_head(conn: Connection, walk: ChainWalk) -> None:
    h = LedgerChainHead.__table__
    head = conn.execute(select(h.c.seq, h.c.head_hash).where(h.c.id == CHAIN_HEAD_ID)).one_or_none()
    if head is None:
        walk.add(ChainBreak(None, None, None, "the chain head row is missing"))
        return
    walk.head_seq, walk.head_hash = int(head.seq), str(head.head_hash)
    if walk.head_seq != walk.last_seq:
        walk.add(
            ChainBreak(
                walk.last_seq,
                None,
                None,
                f"chain head is at #{walk.head_seq} but the last entry is "
                f"#{walk.last_seq}: entries deleted at the end, or appended "
                f"without the chain",
            )
        )
    elif walk.head_hash != walk.last_hash:
        walk.add(
            ChainBreak(
                walk.last_seq, None, None, "chain head hash differs from the last entry's hash"
            )
        )


def window_anchors(conn: Connection) -> list[Anchor]:
    """Chain heads recorded by the window closes in the ledger itself."""
    return [Anchor(c.chain_seq, c.chain_hash, f"close of window {label} (ledger)")
            for label, c in read_closes(conn).items()]  # fmt: skip


def verify(conn: Connection, external_anchors: Iterable[Anchor] = ()) -> VerifyReport:
    """Walk the chain, check double entry, recompute closed windows, check every anchor."""
    anchors = window_anchors(conn) + list(external_anchors)
    walk = walk_chain(conn, (a.chain_seq for a in anchors))
    report = VerifyReport(walk, check_ledger(conn))
    for anchor in anchors:
        report.anchors_checked += 1
        found = walk.hashes_at.get(anchor.chain_seq)
        if found is None:
            report.anchor_problems.append(f"{anchor.source}: entry #{anchor.chain_seq} is missing")
        elif found != anchor.chain_hash:
            report.anchor_problems.append(
                f"{anchor.source}: entry #{anchor.chain_seq} has hash {found[:16]}..., the anchor "
                f"says {anchor.chain_hash[:16]}...: the chain was rewritten up to there"
            )
    closes = read_closes(conn)
    hours = {c.window.hours for c in closes.values()}
    for length in sorted(hours):
        for window in all_window_reports(conn, length):
            if window.closed:
                report.windows_checked += 1
                report.window_problems += window.mismatches()
                off = {cur: net for cur, net in window.net_by_currency().items() if net}
                if off:
                    report.window_problems.append(
                        f"window {window.window.label}: net positions sum to {off}, not zero"
                    )
    return report


def parse_anchor(text: str) -> Anchor:
    """``SEQ:HASH`` as printed by ``sakk audit verify``."""
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise ValueError(f"anchor {text!r}: expected SEQ:HASH (a number, 64 hex characters)")
    return Anchor(int(seq), digest.lower(), f"anchor {seq}:{digest[:12]}... (given)")
