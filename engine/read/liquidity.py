"""The liquidity board: each bank's position, holds, cap, liquidity and share of the cap used.

One line per bank and currency from its position row (``engine.ledger.positions``) and
its limits (``engine.risk.limits``): what ``sakk settlement positions`` prints and the
console's settlement screen shows. A bank audience reads its own lines only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from engine.ledger.positions import BankRow, read_banks
from engine.read.audience import Audience
from engine.risk.limits import BankLimits, PositionView


@dataclass(frozen=True)
class BoardLine:
    """One bank and currency; the limit fields are None for a bank without a cap."""

    bank_code: str
    currency: str
    position_minor: int  # posted less settled; positive: the bank owes the others
    held_minor: int
    exposure_minor: int
    settled_minor: int
    liquidity_minor: int | None
    net_debit_cap_minor: int | None
    share_used_bps: int | None
    alert_percent: int | None
    headroom_minor: int | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def board_line(row: BankRow) -> BoardLine:
    exposure = row.exposure
    common = (row.bank, row.currency, exposure.position_minor, exposure.held_minor,
              exposure.total_minor, row.settled_minor)  # fmt: skip
    if row.cap_minor is None:
        return BoardLine(
            *common, liquidity_minor=row.liquidity_minor, net_debit_cap_minor=None,
            share_used_bps=None, alert_percent=None, headroom_minor=None,
        )  # fmt: skip
    limits = BankLimits(row.cap_minor, max(row.liquidity_minor, 0))
    view = PositionView.of(exposure, limits, row.alert_percent or 100)
    return BoardLine(
        *common, liquidity_minor=view.liquidity_minor, net_debit_cap_minor=view.net_debit_cap_minor,
        share_used_bps=view.share_used_bps, alert_percent=view.alert_percent,
        headroom_minor=view.headroom_minor,
    )  # fmt: skip


def liquidity_board(conn: Connection, audience: Audience) -> list[BoardLine]:
    """Every line ``audience`` may see, in bank and currency order."""
    rows = read_banks(conn)
    return [
        board_line(row) for _, row in sorted(rows.items())
        if audience.sees_every_bank() or row.bank == audience.bank_code
    ]  # fmt: skip
