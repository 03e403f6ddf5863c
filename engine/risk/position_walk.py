"""The auditor's walk of the position journal: no change beyond a cap or liquidity, pure.

Each change of a bank's position row is a journal row (``engine.ledger.positions``), and
for one bank the rows' ids are the order its row changed. The walk replays each bank's
rows in that order, from nothing, and keeps what the rows themselves imply: the posted
position, holds, liquidity, settled nets, the cap (set only by ``LIMITS`` rows, each
matched to its source) and the row's version. For every row it checks:

- **continuity**: the exposure before is what the previous row left, the exposure after
  is before plus the deltas, the liquidity after is the previous plus the delta, and the
  version is the previous plus one: a change of the row without its journal row breaks
  this at the next row (and the sums, checked against the tables by the caller);
- **the cap it checked is the cap in force when it was decided**: a batch's snapshot read
  the row at ``read_version``, so the cap in force after the row of that version is the
  one it had to check (a cap lowered while a batch was in flight binds from the next
  batch on, as ``engine.ops.limits`` states), and the settled nets it took off are at
  most what had settled by then;
- **no change that raised an exposure went beyond a limit**: a change that raised the
  bank's exposure (money out, holds placed) or lowered its liquidity (funds out), for a
  bank with a cap, must leave its exposure less what settled by then within that cap
  and within its liquidity after the change. A lower cap set later makes nothing earlier
  a violation.

A ``LIMITS`` row's source is checked against the operator audit log: each names the
operator action that set the cap, which must record that bank, currency and cap, and
each action that changed a cap must have its row. A cap from loading the reference data
(``sakk accounts load``) or in force when the journal began has no operator record: the
walk counts them, and the auditor shows them, but they are not findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from engine.money import format_minor

PAYMENTS, FUNDS_IN, FUNDS_OUT = "PAYMENTS", "FUNDS_IN", "FUNDS_OUT"  # a batch's causes
OPENED, LIMITS, SETTLED = "OPENED", "LIMITS", "SETTLED"  # changes outside batches
OPERATOR_SOURCE = "operator_action:"  # a cap's source: the operator action's seq follows
LOAD_SOURCE = "accounts load"  # a cap set by loading the reference data
UPGRADE_SOURCE = "upgrade"  # in force when the journal began (migration 0018)
MAX_READ_LAG = 100_000  # versions of one bank a snapshot may be behind: kept for the walk
MAX_FINDINGS = 1_000  # findings listed; the rest are counted
SHOWN_REFS = 3  # ids a finding names

Key = tuple[str, str]  # (bank, currency)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One ``position_changes`` row, as the walk reads it."""

    id: int
    bank: str
    currency: str
    cause: str
    refs: tuple[str, ...]
    ref_count: int
    posted: int
    holds: int
    liquidity: int
    settled_delta: int
    before: int  # posted + holds, as the statement returned them
    after: int
    liquidity_after: int
    cap: int | None  # the cap checked (None: not checked); LIMITS: the new cap
    liquidity_checked: int | None
    settled: int  # the settled nets the check took off
    read_version: int | None
    version: int

    @property
    def raises(self) -> bool:
        """Whether the change could take the bank beyond a limit: it raised the exposure
        (money out, holds placed) or lowered the liquidity (funds out)."""
        return self.posted + self.holds > 0 or self.liquidity < 0

    @property
    def decided(self) -> bool:
        """A batch's decisions (payments, funds in and out), checked by a guard."""
        return self.cause not in (OPENED, LIMITS, SETTLED)


@dataclass(frozen=True, slots=True)
class CapAction:
    """An operator's change of a bank's cap, from the operator audit log."""

    seq: int
    bank: str
    currency: str
    cap: int | None


@dataclass(slots=True)
class BankState:
    """What a bank's journal rows so far imply."""

    posted: int = 0
    holds: int = 0
    liquidity: int = 0
    settled: int = 0
    cap: int | None = None
    version: int | None = None
    rows: int = 0
    seen: dict[int, tuple[int | None, int]] = field(default_factory=dict)  # version: cap, settled

    @property
    def exposure(self) -> int:
        return self.posted + self.holds


@dataclass
class WalkReport:
    rows: int = 0
    checked: int = 0  # changes that raised a bounded bank's exposure or lowered its liquidity
    banks: dict[Key, BankState] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    caps_operator: int = 0
    caps_loaded: int = 0
    caps_upgraded: int = 0
    more: int = 0  # findings beyond MAX_FINDINGS

    def add(self, into: list[str], finding: str) -> None:
        if len(self.violations) + len(self.problems) >= MAX_FINDINGS:
            self.more += 1
        else:
            into.append(finding)


def walk(rows: Iterable[JournalRow], actions: Sequence[CapAction]) -> WalkReport:
    """Walk ``rows`` in id order (each bank's own order) against the operator's cap
    ``actions``; every finding named."""
    report = WalkReport()
    operator = {a.seq: a for a in actions}
    matched: set[int] = set()
    last_id = 0
    for row in rows:
        if row.id <= last_id:
            report.add(report.problems, f"change #{row.id} after #{last_id}: not in id order")
        last_id = max(last_id, row.id)
        report.rows += 1
        state = report.banks.setdefault((row.bank, row.currency), BankState())
        _follows(report, state, row)
        if row.decided:
            _decision(report, state, row)
        elif row.cause == LIMITS:
            _source(report, row, operator, matched)
        elif row.cause == SETTLED and row.settled != state.settled + row.settled_delta:
            report.add(report.problems, f"{_where(row)}: records {row.settled} settled, the "
                       f"journal gives {state.settled + row.settled_delta}")  # fmt: skip
        _apply(state, row)
    for seq in sorted(set(operator) - matched):
        a = operator[seq]
        report.add(report.problems, f"operator action #{seq} set bank {a.bank} {a.currency}'s "
                   f"cap to {_cap(a.cap, a.currency)}: the journal has no such change")  # fmt: skip
    return report


