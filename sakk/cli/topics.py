"""``sakk topics create``: the payment topics, with the configured partition count."""

from __future__ import annotations

import click

from engine.config import Settings
from engine.kafka.client import all_topics, create_topics
from sakk.cli import cli


@cli.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
@click.pass_obj
def topics_create(settings: Settings) -> None:
    """Create the missing topics (existing ones are left alone)."""
    if settings.uses_embedded_broker:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS (an embedded broker would vanish at exit)"
        )
    created = create_topics(settings)
    for name in all_topics(settings):
        click.echo(f"{'created' if name in created else 'exists '} {name}")
