"""``sakk trace``: one payment's life: hold, steps, topics, states, postings, notifications."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.audit.exceptions import AuditError
from engine.audit.export import jsonable, write_report
from engine.audit.trace import scan_topics
from engine.audit.urls import as_database_url
from engine.config import Settings
from engine.kafka.exceptions import KafkaPlumbingError
from engine.ledger.database import make_engine
from engine.read.audience import Audience
from engine.read.exceptions import NotVisibleError
from engine.read.snapshot import snapshot
from engine.read.trace import PaymentTrace, TraceView, find_payment_ids, read_trace
from sakk.app import TOPOLOGY
from sakk.cli import cli
from sakk.cli.options import audience_option, report_options

EVENT_COLUMNS = (
    "event_type",
    "topic",
    "partition",
    "offset",
    "record_time",
    "on_topic",
    "produced_by",
    "consumed_by",
    "outcome",
    "handled_at",
    "event_id",
)

STEP_COLUMNS = (  # --format json has every field (step_id, reference, currency, window)
    "occurred_at",
    "kind",
    "sender_bank",
    "amount_minor",
    "fee_minor",
    "outcome",
    "reason_code",
    "reason_message",
    "posting_id",
)

REDRIVE_COLUMNS = (
    "dead_letter_id",
    "requested_by",
    "requested_at",
    "reason",
    "body_source",
    "status",
    "target_topic",
    "published_partition",
    "published_offset",
    "published_at",
)


@cli.command("trace")
@click.argument("payment_id", required=False)
@click.option(
    "--reference",
    "bank_reference",
    metavar="BANK:REFERENCE",
    help="Every payment the bank sent with this reference (a retry shows up too).",
)
@click.option(
    "--database-url", "database", metavar="URL|FILE", help="Ledger to read (default: live)."
)
@click.option(
    "--scan-topics",
    "scan",
    is_flag=True,
    help="Read each event back from the broker, confirm it, find unconsumed ones.",
)
@audience_option
@report_options("the trace")
@click.pass_obj
def trace_command(
    settings: Settings,
    payment_id: str | None,
    bank_reference: str | None,
    database: str | None,
    scan: bool,
    audience: Audience,
    fmt: str,
    out_dir: Path | None,
) -> None:
    """Print a payment's life: hold, steps, events (topic, partition, offset, time), states,
    postings, notices.

    PAYMENT_ID is the switch's id, BANK:ID (what notifications carry); a bank's own id
    alone finds that id in every bank's namespace. With --scan-topics each event is read
    back from the broker and confirmed. Account numbers show to their last 4 digits
    unless --as auditor; --as bank:CODE shows what that bank may see.
    """
    if (payment_id is None) == (bank_reference is None):
        raise click.UsageError("give a PAYMENT_ID or --reference BANK:REFERENCE")
    engine = make_engine(as_database_url(database) if database else settings.ledger_url)
    try:
        with snapshot(engine) as conn:
            ids = find_payment_ids(conn, audience, payment_id, bank_reference)
            stored = [read_trace(conn, pid, TOPOLOGY) for pid in ids]
    except (AuditError, NotVisibleError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    if scan:  # on the stored rows: the scan finds events by their keys
        _scan(settings, stored)
    for trace in (s.for_audience(audience) for s in stored):
        if out_dir is not None:
            for path in write_report(
                out_dir,
                f"trace-{trace.payment_id.replace(':', '_')}",
                trace.payment,
                trace.sections(),
            ):
                click.echo(f"wrote {path}", err=True)
        if fmt == "json":
            click.echo(
                json.dumps(jsonable({"payment": trace.payment, **trace.sections()}), indent=2)
            )
        else:
            _print(Console(), trace)


def _scan(settings: Settings, traces: list[PaymentTrace]) -> None:
    if settings.uses_embedded_broker:
        raise click.UsageError("--scan-topics needs SAKK_KAFKA_BOOTSTRAP_SERVERS")
    from engine.audit.replay import replay_codec

    codec = replay_codec(settings)
    try:
        for trace in traces:
            scan_topics(settings, codec, trace)
    except (AuditError, KafkaPlumbingError) as exc:
        raise click.ClickException(str(exc)) from exc


def _table(
    console: Console, title: str, rows: Sequence[dict[str, Any]], columns: tuple[str, ...] = ()
) -> None:
    if not rows:
        console.print(f"[dim]{title}: none[/]")
        return
    columns = columns or tuple(dict.fromkeys(k for row in rows for k in row))
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(  # escaped: a reason an operator typed may hold brackets
            *("" if row.get(c) is None else escape(str(jsonable(row.get(c)))) for c in columns)
        )
    console.print(table)


def _hold_line(hold: dict[str, Any]) -> str:
    """The hold: what it reserved, what is still reserved, what was captured, and until when."""
    resolved = (
        f"  resolved {jsonable(hold['resolved_at'])} by step {hold['resolved_by']}"
        if hold["resolved_by"]
        else ""
    )
    return (
        f"hold [bold]{hold['state']}[/]  amount {hold['amount_minor']} (fee {hold['fee_minor']})"
        f"  reserved {hold['reserved_minor']}  captured {hold['captured_minor']}"
        f" {hold['currency']}  expires {jsonable(hold['expires_at'])}{resolved}"
    )


def _print(console: Console, trace: TraceView) -> None:
    p = trace.payment
    console.rule(f"payment {trace.payment_id}")
    console.print(
        f"{p['payer_bank']}/{p['payer_account']} -> {p['payee_bank']}/{p['payee_account']}"
        f"  {p['amount_minor']} {p['currency']} ({p['channel']} {p['payment_type']})"
        f"  reference {p['bank_reference']}  occurred {jsonable(p['occurred_at'])}"
    )
    console.print(
        f"state [bold]{p['state']}[/] {p['reason_code'] or ''} {p['reason_message'] or ''}"
        f"  fee {p['fee_minor']}  window {p['settlement_window']}"
    )
    console.print(trace.signer())
    if p.get("intent") == "AUTHORIZATION" or trace.steps:
        console.print(
            f"intent {p.get('intent')}  captured {p.get('captured_minor')}"
            f"  refunded {p.get('refunded_minor')}"
        )
    if trace.hold is not None:
        console.print(_hold_line(trace.hold))
    _table(console, "Steps (applied or refused)", trace.steps, STEP_COLUMNS)
    _table(console, "Events", trace.events, EVENT_COLUMNS)
    _table(console, "State changes", trace.transitions)
    _table(console, "Postings", trace.postings)
    _table(console, "Ledger entries", trace.entries)
    _table(console, "Notifications", trace.notifications)
    _table(console, "Delivery attempts", trace.attempts)
    if trace.redeliveries:
        _table(console, "Redeliveries (sakk notifications redeliver)", trace.redeliveries)
    if trace.dead_letters:
        _table(console, "Dead letters", trace.dead_letters)
    if trace.redrives:
        _table(
            console, "Dead letters sent again (sakk dlq redrive)", trace.redrives, REDRIVE_COLUMNS
        )
