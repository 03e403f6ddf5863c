"""``sakk db upgrade``: bring the ledger database to the latest migration."""

from __future__ import annotations

import click

from engine.config import Settings
from engine.ledger.exceptions import ReleaseSchemaConflictError
from sakk.app import upgrade_and_approve_release
from sakk.cli import cli


@cli.group()
def db() -> None:
    """Ledger database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply the Alembic migrations; at head, approve this release's own schemas."""
    try:
        upgrade_and_approve_release(settings, revision)
    except ReleaseSchemaConflictError as exc:
        raise click.ClickException(f"ledger upgraded, but: {exc}") from exc
    click.echo(
        f"ledger at {revision}: {settings.redacted()['database_url'] or settings.ledger_url}"
    )
