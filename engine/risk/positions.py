"""Each bank's position from the windows not yet settled, and after a window is settled.

A bank's position in a currency is the sum of its nets over every window that is not
SETTLED, the open one included (positive when it owes). Settling a window lowers it by
exactly that window's nets, so the other windows' debts keep counting: settling one of
two closed windows cannot make room the bank has not paid for. These are the rules the
position rows follow and the auditor recomputes (``docs/settlement.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.risk.instruction import SettlementBatch

MAX_UNSETTLED_WINDOWS = 1_000  # windows summed into one position: an operator looks first


def unsettled_positions(window_nets: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Each bank's position: its nets summed over the unsettled windows of one currency."""
    positions: dict[str, int] = {}
    for count, nets in enumerate(window_nets, start=1):
        if count > MAX_UNSETTLED_WINDOWS:
            raise ValueError(f"more than {MAX_UNSETTLED_WINDOWS} unsettled windows")
        for bank, net in nets.items():
            positions[bank] = positions.get(bank, 0) + net
    return positions


def after_settlement(positions: Mapping[str, int], batch: SettlementBatch) -> dict[str, int]:
    """The positions once ``batch`` is confirmed: each bank's lowered by its settled net.

    Every bank of the batch must have a position (it had a net, so it had a row); a bank
    the batch does not name keeps its position. The total is unchanged: nets sum to zero.
    """
    unknown = sorted(line.bank for line in batch.lines if line.bank not in positions)
    if unknown:
        raise ValueError(f"window {batch.window_id}: no position for {', '.join(unknown)}")
    settled = dict(positions)
    for line in batch.lines:
        settled[line.bank] -= line.net_minor
    return settled


@dataclass(frozen=True)
class PositionDifference:
    """A bank whose recorded position is not what its unsettled windows add up to."""

    bank: str
    recorded_minor: int
    expected_minor: int

    def __str__(self) -> str:
        return (
            f"bank {self.bank}: position {self.recorded_minor}, "
            f"its unsettled windows add up to {self.expected_minor}"
        )


def position_differences(
    recorded: Mapping[str, int], window_nets: Iterable[Mapping[str, int]]
) -> list[PositionDifference]:
    """Every bank whose recorded position differs from its unsettled nets (the auditor's
    check); a bank absent on one side counts as zero there."""
    expected = unsettled_positions(window_nets)
    return [
        PositionDifference(bank, recorded.get(bank, 0), expected.get(bank, 0))
        for bank in sorted(set(recorded) | set(expected))
        if recorded.get(bank, 0) != expected.get(bank, 0)
    ]


Amounts = tuple[int, int]  # (posted_minor, holds_minor)


@dataclass(frozen=True)
class RowDifference:
    """A bank's position row that is not what the ledger's postings and holds say."""

    bank: str
    currency: str
    row: Amounts | None  # None: the bank has no position row
    ledger: Amounts

    def __str__(self) -> str:
        where = f"bank {self.bank} {self.currency} position row"
        if self.row is None:
            posted, holds = self.ledger
            return f"{where} missing: the ledger gives posted {posted}, holds {holds}"
        parts = [
            f"{name} {mine}, the ledger's {source} give {theirs}"
            for name, source, mine, theirs in (
                ("posted_minor", "interbank postings", self.row[0], self.ledger[0]),
                ("holds_minor", "active interbank holds", self.row[1], self.ledger[1]),
            )
            if mine != theirs
        ]
        return f"{where}: {'; '.join(parts)}"


def row_differences(
    rows: Mapping[tuple[str, str], Amounts], ledger: Mapping[tuple[str, str], Amounts]
) -> list[RowDifference]:
    """Every (bank, currency) whose position row differs from the ledger's figures (the
    auditor's check). A bank the ledger never moved counts as (0, 0) there; a row missing
    for a bank the ledger moved is a difference."""
    found = []
    for key in sorted(set(rows) | set(ledger)):
        row, expected = rows.get(key), ledger.get(key, (0, 0))
        if row != expected and (row is not None or expected != (0, 0)):
            found.append(RowDifference(key[0], key[1], row, expected))
    return found
