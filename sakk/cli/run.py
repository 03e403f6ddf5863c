"""``sakk run validator|settlement|notification|all``: the consumers as a service."""

from __future__ import annotations

import threading

import click

from engine.config import Settings, SettingsError
from engine.ledger.exceptions import ReleaseSchemaConflictError
from engine.pipeline.service import install_signal_handlers
from sakk.app import STAGE_NAMES, TOPOLOGY, kafka_for, prepare, run_consumers
from sakk.cli import cli


@cli.command()
@click.argument("consumer", type=click.Choice([*STAGE_NAMES, "all"]))
@click.pass_obj
def run(settings: Settings, consumer: str) -> None:
    """Run a consumer (or all three, each in its own thread) until SIGTERM or Ctrl-C.

    Exits 0 after a clean stop; 1 when a stage died (an error escaped its loop: the
    others stop after their batch in hand) or did not stop in time.
    """
    names = STAGE_NAMES if consumer == "all" else (consumer,)
    try:
        for name in names:  # only the stage that sends checks its sender
            check = TOPOLOGY.stage(name).check
            if check is not None:
                check(settings)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    stop_event = threading.Event()
    install_signal_handlers(stop_event)
    with kafka_for(settings) as live:
        if settings.uses_embedded_broker:
            prepare(live)
            click.echo(f"embedded broker: {live.kafka_bootstrap_servers}", err=True)
        try:
            threads = run_consumers(live, names, stop_event)
        except ReleaseSchemaConflictError as exc:
            raise click.ClickException(f"refusing to start: {exc}") from exc
        while any(t.is_alive() for t in threads):
            stop_event.wait(0.5)
            if stop_event.is_set():
                for t in threads:
                    t.join(live.shutdown_timeout_s)
                break
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise click.ClickException(f"did not stop within {settings.shutdown_timeout_s}s: {stuck}")
    failed = [t.name for t in threads if t.failed]
    if failed:
        # Non-zero, so a supervisor that restarts on failure restarts it.
        raise click.ClickException(f"stopped because a stage died: {', '.join(failed)}")
