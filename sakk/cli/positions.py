"""``sakk settlement positions``: each bank's exposure against its cap and its liquidity."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from engine.audit.urls import as_database_url
from engine.config import Settings
from engine.ledger.database import make_engine
from engine.ledger.positions import read_banks
from engine.money import format_minor
from engine.read.snapshot import REPORT_TIMEOUT_MS, snapshot
from engine.risk.limits import BASIS_POINTS, BankLimits, PositionView
from sakk.cli.settlement import settlement


def position_views(engine: Engine) -> list[PositionView]:
    """One line per bounded bank and currency, in bank order (unbounded banks left out)."""
    with snapshot(engine, REPORT_TIMEOUT_MS) as conn:
        rows = read_banks(conn)
    return [
        PositionView.of(
            row.exposure,
            BankLimits(row.cap_minor, max(row.liquidity_minor, 0)),
            row.alert_percent or 100,
        )  # fmt: skip
        for _, row in sorted(rows.items())
        if row.cap_minor is not None
    ]


def _percent(bps: int) -> str:
    return f"{bps * 100 // BASIS_POINTS}.{bps * 100 % BASIS_POINTS * 100 // BASIS_POINTS:02d} %"


@settlement.command("positions")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (amounts in minor units).")
@click.option(
    "--database-url", "database", metavar="URL|FILE", help="Ledger to read (default: live)."
)
@click.pass_obj
def positions(settings: Settings, as_json: bool, database: str | None) -> None:
    """Each bank's position, holds, cap, liquidity, share of the cap used, alert threshold
    and headroom (what it could still send), per currency."""
    engine = make_engine(as_database_url(database) if database else settings.ledger_url)
    try:
        views = position_views(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([asdict(v) for v in views], indent=2))
        return
    table = Table(title="Interbank positions (positive: the bank owes)")
    for name in ("bank", "position", "holds", "cap", "liquidity", "used", "alert at",
                 "headroom"):  # fmt: skip
        table.add_column(name, justify="left" if name == "bank" else "right")
    for v in views:
        cur = v.currency
        table.add_row(
            v.bank, format_minor(v.position_minor, cur), format_minor(v.held_minor, cur),
            format_minor(v.net_debit_cap_minor, cur), format_minor(v.liquidity_minor, cur),
            _percent(v.share_used_bps), f"{v.alert_percent} %",
            format_minor(v.headroom_minor, cur),
        )  # fmt: skip
    Console().print(table)
