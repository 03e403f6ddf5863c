"""``sakk accounts load FILE``: banks, accounts, fee schedule and limits from a bank's file."""

from __future__ import annotations

from pathlib import Path

import click

from engine.config import Settings
from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.reference import load_reference_data, read_file
from sakk.app import ledger_engine
from sakk.cli import cli


@cli.group()
def accounts() -> None:
    """Reference data."""


@accounts.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def accounts_load(settings: Settings, file: Path) -> None:
    """Load (upsert) reference data; opening balances are posted once, as double entries."""
    try:
        report = load_reference_data(ledger_engine(settings, migrate=True), read_file(file))
    except ReferenceDataError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{report.banks} banks, {report.accounts_created} accounts created, "
        f"{report.accounts_updated} updated, {report.fee_rules} fee rules, "
        f"{report.channel_limits} channel limits"
    )
