"""Verify the ledger: every entries' hash chain, double entry, and the closed windows.

A ledger has one hash chain per chain key (``ledger_entries.chain_id``). The walk
takes each chain from its genesis, recomputes every entry's hash from its stored
content and ``prev_hash`` and checks that each ``prev_hash`` is the hash of the
entry before it in the same chain, with no gap in ``chain_seq``. So:

- an altered entry (amount, account, its posting's time or window...) fails its
  own hash;
- a deleted entry leaves a gap, and the next entry's ``prev_hash`` points at it;
- an inserted entry fails its hash, or the link, or leaves its chain's head behind;
- entries deleted at the end of a chain leave its head ahead of its last entry.

An attacker who can write the database can also recompute every hash after the
entry he altered and move the head, or delete a whole chain with its head. That
is caught by anchors held outside the ledger: each window-closed event on
``payments.windows`` carries every chain's head at the close, and ``--anchor
CHAIN:SEQ:HASH`` takes any head an auditor noted down.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from engine.audit.settled_windows import WindowSettlementCheck, check_settled_windows
from engine.audit.windows import Close, all_window_reports, read_closes
from engine.ledger.checks import LedgerCheck, LifecycleCheck, check_ledger, check_lifecycle
from engine.ledger.models import LedgerChainHead, LedgerEntry, Posting
from engine.ledger.postings import DEFAULT_CHAIN, GENESIS_HASH, MAX_CHAINS, entry_hash
from engine.ops.audit_log import ActionLogCheck, verify_action_log
from engine.ops.proposal_check import check_proposals

WALK_CHUNK = 10_000
MAX_BREAKS_LISTED = 1_000


@dataclass(frozen=True)
class ChainBreak:
    chain_id: int
    chain_seq: int | None
    entry_id: int | None
    posting_id: str | None
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "chain_seq": self.chain_seq,
                "entry_id": self.entry_id, "posting_id": self.posting_id,
                "problem": self.problem}  # fmt: skip


@dataclass(frozen=True)
class Anchor:
    """A chain head known from outside the walk: in ``chain_id``, entry ``chain_seq`` has
    ``chain_hash``."""

    chain_id: int
    chain_seq: int
    chain_hash: str
    source: str


@dataclass
class ChainWalk:
    """What the walk found in one chain."""

    chain_id: int
    entries: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    head_seq: int | None = None
    head_hash: str | None = None
    breaks: int = 0
    hashes_at: dict[int, str] = field(default_factory=dict)  # at the anchors' seqs

    def as_dict(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "entries": self.entries, "last_seq": self.last_seq,
                "last_hash": self.last_hash, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "breaks": self.breaks}  # fmt: skip


@dataclass
class LedgerWalk:
    """Every chain walked, in chain order, and every break found (the first ones listed)."""

    chains: dict[int, ChainWalk] = field(default_factory=dict)
    breaks: list[ChainBreak] = field(default_factory=list)
    break_count: int = 0

    def add(self, item: ChainBreak) -> None:
        self.break_count += 1
        if item.chain_id in self.chains:
            self.chains[item.chain_id].breaks += 1
        if len(self.breaks) < MAX_BREAKS_LISTED:
            self.breaks.append(item)

    @property
    def entries(self) -> int:
        return sum(c.entries for c in self.chains.values())

    def chain(self, chain_id: int) -> ChainWalk:
        """The walk of one chain; an empty one if the ledger has no such chain."""
        return self.chains.get(chain_id) or ChainWalk(chain_id)


@dataclass
class VerifyReport:
    walk: LedgerWalk
    ledger: LedgerCheck
    lifecycle: LifecycleCheck = field(default_factory=LifecycleCheck)
    window_problems: list[str] = field(default_factory=list)
    anchor_problems: list[str] = field(default_factory=list)
    anchors_checked: int = 0
    windows_checked: int = 0
    settlement: WindowSettlementCheck = field(default_factory=WindowSettlementCheck)
    action_log: ActionLogCheck = field(default_factory=ActionLogCheck)  # engine.ops.audit_log

    @property
    def ok(self) -> bool:
        return not (self.walk.break_count or self.ledger.violations or self.lifecycle.violations
                    or self.window_problems or self.anchor_problems
                    or self.settlement.problems
                    or self.action_log.problems)  # fmt: skip

    @property
    def first_break(self) -> ChainBreak | None:
        return self.walk.breaks[0] if self.walk.breaks else None

    def summary(self) -> dict[str, Any]:
        """Totals over every chain; the ``chain_*`` figures are chain 0's (the first chain's)."""
        first = self.first_break
        chain0 = self.walk.chain(DEFAULT_CHAIN)
        return {
            "ok": self.ok, "entries": self.walk.entries, "chains": len(self.walk.chains),
            "chain_last_seq": chain0.last_seq, "chain_head_seq": chain0.head_seq,
            "chain_head_hash": chain0.head_hash,
            "chain_breaks": self.walk.break_count,
            "first_break": first.as_dict() if first else None,
            "postings": self.ledger.postings, "accounts": self.ledger.accounts,
            "ledger_violations": len(self.ledger.violations),
            "holds": self.lifecycle.holds, "steps_applied": self.lifecycle.steps,
            "accounts_walked": self.lifecycle.accounts_walked,
            "lifecycle_violations": len(self.lifecycle.violations) + self.lifecycle.more,
            "windows_checked": self.windows_checked,
            "window_problems": len(self.window_problems),
            "anchors_checked": self.anchors_checked, "anchor_problems": len(self.anchor_problems),
            "lifecycle_windows": self.settlement.windows,
            "settled_windows": self.settlement.settled,
            "position_rows": self.settlement.position_rows,
            "settlement_problems": len(self.settlement.problems),
            "operator_actions": self.action_log.rows,
            "operator_action_problems": len(self.action_log.problems),
        }  # fmt: skip

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "chains": [c.as_dict() for c in self.walk.chains.values()],
            "chain_breaks": [b.as_dict() for b in self.walk.breaks],
            "ledger_violations": [{"violation": v} for v in self.ledger.violations],
            "lifecycle_violations": [{"violation": v} for v in self.lifecycle.violations],
            "window_problems": [{"problem": p} for p in self.window_problems],
            "anchor_problems": [{"problem": p} for p in self.anchor_problems],
            "settlement_problems": [{"problem": p} for p in self.settlement.problems],
            "operator_action_problems": [{"problem": p} for p in self.action_log.problems],
        }


def walk_ledger(conn: Connection, anchors: Iterable[Anchor] = ()) -> LedgerWalk:
    """Walk every chain that has entries or a head, in chain order; every break is recorded."""
    wanted: dict[int, set[int]] = defaultdict(set)
    for anchor in anchors:
        wanted[anchor.chain_id].add(anchor.chain_seq)
    heads = _read_heads(conn)
    e = LedgerEntry.__table__
    with_entries = set(conn.execute(select(e.c.chain_id).distinct()).scalars())
    walk = LedgerWalk()
    # Chain 0 always has a head (the migrations make it); any other chain has one from its
    # first entry on.
    for chain_id in sorted(with_entries | set(heads) | {DEFAULT_CHAIN}):
        walk.chains[chain_id] = ChainWalk(chain_id)
        if not 0 <= chain_id < MAX_CHAINS:
            problem = f"chain id outside 0..{MAX_CHAINS - 1}: not written by Sakk"
            walk.add(ChainBreak(chain_id, None, None, None, problem))
        _walk_chain(conn, walk, walk.chains[chain_id], wanted.get(chain_id, set()))
        _check_head(walk, walk.chains[chain_id], heads.get(chain_id))
    return walk


def _read_heads(conn: Connection) -> dict[int, tuple[int, str]]:
    h = LedgerChainHead.__table__
    return {int(r.chain_id): (int(r.seq), str(r.head_hash))
            for r in conn.execute(select(h.c.chain_id, h.c.seq, h.c.head_hash))}  # fmt: skip


def _walk_chain(conn: Connection, walk: LedgerWalk, chain: ChainWalk, wanted: set[int]) -> None:
    """Recompute one chain in ``chain_seq`` order, in chunks."""
    if 0 in wanted:
        chain.hashes_at[0] = GENESIS_HASH
    e, p = LedgerEntry.__table__, Posting.__table__
    expected_seq, prev_hash, after = 1, GENESIS_HASH, 0
    while True:  # ends: every chunk moves ``after`` forward, and the chain is finite
        rows = conn.execute(
            select(e.c.id, e.c.chain_seq, e.c.prev_hash, e.c.entry_hash, e.c.posting_id,
                   e.c.account_number, e.c.amount_minor, e.c.currency, p.c.payment_id, p.c.kind,
                   p.c.occurred_at, p.c.settlement_window)
            .join(p, p.c.posting_id == e.c.posting_id, isouter=True)
            .where(e.c.chain_id == chain.chain_id, e.c.chain_seq > after)
            .order_by(e.c.chain_seq)
            .limit(WALK_CHUNK)
        ).all()  # fmt: skip
        if not rows:
            break
        for r in rows:
            _check_entry(walk, chain.chain_id, r, expected_seq, prev_hash)
            if r.chain_seq in wanted:
                chain.hashes_at[r.chain_seq] = r.entry_hash
            chain.entries += 1
            prev_hash, expected_seq = r.entry_hash, r.chain_seq + 1
        after = rows[-1].chain_seq
    chain.last_seq, chain.last_hash = expected_seq - 1, prev_hash


def _check_entry(walk: LedgerWalk, chain_id: int, r: Any, expected_seq: int, prev: str) -> None:
    def broken(problem: str) -> None:
        walk.add(ChainBreak(chain_id, r.chain_seq, r.id, r.posting_id, problem))

    if r.chain_seq != expected_seq:
        missing = (f"#{expected_seq}" if r.chain_seq == expected_seq + 1
                   else f"#{expected_seq} to #{r.chain_seq - 1}")  # fmt: skip
        broken(f"entries {missing} of chain {chain_id} are missing (deleted) before this one")
    elif r.prev_hash != prev:
        broken("prev_hash is not the hash of the entry before: the chain was cut or rewritten here")
    if r.payment_id is None:
        broken("its posting does not exist")
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
        broken(
            f"content altered: entry ({r.account_number}, {r.amount_minor} {r.currency}) "
            f"or its posting does not match its hash"
        )


def _check_head(walk: LedgerWalk, chain: ChainWalk, head: tuple[int, str] | None) -> None:
    c = chain.chain_id
    if head is None:
        problem = f"the head row of chain {c} is missing: it was deleted"
        walk.add(ChainBreak(c, chain.last_seq, None, None, problem))
        return
    chain.head_seq, chain.head_hash = head
    if chain.head_seq != chain.last_seq:
        walk.add(
            ChainBreak(
                c,
                chain.last_seq,
                None,
                None,
                f"the head of chain {c} is at #{chain.head_seq} but its last entry is "
                f"#{chain.last_seq}: entries deleted at the end, or appended without the chain",
            )
        )
    elif chain.head_hash != chain.last_hash:
        walk.add(
            ChainBreak(
                c,
                chain.last_seq,
                None,
                None,
                f"the head hash of chain {c} differs from its last entry's hash",
            )
        )


def close_anchors(label: str, close: Close) -> list[Anchor]:
    """The chain heads a close recorded in the ledger, one per chain.

    ``settlement_windows.chain_seq/chain_hash`` repeat chain 0's head: an anchor of
    its own only when it does not (someone changed one of the two).
    """
    source = f"close of window {label} (ledger)"
    anchors = [Anchor(c, h.seq, h.head_hash, source) for c, h in sorted(close.heads.items())]
    legacy = close.recorded_chain0
    if legacy is not None and close.heads.get(DEFAULT_CHAIN) != legacy:
        legacy_source = f"close of window {label} (ledger, chain_seq/chain_hash)"
        anchors.append(Anchor(DEFAULT_CHAIN, legacy.seq, legacy.head_hash, legacy_source))
    return anchors


def event_anchors(event: Mapping[str, Any], source: str) -> list[Anchor]:
    """The chain heads a ``SettlementWindowClosed`` event carries, one per chain.

    An event of the first schema version has no ``chain_heads``: its ``chain_seq`` and
    ``chain_hash`` are then chain 0's head. In a later one they repeat chain 0's head
    from ``chain_heads``: an anchor of their own only when they do not.
    """
    heads = {int(h["chain_id"]): (int(h["chain_seq"]), str(h["chain_hash"]))
             for h in event.get("chain_heads") or ()}  # fmt: skip
    anchors = [Anchor(c, seq, digest, source) for c, (seq, digest) in sorted(heads.items())]
    legacy = (int(event["chain_seq"]), str(event["chain_hash"]))
    if heads.get(DEFAULT_CHAIN) != legacy:
        anchors.append(Anchor(DEFAULT_CHAIN, *legacy, f"{source} (chain_seq/chain_hash)"))
    return anchors


def window_anchors(conn: Connection) -> list[Anchor]:
    """Chain heads recorded by the window closes in the ledger itself."""
    return [a for label, c in read_closes(conn).items() for a in close_anchors(label, c)]


def verify(conn: Connection, external_anchors: Iterable[Anchor] = ()) -> VerifyReport:
    """Walk every chain, check double entry and the lifecycle, recompute closed windows,
    check every anchor.
    """
    anchors = window_anchors(conn) + list(external_anchors)
    walk = walk_ledger(conn, anchors)
    report = VerifyReport(walk, check_ledger(conn), check_lifecycle(conn))
    report.action_log = verify_action_log(conn)
    report.action_log.problems += check_proposals(conn)  # four eyes held, in the same log
    for anchor in anchors:
        report.anchors_checked += 1
        problem = _anchor_problem(walk, anchor)
        if problem:
            report.anchor_problems.append(f"{anchor.source}: {problem}")
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
    report.settlement = check_settled_windows(conn)
    return report


def _anchor_problem(walk: LedgerWalk, anchor: Anchor) -> str | None:
    where = f"entry #{anchor.chain_seq} of chain {anchor.chain_id}"
    found = walk.chain(anchor.chain_id).hashes_at.get(anchor.chain_seq)
    if found is None and anchor.chain_seq == 0:
        found = GENESIS_HASH  # the genesis of a chain that has no entries (yet)
    if found is None:
        return f"{where} is missing"
    if found != anchor.chain_hash:
        return (
            f"{where} has hash {found[:16]}..., the anchor says {anchor.chain_hash[:16]}...: "
            f"the chain was rewritten up to there"
        )
    return None


def parse_anchor(text: str) -> Anchor:
    """``CHAIN:SEQ:HASH`` as printed by ``sakk audit verify``; ``SEQ:HASH`` means chain 0."""
    parts = text.split(":")
    if len(parts) == 2:
        parts.insert(0, str(DEFAULT_CHAIN))
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()) or not _is_hash(parts[2]):
        raise ValueError(
            f"anchor {text!r}: expected CHAIN:SEQ:HASH or SEQ:HASH (chain 0): numbers, "
            f"then 64 hex characters"
        )
    chain, seq, digest = int(parts[0]), int(parts[1]), parts[2].lower()
    return Anchor(chain, seq, digest, f"anchor {chain}:{seq}:{digest[:12]}... (given)")


def _is_hash(text: str) -> bool:
    return len(text) == 64 and all(ch in "0123456789abcdefABCDEF" for ch in text)
