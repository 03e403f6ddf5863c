"""``sakk chaos``: the fault-injection harness; exits 1 when any invariant was violated."""

from __future__ import annotations

from datetime import datetime

import click

from engine.config import Settings
from sakk.cli import cli
from tooling.chaos.exceptions import ChaosError
from tooling.chaos.harness import ChaosConfig, run_chaos


@cli.command()
@click.option("--seed", default=1, show_default=True, help="Same seed: same payments, same faults.")
@click.option("--payments", default=500, show_default=True, help="Distinct payments to publish.")
@click.option("--duration-s", default=60.0, show_default=True, help="Length of the fault window.")
@click.option(
    "--database-url",
    default="sqlite",
    show_default=True,
    help="'sqlite' (a fresh file) or a PostgreSQL server URL (a fresh database is created on "
    "it and dropped after).",
)
@click.option("--drain-timeout-s", default=180.0, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    help="Business time of the first payment (replays a run's exact bytes; default now).",
)
@click.option("--keep", is_flag=True, help="Keep the run directory and database.")
@click.option("--quiet", is_flag=True, help="Print the report only.")
@click.pass_obj
def chaos(
    settings: Settings,
    seed: int,
    payments: int,
    duration_s: float,
    database_url: str,
    drain_timeout_s: float,
    start: datetime | None,
    keep: bool,
    quiet: bool,
) -> None:
    """Kill, freeze and starve the consumers as payments flow; check nothing is lost or doubled."""
    progress = None if quiet else (lambda line: click.echo(line, err=True))
    try:
        config = ChaosConfig(
            seed=seed,
            payments=payments,
            duration_s=duration_s,
            database_url=database_url,
            drain_timeout_s=drain_timeout_s,
            start=start,
            keep=keep,
        )
        report = run_chaos(config, settings, progress)
    except (ChaosError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report.render())
    raise SystemExit(0 if report.ok else 1)
