"""``sakk notifications list|redeliver``: what the banks were told, and telling them again."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from engine.audit.exceptions import AuditError
from engine.audit.export import jsonable
from engine.config import Settings
from engine.ledger.notifications import (
    STATUSES,
    NotificationFilter,
    RedeliveryError,
    RedeliveryReport,
)
from engine.ops.action import ActionRefusedError
from engine.ops.notifications import Redeliver, run_redelivery
from engine.read.audience import Audience
from engine.read.exceptions import ReadError
from engine.read.notifications import list_notifications
from engine.read.snapshot import snapshot
from engine.times import as_utc, parse_instant
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.options import (
    actor_of,
    actor_options,
    audience_option,
    file_proposal,
    page_options,
    propose_options,
)

TABLE_COLUMNS = (
    "notification_id", "payment_id", "recipient_bank", "outcome", "status", "attempts",
    "round", "next_attempt_at", "last_error",
)  # fmt: skip


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except AuditError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc


@cli.group()
def notifications() -> None:
    """Notifications to the banks: delivery status, attempts, redelivery."""


@notifications.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--bank", metavar="CODE", help="Only notifications to this bank.")
@click.option("--since", metavar="TIME", help="Created at or after this ISO 8601 time (UTC).")
@page_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@audience_option
@click.pass_obj
def notifications_list(
    settings: Settings,
    status: str | None,
    bank: str | None,
    since: str | None,
    limit: int,
    after: str | None,
    fmt: str,
    audience: Audience,
) -> None:
    """Notifications, oldest first, with their attempts and last error (never their payload).

    A page at a time: when more match, the command says how to ask for the next page.
    """
    which = NotificationFilter(status=status, bank=bank, since=_since(since))
    try:
        with snapshot(ledger_engine(settings)) as conn:
            page = list_notifications(conn, audience, which, after, limit)
    except ReadError as exc:
        raise click.UsageError(str(exc)) from exc
    rows = [view.as_dict() for view in page.items]
    if page.next_cursor is not None:
        click.echo(f"more match: next page with --after {page.next_cursor}", err=True)
    if fmt == "json":
        click.echo(json.dumps(jsonable(rows), indent=2, sort_keys=True))
        return
    table = Table(title=f"{len(rows)} notifications")
    for column in TABLE_COLUMNS:
        table.add_column(column.replace("_", " "))
    for row in rows:
        cells = []
        for column in TABLE_COLUMNS:
            value = row[column]
            if isinstance(value, datetime):
                value = as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
            cells.append("" if value is None else str(value))
        table.add_row(*cells)
    Console(width=200).print(table)


@notifications.command("redeliver")
@click.argument("notification_ids", nargs=-1)
@click.option(
    "--status",
    type=click.Choice(["FAILED"]),
    help="Select by status (only given-up notifications are redelivered).",
)
@click.option("--bank", metavar="CODE", help="Select the notifications to this bank.")
@click.option("--since", metavar="TIME", help="Created at or after this ISO 8601 time (UTC).")
@actor_options
@propose_options
@click.pass_obj
def notifications_redeliver(
    settings: Settings,
    notification_ids: tuple[str, ...],
    status: str | None,
    bank: str | None,
    since: str | None,
    by: str | None,
    reason: str | None,
    propose: bool,
    expires_in_s: int,
) -> None:
    """Send given-up (FAILED) notifications again, under the same notification id.

    Idempotent: a notification already PENDING or DELIVERED is left as it is. Each
    redelivery is recorded with who asked, when and why, and the request in the
    operator audit log (sakk audit log). --propose (four eyes, for a redelivery in bulk):
    redelivered once another operator approves it (sakk proposals).
    """
    if by is not None and not by.strip():
        raise click.UsageError("a redelivery names who asks for it")
    actor = actor_of(by, reason)
    selected_status = status or (None if notification_ids else "FAILED")
    which = NotificationFilter(
        status=selected_status, bank=bank, since=_since(since), ids=notification_ids
    )
    action = Redeliver(which, actor.name, settings.notify_horizon_s, reason)
    if propose:
        file_proposal(settings, action, actor, expires_in_s)
        return
    try:
        done = run_redelivery(ledger_engine(settings), action, actor, datetime.now(UTC))
    except (RedeliveryError, ActionRefusedError) as exc:
        raise click.UsageError(str(exc)) from exc
    report: RedeliveryReport = done.result
    for nid in report.redelivered:
        click.echo(f"redelivering {nid}")
    for nid, why in sorted(report.unchanged.items()):
        click.echo(f"unchanged   {nid} ({why})")
    click.echo(
        f"{len(report.redelivered)} redelivered, {len(report.unchanged)} unchanged; "
        f"requested by {report.requested_by} at {report.requested_at:%Y-%m-%dT%H:%M:%SZ}"
    )
