"""The auditor's walk of the position journal, in write order, against the ledger.

``sakk audit verify`` proves with it that no payment (nor funds out) was accepted beyond
a bank's cap or liquidity at the moment it was decided:

1. **the journal is the rows**: each bank's ``position_changes`` rows, summed, equal its
   ``bank_positions`` row (posted, holds, liquidity), its settled nets equal what its
   settled windows settled (``window_settlements``), its liquidity equals its liquidity
   account's balance, and the funds rows equal its posted ``FundsIn`` / ``FundsOut``
   (``liquidity_movements``). The rows themselves are checked against the ledger's
   postings and holds independently (``engine.audit.settled_windows``);
2. **the caps' history is the operator's**: each cap a ``LIMITS`` row set is matched to
   the operator action that set it (``operator_actions``, hash-chained), and each action
   that changed a cap to its row; caps loaded with the reference data or in force when
   the journal began are counted and shown;
3. **the walk** (:func:`engine.risk.position_walk.walk`): each bank's rows in id order,
   every change that raised an exposure or lowered a liquidity within the cap in force
   when it was decided and the liquidity after it, each row continuing the previous one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from engine.ledger.models import (
    BankPosition,
    LiquidityMovement,
    OperatorAction,
    PositionChange,
    table_of,
)
from engine.ledger.positions import liquidity_balances, settled_nets
from engine.ops.limits import SetBankLimit
from engine.risk.position_walk import FUNDS_IN, FUNDS_OUT, CapAction, JournalRow, walk

Key = tuple[str, str]
PAGE_ROWS = 5_000  # journal rows read at a time


@dataclass
class JournalCheck:
    rows: int = 0
    banks: int = 0
    checked: int = 0  # changes checked against a cap and a liquidity
    caps_operator: int = 0
    caps_loaded: int = 0
    caps_upgraded: int = 0
    violations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def journal_rows(conn: Connection) -> Iterator[JournalRow]:
    """Every journal row in id order, a page at a time."""
    t = table_of(PositionChange)
    last = 0
    while True:
        page = conn.execute(select(t).where(t.c.id > last).order_by(t.c.id).limit(PAGE_ROWS)).all()
        for r in page:
            yield JournalRow(
                int(r.id), r.bank_code, r.currency, r.cause, tuple(json.loads(r.refs)),
                int(r.ref_count), int(r.posted_delta_minor), int(r.holds_delta_minor),
                int(r.liquidity_delta_minor), int(r.settled_delta_minor),
                int(r.exposure_before_minor), int(r.exposure_after_minor),
                int(r.liquidity_after_minor), r.cap_minor, r.liquidity_checked_minor,
                int(r.settled_minor), r.read_version, int(r.version),
            )  # fmt: skip
        if len(page) < PAGE_ROWS:
            return
        last = int(page[-1].id)


def cap_actions(conn: Connection) -> list[CapAction]:
    """Each operator action that changed a bank's cap, from the operator audit log."""
    t = table_of(OperatorAction)
    found = []
    rows = conn.execute(
        select(t.c.seq, t.c.target, t.c.old_value, t.c.new_value)
        .where(t.c.action == SetBankLimit.name)
        .order_by(t.c.seq)
    )
    for r in rows:
        parts = r.target.split()  # "bank B CUR limits"
        old = json.loads(r.old_value) if r.old_value else {}
        new = json.loads(r.new_value) if r.new_value else {}
        cap = new.get("net_debit_cap_minor")
        if len(parts) == 4 and (old or {}).get("net_debit_cap_minor") != cap:
            found.append(CapAction(int(r.seq), parts[1], parts[2], cap))
    return found


def check_journal(conn: Connection) -> JournalCheck:
    """The walk, and the journal's sums against the tables it must equal."""
    report = walk(journal_rows(conn), cap_actions(conn))
    check = JournalCheck(
        report.rows, len(report.banks), report.checked, report.caps_operator,
        report.caps_loaded, report.caps_upgraded, report.violations, report.problems,
    )  # fmt: skip
    if report.more:
        check.problems.append(f"... and {report.more} more findings")
    sums = {key: (s.posted, s.holds, s.liquidity) for key, s in report.banks.items()}
    check.problems += _differs("position row", _position_rows(conn), sums, "posted, holds, liq.")
    settled = {key: s.settled for key, s in report.banks.items() if s.settled}
    check.problems += _differs("settled nets", settled_nets(conn), settled, "settled")
    liquidity = {key: s.liquidity for key, s in report.banks.items() if s.liquidity}
    held = {key: v for key, v in liquidity_balances(conn).items() if v}
    check.problems += _differs("liquidity account", held, liquidity, "liquidity")
    check.problems += _differs(
        "posted funds movements", _movements(conn), _funds_rows(conn), "funds rows' liquidity"
    )
    return check


def _differs(
    what: str, table: Mapping[Key, object], journal: Mapping[Key, object], of: str
) -> list[str]:
    return [
        f"bank {bank} {currency}: {what} {table.get((bank, currency))}, the journal's "
        f"{of} sum to {journal.get((bank, currency))}"
        for bank, currency in sorted(set(table) | set(journal))
        if table.get((bank, currency)) != journal.get((bank, currency))
    ]


def _position_rows(conn: Connection) -> dict[Key, object]:
    bp = table_of(BankPosition)
    rows = conn.execute(
        select(bp.c.bank_code, bp.c.currency, bp.c.posted_minor, bp.c.holds_minor,
               bp.c.liquidity_minor)
    )  # fmt: skip
    return {
        (r.bank_code, r.currency): (int(r.posted_minor), int(r.holds_minor), int(r.liquidity_minor))
        for r in rows
    }


def _movements(conn: Connection) -> dict[Key, object]:
    """Each bank's posted funds in less funds out (``liquidity_movements``)."""
    t = table_of(LiquidityMovement)
    totals: dict[Key, int] = defaultdict(int)
    rows = conn.execute(
        select(t.c.bank_code, t.c.currency, t.c.kind, func.sum(t.c.amount_minor))
        .where(t.c.outcome == "POSTED")
        .group_by(t.c.bank_code, t.c.currency, t.c.kind)
    )
    for bank, currency, kind, total in rows:
        totals[(bank, currency)] += int(total) if kind == FUNDS_IN else -int(total)
    return {key: v for key, v in totals.items() if v}


def _funds_rows(conn: Connection) -> dict[Key, object]:
    """Each bank's liquidity moved by batches of funds in and out, from the journal."""
    t = table_of(PositionChange)
    rows = conn.execute(
        select(t.c.bank_code, t.c.currency, func.sum(t.c.liquidity_delta_minor))
        .where(t.c.cause.contains(FUNDS_IN) | t.c.cause.contains(FUNDS_OUT))
        .group_by(t.c.bank_code, t.c.currency)
    )
    return {(bank, currency): int(total) for bank, currency, total in rows if total}
