"""The auditor's proof that settled windows are unchanged and positions are unsettled nets.

Four checks, each listing every finding (``sakk audit verify`` runs them):

- **the lifecycle rows**: each window's ``settlement_window_events`` rows are numbered
  from 1 without a gap, each hash covers its row and the previous hash, and each move is
  one the lifecycle allows (:func:`engine.audit.window_lifecycle.chain_problems`);
- **settled windows are unchanged**: a SETTLED window's nets, recomputed from the ledger
  now by the one net-position rule (``engine.read.positions``), equal its
  ``window_settlements`` rows, and a settled window has them and no other window does;
- **positions are unsettled nets**: each bank's position (everything posted less what
  settled windows settled) equals the sum of its nets over the windows not settled
  (:func:`engine.risk.positions.position_differences`);
- **position rows are the ledger's**: each bank's ``bank_positions`` row (``posted_minor``,
  ``holds_minor``) equals what the ledger says, recomputed without the rows: the sum of its
  settlement account's entries, and its payers' ACTIVE interbank holds' amount not yet
  captured (fees excluded: the exposure rule of ``engine.ledger.positions``, the one
  settlement checks caps against). Every bank and currency that differs is named
  (:func:`engine.risk.positions.row_differences`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from engine.audit.window_lifecycle import (
    chain_problems,
    settled_nets,
    window_rows,
    window_settlements,
)
from engine.ledger.models import (
    Account,
    AccountKind,
    BankPosition,
    Hold,
    HoldState,
    LedgerEntry,
    Payment,
    table_of,
)
from engine.read.positions import (
    DEFAULT_WINDOW_HOURS,
    all_window_reports,
    net_positions,
    read_closes,
)
from engine.risk.positions import position_differences, row_differences
from engine.risk.windows import WindowState

Key = tuple[str, str]  # (bank, currency)


def posted_positions(conn: Connection) -> dict[Key, int]:
    """Each bank's position from every interbank posting ever posted (position sign: +
    when it paid out more than it received), before any settlement."""
    return {(x.bank_code, x.currency): -x.net_minor for x in net_positions(conn, None)}


def unsettled_nets(conn: Connection) -> dict[Key, int]:
    """Each bank's position now: what it posted less what settled windows settled.

    A settled window gives back exactly its own nets: the debt of another window, closed
    or open, keeps counting (the cap cannot be escaped by settling one of two windows).
    """
    positions = posted_positions(conn)
    for key, net in settled_nets(conn).items():
        positions[key] = positions.get(key, 0) - net
    return {key: value for key, value in sorted(positions.items()) if value}


def settlement_account_sums(conn: Connection) -> dict[Key, int]:
    """Each bank's settlement account entries summed, per currency (position sign: a
    payment it sends credits its settlement account +amount): every posting that ever
    touched it, whatever its kind, from the entries, not the account's balance."""
    e, a = table_of(LedgerEntry), table_of(Account)
    rows = conn.execute(
        select(a.c.bank_code, e.c.currency, func.sum(e.c.amount_minor))
        .join(a, a.c.number == e.c.account_number)
        .where(a.c.kind == AccountKind.SETTLEMENT.value)
        .group_by(a.c.bank_code, e.c.currency)
    )
    return {(bank, currency): int(total) for bank, currency, total in rows}


def interbank_holds(conn: Connection) -> dict[Key, int]:
    """What each bank's payers' ACTIVE interbank holds still cover, per currency: the
    amount not yet captured, fee excluded (a fee stays inside the payer's bank)."""
    h, p = table_of(Hold), table_of(Payment)
    rows = conn.execute(
        select(h.c.bank_code, h.c.currency, func.sum(h.c.amount_minor - h.c.captured_minor))
        .join(p, p.c.payment_id == h.c.payment_id)
        .where(h.c.state == HoldState.ACTIVE.value, p.c.payer_bank != p.c.payee_bank)
        .group_by(h.c.bank_code, h.c.currency)
    )
    return {(bank, currency): int(total) for bank, currency, total in rows if total}


def ledger_positions(conn: Connection) -> dict[Key, tuple[int, int]]:
    """Each bank's (posted, holds) recomputed from the ledger's entries and holds: what its
    ``bank_positions`` row must hold (the exposure rule is ``engine.ledger.positions``'s)."""
    posted, held = settlement_account_sums(conn), interbank_holds(conn)
    return {
        key: (posted.get(key, 0), held.get(key, 0))
        for key in sorted(set(posted) | set(held))
        if posted.get(key, 0) or held.get(key, 0)
    }


