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


# The development tools (``sakk demo``, ``bench``, ``chaos``, ``simulate``) live in the
# ``tooling`` package, which a source checkout installs and the production image leaves out.
TOOLING = "tooling"
MISSING_TOOLING = (
    "`sakk {name}` needs the development tools (the tooling package), which this "
    "installation leaves out (the production image does): from a source checkout, "
    "make install, or pip install -e '.[dev]' -e ./tooling"
)


def missing_tooling(exc: ModuleNotFoundError) -> bool:
    """Whether ``exc`` says the tooling package is absent (not some other missing module)."""
    return exc.name is not None and exc.name.split(".")[0] == TOOLING


def _tooling_missing_command(name: str) -> click.Command:
    """A stand-in for a development command whose tooling is not installed: it says so."""

    @click.command(
        name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
        help="(needs the tooling: not installed)",
    )
    def command() -> None:
        raise click.ClickException(MISSING_TOOLING.format(name=name))

    return command


def register_commands() -> None:
    """Import one module per command (each registers itself on ``cli``).

    A development command whose ``tooling`` is absent becomes a stand-in that says how
    to install it, so the production commands still start.
    """
    for module in pkgutil.iter_modules(__path__):
        try:
            importlib.import_module(f"{__name__}.{module.name}")
        except ModuleNotFoundError as exc:
            if not missing_tooling(exc):
                raise
            cli.add_command(_tooling_missing_command(module.name))


def main() -> None:
    honour_sigterm_from_now()  # the ``sakk`` script enters here; idempotent after __main__
    register_commands()
    try:
        cli()
    except SettingsError as exc:  # a setting only this command uses (e.g. the webhook key)
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from exc
