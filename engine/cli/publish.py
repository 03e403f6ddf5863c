"""``sakk publish FILE``: a bank publishes payments from a JSON Lines file, signed with its key."""

from __future__ import annotations

from pathlib import Path

import click

from engine.app import kafka_for
from engine.cli import cli
from engine.cli.options import bank_settings
from engine.config import Settings


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--signing-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The bank's private key file (default: SAKK_SIGNING_KEY_FILE).",
)
@click.pass_obj
def publish(settings: Settings, file: Path, signing_key: Path | None) -> None:
    """Publish each line of FILE (one PaymentInitiated as JSON per line) to payments.initiated.

    Each payment is signed as its payer's bank with the key file given: one key file is
    one bank's key, so a line of another payer bank is reported and skipped.
    """
    from producers.exceptions import PublisherError
    from producers.jsonl import publish_file

    settings = bank_settings(settings, signing_key)
    try:
        with kafka_for(settings) as live:
            report = publish_file(live, file)
    except PublisherError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report.summary())
    if report.bad_lines:
        raise SystemExit(1)
