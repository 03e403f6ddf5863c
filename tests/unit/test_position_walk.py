"""The auditor's walk of the position journal (engine.risk.position_walk), pure.

A small writer below produces the rows the ledger would: each change continues the
previous one, checks the cap in force at the version its batch read, and records the
liquidity after it. The walk must pass such a history, and name every change that went
beyond the cap in force when it was decided or beyond the liquidity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from engine.risk.position_walk import (
    FUNDS_IN,
    FUNDS_OUT,
    LIMITS,
    LOAD_SOURCE,
    OPENED,
    PAYMENTS,
    SETTLED,
    CapAction,
    JournalRow,
    walk,
)

CAP = 50_000  # 500.00 MAD


@dataclass
class Writer:
    """Writes journal rows as ``engine.ledger.positions`` does, for bank 007 in MAD."""

    rows: list[JournalRow] = field(default_factory=list)
    exposure: int = 0
    liquidity: int = 0
    settled: int = 0
    cap: int | None = None
    version: int = 0
    caps: dict[int, int | None] = field(default_factory=dict)  # version: cap in force

    def __post_init__(self) -> None:
        self.write(OPENED, refs=("reference data",), version=0)

    def write(self, cause: str, *, refs: tuple[str, ...] = (), posted: int = 0, holds: int = 0,
              liquidity: int = 0, settled_delta: int = 0, cap: int | None = None,
              read: int | None = None, version: int | None = None) -> JournalRow:  # fmt: skip
        before = self.exposure
        self.exposure += posted + holds
        self.liquidity += liquidity
        self.settled += settled_delta
        self.version = self.version + 1 if version is None else version
        decided = cause not in (OPENED, LIMITS, SETTLED)
        read = self.version - 1 if read is None and decided else read
        bound = self.caps.get(read) if read is not None else None
        raises = posted + holds > 0 or liquidity < 0
        if cause == LIMITS:
            self.cap = cap
        self.caps[self.version] = self.cap
        row = JournalRow(
            len(self.rows) + 1, "007", "MAD", cause, refs, len(refs), posted, holds, liquidity,
            settled_delta, before, self.exposure, self.liquidity,
            cap if cause == LIMITS else (bound if raises and posted + holds > 0 else None),
            self.liquidity if raises and bound is not None else None,
            self.settled if not decided else self._settled_at(read),
            read if decided else None, self.version,
        )  # fmt: skip
        self.rows.append(row)
        return row

    def _settled_at(self, read: int | None) -> int:
        return sum(r.settled_delta for r in self.rows if read is not None and r.version <= read)

    def limit(self, cap: int, seq: int) -> CapAction:
        self.write(LIMITS, refs=(f"operator_action:{seq}",), cap=cap)
        return CapAction(seq, "007", "MAD", cap)

    def pay(self, amount: int, payment_id: str = "p", **kw: int | None) -> JournalRow:
        return self.write(PAYMENTS, refs=(payment_id,), posted=amount, **kw)  # type: ignore[arg-type]

    def funds(self, amount: int, **kw: int | None) -> JournalRow:
        kind = FUNDS_IN if amount > 0 else FUNDS_OUT
        return self.write(kind, refs=("m",), liquidity=amount, **kw)  # type: ignore[arg-type]


def test_a_clean_history_to_exactly_the_cap_passes() -> None:
    w = Writer()
    actions = [w.limit(CAP, seq=1)]
    w.funds(60_000)
    w.pay(30_000)
    w.pay(-10_000)  # received
    w.pay(30_000)  # exactly at the cap
    w.write(PAYMENTS, refs=("h",), holds=0, posted=-5_000)
    report = walk(w.rows, actions)
    assert (report.violations, report.problems) == ([], [])
    assert report.checked == 2 and report.caps_operator == 1 and report.rows == 7
    state = report.banks[("007", "MAD")]
    assert (state.posted, state.holds, state.liquidity, state.cap) == (45_000, 0, 60_000, CAP)


def test_a_change_beyond_the_cap_is_named_with_its_payments_and_amounts() -> None:
    w = Writer()
    actions = [w.limit(CAP, seq=1)]
    w.funds(60_000)
    w.pay(40_000)
    w.pay(10_001, payment_id="pay-beyond")
    report = walk(w.rows, actions)
    assert report.problems == []
    assert report.violations == [
        "bank 007 MAD change #5 (PAYMENTS) of pay-beyond took its exposure to 500.01 MAD, "
        "over its net debit cap of 500.00 MAD (+10001 posted, +0 held, +0 liquidity)"
    ]


def test_holds_placed_count_as_exposure() -> None:
    w = Writer()
    actions = [w.limit(CAP, seq=1)]
    w.funds(60_000)
    w.write(PAYMENTS, refs=("auth",), holds=CAP + 1)
    assert len(walk(w.rows, actions).violations) == 1


def test_a_cap_lowered_later_does_not_make_earlier_changes_violations() -> None:
    w = Writer()
    actions = [w.limit(CAP, seq=1)]
    w.funds(60_000)
    w.pay(CAP)
    read_before_the_change = w.version
    actions.append(w.limit(10_000, seq=2))  # lowered below the exposure: taken
    w.pay(-CAP)
    # a batch in flight read the row before the cap was lowered: its cap binds it
    w.pay(CAP, payment_id="in-flight", read=read_before_the_change)
    report = walk(w.rows, actions)
    assert (report.violations, report.problems) == ([], [])
    w.pay(1, payment_id="after")  # decided once the lower cap was in force
    assert walk(w.rows, actions).violations == [
        "bank 007 MAD change #8 (PAYMENTS) of after took its exposure to 500.01 MAD, over its "
        "net debit cap of 100.00 MAD (+1 posted, +0 held, +0 liquidity)"
    ]


def test_liquidity_withdrawn_below_the_exposure_is_a_violation() -> None:
    w = Writer()
    actions = [w.limit(100_000, seq=1)]
    w.funds(60_000)
    w.pay(CAP)
    w.funds(-20_000)  # leaves 400.00 deposited under a 500.00 exposure
    report = walk(w.rows, actions)
    assert report.problems == []
    assert report.violations == [
        "bank 007 MAD change #5 (FUNDS_OUT) of m took its exposure to 500.00 MAD, over its "
        "liquidity of 400.00 MAD (+0 posted, +0 held, -20000 liquidity)"
    ]


def test_a_settled_window_gives_headroom_back_and_must_have_settled_before_it_counts() -> None:
    w = Writer()
    actions = [w.limit(CAP, seq=1)]
    w.funds(60_000)
    w.pay(CAP)
    read = w.version
    w.write(SETTLED, refs=("2026-12-06",), settled_delta=CAP)
    w.pay(CAP)  # room given back by the settled window
    assert (walk(w.rows, actions).violations, walk(w.rows, actions).problems) == ([], [])
    lenient = replace(w.pay(1, read=read), settled=CAP)  # counts a window it had not seen
    w.rows[-1] = lenient
    report = walk(w.rows, actions)
    assert report.problems == [
        "bank 007 MAD change #7 (PAYMENTS): took off 50000 settled, only 0 had settled when "
        "it was decided"
    ]
    assert len(report.violations) == 1  # and, with what had settled, it is beyond the cap


def test_a_cap_checked_with_no_source_or_another_than_in_force_is_named() -> None:
    w = Writer()
    w.write(LIMITS, refs=("operator_action:7",), cap=CAP)  # the log records no action #7
    w.funds(60_000)
    w.pay(CAP)
    forged = replace(w.rows[-1], cap=CAP * 2)
    w.rows[-1] = forged
    problems = walk(w.rows, [CapAction(3, "007", "MAD", CAP)]).problems
    assert problems == [
        "bank 007 MAD change #2 (LIMITS): cap 500.00 MAD set by operator action #7, which "
        "records no change of a cap",
        "bank 007 MAD change #4 (PAYMENTS): checked a cap of 1,000.00 MAD, the cap in force "
        "when it was decided was 500.00 MAD",
        "operator action #3 set bank 007 MAD's cap to 500.00 MAD: the journal has no such change",
    ]


def test_a_cap_from_a_reference_load_is_counted_not_a_finding() -> None:
    w = Writer()
    w.write(LIMITS, refs=(LOAD_SOURCE,), cap=CAP)
    w.funds(60_000)
    w.pay(CAP)
    report = walk(w.rows, [])
    assert (report.problems, report.violations, report.caps_loaded) == ([], [], 1)


def test_a_change_missing_from_the_journal_breaks_the_next_row() -> None:
    w = Writer()
    actions = [w.limit(CAP, seq=1)]
    w.funds(60_000)
    w.pay(10_000)
    del w.rows[-1]  # the row moved, its journal row is gone
    w.pay(10_000)
    problems = walk(w.rows, actions).problems
    assert problems == [
        "bank 007 MAD change #4 (PAYMENTS): exposure before 10000, the bank's previous change "
        "left 0 (a change is missing)",
        "bank 007 MAD change #4 (PAYMENTS): version 4, expected 3 (a change of the row is missing)",
        "bank 007 MAD change #4 (PAYMENTS): decided on version 3, which the bank's journal "
        "does not reach",
    ]
