"""``sakk iso import|statement|notification|window``: ISO 20022 files in, reports out."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import click

from engine.config import Settings
from sakk.app import kafka_for, ledger_engine
from sakk.cli import cli
from sakk.cli.options import bank_settings


@cli.group()
def iso() -> None:
    """ISO 20022 messages: pacs.008.001.08 and pain.001.001.09 in; camt.053.001.08 and
    camt.054.001.08 out (pacs.002 and pacs.004 go out as notifications)."""


def _write(document: bytes, out: Path | None, what: str) -> None:
    if out is None:
        click.echo(document.decode("utf-8"), nl=False)
    else:
        out.write_bytes(document)
        click.echo(f"{out}: {what} written")


_OUT = click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the document here (default: standard output).",
)  # fmt: skip


@cli.group()
def directory() -> None:
    """The bank directory banks' tools read: bank codes and BICs, as a file."""


@directory.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def directory_export(settings: Settings, file: Path) -> None:
    """Write the switch's bank directory (bank code -> BIC) to FILE, as JSON.

    Publish FILE to the banks: `sakk iso import --directory FILE` maps BICs to bank codes
    with it, without any access to the switch's ledger. Export it again when a bank or a
    BIC changes in reference data.
    """
    from engine.iso.directory import BankDirectory, write_file

    found = BankDirectory.from_ledger(ledger_engine(settings))
    write_file(found, file)
    click.echo(f"{file}: {len(found.codes)} banks written")


@iso.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--directory",
    "directory_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SAKK_BANK_DIRECTORY_FILE",
    default=None,
    help="The bank directory the switch publishes (`sakk directory export`); "
    "default: SAKK_BANK_DIRECTORY_FILE.",
)
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
    settings: Settings,
    file: Path,
    directory_path: Path | None,
    atomic: bool,
    signing_key: Path | None,
    report_path: Path | None,
) -> None:
    """Publish each transaction of FILE (pacs.008 or pain.001) as a signed PaymentInitiated.

    Needs the broker, the bank's signing key and the bank directory file the switch
    publishes (--directory): never the switch's ledger. The file is validated against
    its official message definition first; every problem of a bad transaction is
    reported (which one, which element, why) and the good ones still go, unless
    --atomic. Exits 1 when any transaction was refused, 2 when the file was refused as a
    whole or the command cannot start (no directory, no key).
    """
    from engine.iso.directory import read_file
    from engine.iso.errors import DirectoryFileError, IsoError
    from producers.exceptions import PublisherError
    from producers.iso_import import import_file

    if directory_path is None:
        raise click.UsageError(
            "no bank directory: pass --directory FILE or set SAKK_BANK_DIRECTORY_FILE "
            "(the switch writes it with `sakk directory export FILE`)"
        )
    try:
        bank_directory = read_file(directory_path)
    except DirectoryFileError as exc:
        raise click.UsageError(str(exc)) from exc
    settings = bank_settings(settings, signing_key)
    try:
        with kafka_for(settings) as live:
            report = import_file(live, bank_directory, file, atomic=atomic)
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


@iso.command("statement")
@click.option("--account", required=True, help="The account number (RIB).")
@click.option("--day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="YYYY-MM-DD (UTC).")
@_OUT
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
    _write(document, out, "camt.053.001.08 statement")


@iso.command("notification")
@click.option("--posting", "posting_id", default=None, help="Every entry of this posting.")
@click.option("--entry", "entry_id", type=int, default=None, help="This one ledger entry.")
@click.option("--account", default=None, help="Only the entries on this account (RIB).")
@_OUT
@click.pass_obj
def iso_notification(
    settings: Settings,
    posting_id: str | None,
    entry_id: int | None,
    account: str | None,
    out: Path | None,
) -> None:
    """Write a camt.054.001.08 debit/credit notification: one per ledger entry.

    Name a posting (all its entries: payer, payee, settlement accounts, fee) or one entry;
    --account keeps the entries on one account only.
    """
    from engine.iso.camt054 import EntryNotFoundError, notification_document

    if (posting_id is None) == (entry_id is None):
        raise click.UsageError("pass --posting ID or --entry ID (one of them)")
    try:
        document = notification_document(
            ledger_engine(settings), datetime.now(UTC), posting_id, entry_id, account
        )
    except EntryNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    _write(document, out, "camt.054.001.08 notification")


@iso.command("window")
@click.option("--label", required=True, help="The window: 2026-11-26, or 2026-11-26T06:00Z/6h.")
@click.option("--bank", default=None, help="Only this bank's positions (its bank code).")
@_OUT
@click.pass_obj
def iso_window(settings: Settings, label: str, bank: str | None, out: Path | None) -> None:
    """Write a settlement window's positions as camt.053.001.08 statements, one per bank.

    Opening 0, closing (CLBD, or ITBD while the window is open) = the bank's net position,
    gross credits and debits in the summary; the figures of `sakk settlement report`.
    """
    from engine.audit.exceptions import WindowError
    from engine.iso.window import WindowExportError, window_document

    try:
        document = window_document(ledger_engine(settings), label, datetime.now(UTC), bank)
    except (WindowError, WindowExportError) as exc:
        raise click.ClickException(str(exc)) from exc
    _write(document, out, "camt.053.001.08 window report")