def _where(row: JournalRow) -> str:
    return f"bank {row.bank} {row.currency} change #{row.id} ({row.cause})"


def _cap(cap: int | None, currency: str) -> str:
    return "none" if cap is None else format_minor(cap, currency)


def _follows(report: WalkReport, state: BankState, row: JournalRow) -> None:
    """The row continues the previous one of its bank: nothing changed in between."""
    where = _where(row)
    if row.before != state.exposure:
        report.add(report.problems, f"{where}: exposure before {row.before}, the bank's "
                   f"previous change left {state.exposure} (a change is missing)")  # fmt: skip
    if row.after != row.before + row.posted + row.holds:
        report.add(report.problems, f"{where}: exposure {row.before} -> {row.after} does not "
                   f"add up with +{row.posted} posted, +{row.holds} held")  # fmt: skip
    if row.liquidity_after != state.liquidity + row.liquidity:
        report.add(report.problems, f"{where}: liquidity after {row.liquidity_after}, the "
                   f"journal gives {state.liquidity + row.liquidity}")  # fmt: skip
    if state.version is not None:
        seeded = row.refs == (UPGRADE_SOURCE,) and row.cause == LIMITS
        expected = state.version if seeded else state.version + 1
        if row.version != expected:
            report.add(report.problems, f"{where}: version {row.version}, expected "
                       f"{expected} (a change of the row is missing)")  # fmt: skip


def _decision(report: WalkReport, state: BankState, row: JournalRow) -> None:
    """The cap the batch checked was the one in force when it read the row; what raised
    the exposure stayed within the cap and the liquidity."""
    where, cur = _where(row), row.currency
    if row.read_version is None:
        cap_read, settled_read = None, 0  # the batch read no row: nothing bounded the bank
    elif row.read_version in state.seen:
        cap_read, settled_read = state.seen[row.read_version]
    else:
        report.add(report.problems, f"{where}: decided on version {row.read_version}, "
                   "which the bank's journal does not reach")  # fmt: skip
        return
    if row.settled > settled_read:
        report.add(report.problems, f"{where}: took off {row.settled} settled, only "
                   f"{settled_read} had settled when it was decided")  # fmt: skip
    if not row.raises or cap_read is None:
        if row.raises and row.cap is not None:
            report.add(report.problems, f"{where}: checked a cap of {_cap(row.cap, cur)}, "
                       "no cap was in force when it was decided")  # fmt: skip
        return
    report.checked += 1
    adds = row.posted + row.holds > 0
    if adds and row.cap != cap_read:
        report.add(report.problems, f"{where}: checked a cap of {_cap(row.cap, cur)}, the cap "
                   f"in force when it was decided was {_cap(cap_read, cur)}")  # fmt: skip
    if row.liquidity_checked != row.liquidity_after:
        report.add(report.problems, f"{where}: its liquidity of "
                   f"{format_minor(row.liquidity_after, cur)} was not checked")  # fmt: skip
    exposure = row.after - state.settled  # what settled by the time it was written
    for limit, bound in (("net debit cap", cap_read if adds else None),
                         ("liquidity", row.liquidity_after)):  # fmt: skip
        if bound is not None and exposure > bound:
            report.add(report.violations, f"{where} of {_refs(row)} took its exposure to "
                       f"{format_minor(exposure, cur)}, over its {limit} of "
                       f"{format_minor(bound, cur)} (+{row.posted} posted, +{row.holds} held, "
                       f"{row.liquidity:+} liquidity)")  # fmt: skip


def _refs(row: JournalRow) -> str:
    shown = ", ".join(row.refs[:SHOWN_REFS]) or "nothing named"
    more = row.ref_count - min(len(row.refs), SHOWN_REFS)
    return shown + (f" and {more} more" if more > 0 else "")


def _source(
    report: WalkReport, row: JournalRow, operator: dict[int, CapAction], matched: set[int]
) -> None:
    """A cap's source: the operator action that set it, a load, or the upgrade."""
    source = row.refs[0] if row.refs else ""
    if source == LOAD_SOURCE:
        report.caps_loaded += 1
        return
    if source == UPGRADE_SOURCE:
        report.caps_upgraded += 1
        return
    seq = source.removeprefix(OPERATOR_SOURCE)
    if not source.startswith(OPERATOR_SOURCE) or not seq.isdigit():
        report.add(report.problems, f"{_where(row)}: a cap with no known source ({source!r})")
        return
    action = operator.get(int(seq))
    if action is None or (action.bank, action.currency, action.cap) != (
        row.bank, row.currency, row.cap
    ):  # fmt: skip
        said = "records no change of a cap" if action is None else (
            f"set bank {action.bank} {action.currency}'s cap to "
            f"{_cap(action.cap, action.currency)}"
        )  # fmt: skip
        report.add(report.problems, f"{_where(row)}: cap {_cap(row.cap, row.currency)} set by "
                   f"operator action #{seq}, which {said}")  # fmt: skip
        return
    matched.add(action.seq)
    report.caps_operator += 1


def _apply(state: BankState, row: JournalRow) -> None:
    state.posted += row.posted
    state.holds += row.holds
    state.liquidity += row.liquidity
    state.settled += row.settled_delta
    if row.cause == LIMITS:
        state.cap = row.cap
    state.version = row.version
    state.rows += 1
    state.seen[row.version] = (state.cap, state.settled)
    stale = row.version - MAX_READ_LAG
    if stale in state.seen:
        del state.seen[stale]
