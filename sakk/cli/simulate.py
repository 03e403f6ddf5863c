"""``sakk simulate``: multichannel bank traffic, good and bad, at a chosen rate."""

from __future__ import annotations

import click

from engine.config import Settings
from sakk.cli import cli
from tooling.workload.profiles import MIXES, SIMULATE
from tooling.workload.traffic import simulate as run_simulation


@cli.command()
@click.option("--payments", default=1000, show_default=True, help="Messages to publish.")
@click.option("--rate", type=int, default=None, help="Payments per second (default: unpaced).")
@click.option("--seed", default=1, show_default=True)
@click.option(
    "--profile",
    type=click.Choice(list(MIXES)),
    default=SIMULATE.mix,
    show_default=True,
    help="The traffic mix: skew sends 70% of payments from one bank's customers to one "
    "merchant, and every e-government payment to the vignette's account (hot accounts).",
)
@click.option(
    "--lifecycle/--no-lifecycle",
    default=SIMULATE.lifecycle,
    show_default=True,
    help="Card authorizations with their captures and voids, a few expiries, airline "
    "refunds and interbank returns, each step signed by its sender bank (counted among "
    "--payments).",
)
@click.pass_obj
def simulate(
    settings: Settings, payments: int, rate: int | None, seed: int, profile: str, lifecycle: bool
) -> None:
    """Publish simulated traffic from every channel to payments.initiated.

    Each simulated bank signs with a key derived from the seed, whose public half is
    first registered in the ledger (SAKK_DATABASE_URL, its reference data loaded): a
    simulation's keys are known to anyone who knows the seed, so never point this at a
    ledger that real banks use.
    """
    from producers.exceptions import PublisherError

    if settings.uses_embedded_broker:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS: an embedded broker would vanish at exit"
        )
    try:
        report = run_simulation(
            settings,
            payments=payments,
            seed=seed,
            rate_per_s=rate,
            progress=None,
            reference_path=settings.reference_file,
            profile=profile,
            lifecycle=lifecycle,
        )
    except PublisherError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report.summary())
