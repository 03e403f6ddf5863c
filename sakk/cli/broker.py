"""``sakk broker``: the embedded Kafka-compatible broker in the foreground (memory only)."""

from __future__ import annotations

import threading

import click

from engine.config import Settings
from engine.kafka.client import create_topics
from engine.kafka.embedded import EmbeddedBroker
from engine.pipeline.service import install_signal_handlers
from sakk.cli import cli


@cli.command()
@click.option("--port", type=int, default=9092, show_default=True)
@click.pass_obj
def broker(settings: Settings, port: int) -> None:
    """Run the embedded broker with the payment topics until Ctrl-C. Data lives in memory only."""
    stop = threading.Event()
    install_signal_handlers(stop)
    with EmbeddedBroker(port=port) as b:
        create_topics(settings.replace(kafka_bootstrap_servers=b.bootstrap_servers))
        click.echo(f"embedded broker on {b.bootstrap_servers} (memory only); Ctrl-C stops it")
        click.echo(f"export SAKK_KAFKA_BOOTSTRAP_SERVERS={b.bootstrap_servers}")
        stop.wait()
