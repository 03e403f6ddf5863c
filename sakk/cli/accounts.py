"""``sakk accounts load FILE``: banks, accounts, fee schedule and limits from a bank's file."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import click

from engine.config import Settings
from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.reference import LoadReport, read_file
from engine.ops.action import ActionRefusedError, run_action
from engine.ops.reference_load import LoadReferenceFile
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.options import actor_of, actor_options


@cli.group()
def accounts() -> None:
    """Reference data."""


@accounts.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--keep-operator-caps", is_flag=True,
    help="Leave each cap an operator set as it is, instead of refusing the load.",
)  # fmt: skip
@actor_options
@click.pass_obj
def accounts_load(
    settings: Settings, file: Path, keep_operator_caps: bool, by: str | None, reason: str | None
) -> None:
    """Load (upsert) reference data; opening balances are posted once, as double entries.

    Recorded in the operator audit log (sakk audit log) with the file's SHA-256 and the
    fee rules, limits and net debit caps it changed, old and new. After the first load,
    each fee or limit it changes is a version in force SAKK_REFERENCE_NOTICE_S later, as
    with ``sakk reference``; each cap it sets is a version in force at once. A cap an
    operator set (``sakk liquidity cap``) is never overwritten: the load is refused,
    or, with --keep-operator-caps, goes on and leaves it as it is.
    """
    actor = actor_of(by, reason)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    try:
        action = LoadReferenceFile(
            file.name, digest, read_file(file), settings.reference_notice_s,
            settings.reference_refresh_ms / 1000, keep_operator_caps,
        )  # fmt: skip
        engine = ledger_engine(settings, migrate=True)
        report: LoadReport = run_action(engine, action, actor, datetime.now(UTC)).result
    except (ReferenceDataError, ActionRefusedError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{report.banks} banks, {report.accounts_created} accounts created, "
        f"{report.accounts_updated} updated, {report.fee_rules} fee rules, "
        f"{report.channel_limits} channel limits, {report.versions} reference versions"
        + (f", {report.operator_caps_kept} caps an operator set kept"
           if report.operator_caps_kept else "")
    )  # fmt: skip
