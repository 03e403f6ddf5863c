"""``sakk publish FILE``: a bank publishes payments from a JSON Lines file."""

from __future__ import annotations

from pathlib import Path

import click

from engine.app import kafka_for
from engine.cli import cli
from engine.config import Settings


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def publish(settings: Settings, file: Path) -> None:
    """Publish each line of FILE (one PaymentInitiated as JSON per line) to payments.initiated."""
    from producers.jsonl import publish_file

    if settings.uses_embedded_broker:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS: an embedded broker would vanish at exit"
        )
    with kafka_for(settings) as live:
        report = publish_file(live, file)
    click.echo(report.summary())
    if report.bad_lines:
        raise SystemExit(1)
