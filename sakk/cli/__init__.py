"""``sakk``: one entry point for operators, banks and auditors (also ``python -m sakk``)."""

from __future__ import annotations

import importlib
import pkgutil

import click

from engine import logs
from engine.config import SettingsError, load_settings
from engine.startup import honour_sigterm_from_now


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Sakk: payment events through Kafka to a double-entry ledger.

    Configuration comes from SAKK_* environment variables. Without
    SAKK_KAFKA_BOOTSTRAP_SERVERS an embedded broker is started for the command;
    without SAKK_DATABASE_URL the ledger is a SQLite file under var/.
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    logs.configure(settings.log_level)
    ctx.obj = settings


def main() -> None:
    honour_sigterm_from_now()  # the ``sakk`` script enters here; idempotent after __main__
    # One module per command: importing each registers it on ``cli``.
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    try:
        cli()
    except SettingsError as exc:  # a setting only this command uses (e.g. the webhook key)
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from exc
