"""``sakk settlement positions``: each bank's exposure, and against its cap and liquidity."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from engine.audit.urls import as_database_url
from engine.config import Settings
from engine.ledger.database import make_engine
from engine.ledger.positions import BankRow, read_banks
from engine.money import format_minor
from engine.read.liquidity import board_line
from engine.read.snapshot import REPORT_TIMEOUT_MS, snapshot
from engine.risk.limits import BASIS_POINTS
from sakk.cli.settlement import settlement


def position_line(row: BankRow) -> dict[str, Any]:
    """One bank and currency: its position and holds, and its limits (None: unbounded)."""
    return board_line(row).as_dict()


def position_lines(engine: Engine) -> list[dict[str, Any]]:
    """Every bank's line, in bank and currency order, from one snapshot."""
    with snapshot(engine, REPORT_TIMEOUT_MS) as conn:
        rows = read_banks(conn)
    return [position_line(row) for _, row in sorted(rows.items())]


def percent(bps: int | None) -> str:
    if bps is None:
        return "-"
    return f"{bps * 100 // BASIS_POINTS}.{bps * 100 % BASIS_POINTS * 100 // BASIS_POINTS:02d} %"


def _money(amount: int | None, currency: str) -> str:
    return "-" if amount is None else format_minor(amount, currency)


@settlement.command("positions")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (amounts in minor units).")
@click.option(
    "--database-url", "database", metavar="URL|FILE", help="Ledger to read (default: live)."
)
@click.pass_obj
def positions(settings: Settings, as_json: bool, database: str | None) -> None:
    """Each bank's position per currency (posted less settled, positive: it owes the
    others), its holds, its exposure, what settled windows settled; and, for a bank with
    a cap, the cap, its liquidity, the share of the cap used, its alert threshold and its
    headroom (what it could still send)."""
    engine = make_engine(as_database_url(database) if database else settings.ledger_url)
    try:
        lines = position_lines(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"positions": lines}, indent=2))
        return
    table = Table(title="Interbank positions (positive: the bank owes the others)")
    for name in ("bank", "cur", "position", "holds", "settled so far", "cap", "liquidity",
                 "used", "alert at", "headroom"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("bank", "cur") else "right")
    for x in lines:
        cur = x["currency"]
        table.add_row(
            x["bank_code"], cur, *(_money(x[k], cur) for k in (
                "position_minor", "held_minor", "settled_minor", "net_debit_cap_minor",
                "liquidity_minor",
            )),
            percent(x["share_used_bps"]),
            "-" if x["alert_percent"] is None else f"{x['alert_percent']} %",
            _money(x["headroom_minor"], cur),
        )  # fmt: skip
    Console().print(table)
