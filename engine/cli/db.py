"""``sakk db upgrade``: bring the ledger database to the latest migration."""

from __future__ import annotations

import click

from engine.cli import cli
from engine.config import Settings
from engine.ledger.database import upgrade


@cli.group()
def db() -> None:
    """Ledger database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply the Alembic migrations."""
    upgrade(settings.ledger_url, revision)
    click.echo(
        f"ledger at {revision}: {settings.redacted()['database_url'] or settings.ledger_url}"
    )
