"""``sakk iso import|statement``: ISO 20022 files in, camt.053 statements out."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import click

from engine.app import kafka_for, ledger_engine
from engine.cli import cli
from engine.config import Settings


@cli.group()
def iso() -> None:
    """ISO 20022 messages: pacs.008.001.08 and pain.001.001.09 in, camt.053.001.08 out."""


@iso.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--atomic", is_flag=True, help="All or nothing: one bad transaction stops the file.")
@click.option(
    "--signing-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The bank's private key file (default: SAKK_SIGNING_KEY_FILE).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON, remittance information included.",
)
@click.pass_obj
def iso_import(
    settings: Settings, file: Path, atomic: bool, signing_key: Path | None, report_path: Path | None
) -> None:
    """Publish each transaction of FILE (pacs.008 or pain.001) as a signed PaymentInitiated.

    The file is validated against its message definition first; a bad transaction is
    reported (which one, which element, why) and the good ones still go, unless --atomic.
    Exits 1 when any transaction was refused, 2 when the file was refused as a whole.
    """
    from engine.iso.errors import IsoError
    from engine.iso.importer import import_file
    from producers.exceptions import PublisherError

    settings = _bank_settings(settings, signing_key)
    try:
        with kafka_for(settings) as live:
            report = import_file(live, ledger_engine(live), file, atomic=atomic)
    except IsoError as exc:
        click.echo(f"{file}: refused: {exc}", err=True)
        raise SystemExit(2) from exc
    except PublisherError as exc:
        raise click.ClickException(str(exc)) from exc
    if report_path is not None:
        report_path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)


def _bank_settings(settings: Settings, signing_key: Path | None) -> Settings:
    """Settings a bank publishes with, as ``sakk publish`` requires them."""
    if settings.uses_embedded_broker:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS: an embedded broker would vanish at exit"
        )
    if signing_key is not None:
        settings = settings.replace(signing_key_file=signing_key)
    if settings.signing_key_file is None:
        raise click.UsageError(
            "no signing key: pass --signing-key FILE or set SAKK_SIGNING_KEY_FILE "
            "(sakk keys generate BANK writes one)"
        )
    return settings


@iso.command("statement")
@click.option("--account", required=True, help="The account number (RIB).")
@click.option("--day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="YYYY-MM-DD (UTC).")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the statement here (default: standard output).",
)  # fmt: skip
@click.pass_obj
def iso_statement(settings: Settings, account: str, day: datetime, out: Path | None) -> None:
    """Write ACCOUNT's camt.053.001.08 end-of-day statement for DAY.

    Opening and closing balances, and every entry with its payment's references; the
    closing balance is checked against the ledger's balance before anything is written.
    """
    from engine.iso.statement import StatementError, statement_document

    try:
        document = statement_document(
            ledger_engine(settings), account, date(day.year, day.month, day.day), datetime.now(UTC)
        )
    except StatementError as exc:
        raise click.ClickException(str(exc)) from exc
    if out is None:
        click.echo(document.decode("utf-8"), nl=False)
    else:
        out.write_bytes(document)
        click.echo(f"{out}: camt.053.001.08 statement written")
