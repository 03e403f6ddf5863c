"""``sakk payments search|show``: payments as the read side serves them, newest first."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table

from engine.audit.exceptions import AuditError
from engine.audit.export import jsonable
from engine.config import Settings
from engine.read.audience import Audience
from engine.read.exceptions import NotVisibleError, ReadError
from engine.read.payments import PaymentFilter, PaymentView, get_payment, search_payments
from engine.read.snapshot import snapshot
from engine.times import as_utc, parse_instant
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.options import audience_option, page_options

COLUMNS = (
    "payment_id", "occurred_at", "payer_bank", "payer_account", "payee_bank", "payee_account",
    "amount_minor", "currency", "channel", "state", "reason_code",
)  # fmt: skip


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except AuditError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


@cli.group()
def payments() -> None:
    """Payments: search them, show one (accounts masked unless --as auditor)."""


@payments.command("search")
@click.option("--payment-id", help="The switch's id, BANK:ID.")
@click.option("--reference", "bank_reference", help="The payer bank's own reference.")
@click.option("--bank", metavar="CODE", help="Payer's or payee's bank.")
@click.option("--account-last4", metavar="DIGITS", help="Last 4 digits of either account.")
@click.option("--state", help="SETTLED, REJECTED, FAILED, AUTHORIZED, ...")
@click.option("--reason", "reason_code", metavar="CODE", help="Reason code (AM04, AC04, ...).")
@click.option("--channel", help="MOBILE, CARD, EGOV, ...")
@click.option("--since", metavar="TIME", help="Occurred at or after (ISO 8601, UTC).")
@click.option("--until", metavar="TIME", help="Occurred before (ISO 8601, UTC).")
@page_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@audience_option
@click.pass_obj
def payments_search(
    settings: Settings, limit: int, after: str | None, fmt: str, audience: Audience, **fields: str
) -> None:
    """Payments matching every filter given, newest first, a page at a time."""
    since = _instant(fields.pop("since"), "--since")
    until = _instant(fields.pop("until"), "--until")
    try:
        which = PaymentFilter(**fields, since=since, until=until)
        with snapshot(ledger_engine(settings)) as conn:
            page = search_payments(conn, audience, which, after, limit)
    except ReadError as exc:
        raise click.UsageError(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps(jsonable([asdict(p) for p in page.items]), indent=2))
    else:
        _print(page.items)
    if page.next_cursor is not None:
        click.echo(f"more match: next page with --after {page.next_cursor}", err=True)


@payments.command("show")
@click.argument("payment_id")
@audience_option
@click.pass_obj
def payments_show(settings: Settings, payment_id: str, audience: Audience) -> None:
    """One payment's current state as JSON (its whole life: sakk trace)."""
    try:
        with snapshot(ledger_engine(settings)) as conn:
            view = get_payment(conn, audience, payment_id)
    except NotVisibleError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(jsonable(asdict(view)), indent=2))


def _print(views: tuple[PaymentView, ...]) -> None:
    table = Table(title=f"{len(views)} payments")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "))
    for view in views:
        row = asdict(view)
        cells = []
        for column in COLUMNS:
            value = row[column]
            if isinstance(value, datetime):
                value = as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
            cells.append("" if value is None else str(value))
        table.add_row(*cells)
    Console(width=220).print(table)