def position_rows(conn: Connection) -> dict[Key, tuple[int, int]]:
    """Each ``bank_positions`` row's (posted_minor, holds_minor), as written."""
    bp = table_of(BankPosition)
    rows = conn.execute(select(bp.c.bank_code, bp.c.currency, bp.c.posted_minor, bp.c.holds_minor))
    return {(r.bank_code, r.currency): (int(r.posted_minor), int(r.holds_minor)) for r in rows}


def position_row_problems(conn: Connection) -> tuple[int, list[str]]:
    """How many position rows were checked, and each one (or missing one) that differs
    from what the ledger's postings and active holds say."""
    rows = position_rows(conn)
    return len(rows), [str(d) for d in row_differences(rows, ledger_positions(conn))]


@dataclass
class WindowSettlementCheck:
    windows: int = 0
    settled: int = 0
    position_rows: int = 0
    problems: list[str] = field(default_factory=list)


def check_settled_windows(
    conn: Connection, positions: Mapping[Key, int] | None = None
) -> WindowSettlementCheck:
    """Every finding of the four checks. ``positions``: the positions to check (by
    default :func:`unsettled_nets`, which the ledger's own position rows replace)."""
    check = WindowSettlementCheck()
    rows = window_rows(conn)
    for label, of_window in rows.items():
        check.windows += 1
        check.problems += chain_problems(label, of_window)
    settled_labels = {label for label, r in rows.items() if r[-1].state is WindowState.SETTLED}
    recorded = window_settlements(conn)
    for label in sorted(set(recorded) - settled_labels):
        check.problems.append(f"window {label} has settled nets but is not SETTLED")
    nets, counted = _window_nets(conn)
    for label in sorted(settled_labels):
        check.settled += 1
        now = {key: net for key, net in nets.get(label, {}).items() if net}
        for key in sorted(set(now) | set(recorded.get(label, {}))):
            then = recorded.get(label, {}).get(key, 0)
            if now.get(key, 0) != then:
                check.problems.append(
                    f"settled window {label} bank {key[0]} {key[1]}: settled {then}, "
                    f"the ledger now gives {now.get(key, 0)}"
                )
    unsettled = {label: n for label, n in nets.items() if label in counted - settled_labels}
    check.problems += _position_problems(conn, unsettled, positions)
    check.position_rows, row_problems = position_row_problems(conn)
    check.problems += row_problems
    return check


def _window_nets(conn: Connection) -> tuple[dict[str, dict[Key, int]], set[str]]:
    """Each window's nets now, position sign, by the one net-position rule.

    Windows are cut at the length they were closed with (one length in practice; with
    several, each posting counts in one window of each length, and the position check
    reads the windows of the shortest only).
    """
    nets: dict[str, dict[Key, int]] = defaultdict(dict)
    shortest: set[str] = set()
    hours = {close.window.hours for close in read_closes(conn).values()} or {DEFAULT_WINDOW_HOURS}
    for length in sorted(hours):
        for report in all_window_reports(conn, length):
            nets.setdefault(report.window.label, {})
            for x in report.lines:
                nets[report.window.label][(x.bank_code, x.currency)] = -x.net_minor
            if length == min(hours):
                shortest.add(report.window.label)
    return dict(nets), shortest


def _position_problems(
    conn: Connection,
    unsettled: Mapping[str, Mapping[Key, int]],
    positions: Mapping[Key, int] | None,
) -> list[str]:
    """Each bank's position against the sum of its nets over the ``unsettled`` windows."""
    recorded = dict(positions) if positions is not None else unsettled_nets(conn)
    currencies = {c for _, c in recorded} | {c for n in unsettled.values() for _, c in n}
    problems = []
    for currency in sorted(currencies):
        of_currency = [
            {bank: net for (bank, c), net in window.items() if c == currency}
            for _, window in sorted(unsettled.items())
        ]
        mine = {bank: v for (bank, c), v in recorded.items() if c == currency}
        problems += [f"{d} {currency}" for d in position_differences(mine, of_currency)]
    return problems
