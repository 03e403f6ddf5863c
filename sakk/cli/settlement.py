"""``sakk settlement report|close``: interbank net positions per settlement window, and its close.

The rest of a window's lifecycle (settle, confirm, abort) is ``sakk.cli.settlement_windows``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from engine.audit.exceptions import WindowError
from engine.audit.export import csv_text, jsonable, write_report
from engine.audit.urls import as_database_url
from engine.audit.window_lifecycle import (
    TransitionRefused,
    window_rows,
)
from engine.audit.windows import (
    DEFAULT_WINDOW_HOURS,
    SUPPORTED_WINDOW_HOURS,
    CloseResult,
    Window,
    WindowReport,
    all_window_reports,
    close_window,
    mark_published,
    window_report,
)
from engine.config import Settings
from engine.kafka.exceptions import KafkaPlumbingError
from engine.ledger.database import make_engine
from engine.money import format_minor
from engine.ops.action import ActionRefusedError, Actor, run_action
from engine.ops.windows import CloseWindow
from engine.read.snapshot import REPORT_TIMEOUT_MS, snapshot
from engine.risk.windows import closes_at, may_close
from sakk.cli import cli
from sakk.cli.options import actor_of, actor_options

WINDOW_HOURS_ENV = "SAKK_SETTLEMENT_WINDOW_HOURS"
CLOSE_DELAY_ENV = "SAKK_SETTLEMENT_CLOSE_DELAY_S"
SHOWN_HEADS = 64  # chain heads printed after a close


def _hours_option(f: Any) -> Any:
    return click.option(
        "--window-hours",
        "hours",
        type=click.Choice([str(h) for h in SUPPORTED_WINDOW_HOURS]),
        default=str(DEFAULT_WINDOW_HOURS),
        show_default=True,
        envvar=WINDOW_HOURS_ENV,
        help=f"Window length, aligned on UTC midnight (env {WINDOW_HOURS_ENV}).",
    )(f)


def _database_option(f: Any) -> Any:
    return click.option(
        "--database-url", "database", metavar="URL|FILE", help="Ledger to read (default: live)."
    )(f)


@cli.group()
def settlement() -> None:
    """Interbank settlement windows."""


@settlement.command("report")
@click.option(
    "--window",
    "window_text",
    metavar="DAY|START",
    help="2026-11-26, or a shorter window's start: 2026-11-26T06:00.",
)
@click.option("--all", "every", is_flag=True, help="Every window that has interbank postings.")
@_hours_option
@_database_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "csv"]),
    default="text",
    show_default=True,
    help="csv prints the positions; --out writes every format.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write JSON and CSV files to this directory.",
)
@click.pass_obj
def settlement_report(
    settings: Settings,
    window_text: str | None,
    every: bool,
    hours: str,
    database: str | None,
    fmt: str,
    out_dir: Path | None,
) -> None:
    """Each bank's gross debits, gross credits and multilateral net position in a window.

    Payments, captures, refunds and returns count, each in the window of its own time;
    one written after its window closed counts in the next window still open.
    """
    if bool(window_text) == every:
        raise click.UsageError("give --window or --all")
    engine = make_engine(as_database_url(database) if database else settings.ledger_url)
    try:
        with snapshot(engine, REPORT_TIMEOUT_MS) as conn:
            if every:
                reports = all_window_reports(conn, int(hours))
            else:
                reports = [window_report(conn, Window.parse(str(window_text), int(hours)))]
    except WindowError as exc:
        raise click.UsageError(str(exc)) from exc
    finally:
        engine.dispose()
    rows = [{"window": r.window.label, "status": "CLOSED" if r.closed else "OPEN", **line.as_dict()}
            for r in reports for line in r.lines]  # fmt: skip
    if out_dir is not None:
        summary = {"windows": [r.summary() for r in reports]}
        for path in write_report(out_dir, "settlement", summary, {"positions": rows}):
            click.echo(f"wrote {path}", err=True)
    if fmt == "json":
        click.echo(
            json.dumps(
                jsonable(
                    [{**r.summary(), "positions": [x.as_dict() for x in r.lines]} for r in reports]
                ),
                indent=2,
            )
        )
    elif fmt == "csv":
        click.echo(csv_text(rows), nl=False)
    else:
        console = Console()
        for report in reports:
            _print(console, report)
    if any(r.mismatches() or any(r.net_by_currency().values()) for r in reports):
        raise SystemExit(1)


@settlement.command("close")
@click.option("--window", "window_text", required=True, metavar="DAY|START")
@_hours_option
@_database_option
@click.option("--early", is_flag=True, help="Close a window that has not ended yet.")
@click.option(
    "--delay-s",
    type=click.IntRange(0, 600),
    help="Seconds to wait after the request so payments in flight finish in this window "
    f"(default: {CLOSE_DELAY_ENV}).",
)
@click.option(
    "--no-publish",
    is_flag=True,
    help="Record the close in the ledger only (no broker); publish later by closing again.",
)
@actor_options
@click.option("--json", "as_json", is_flag=True, help="Print the close as JSON.")
@click.pass_obj
def settlement_close(
    settings: Settings, window_text: str, hours: str, database: str | None, early: bool,
    delay_s: int | None, no_publish: bool, by: str | None, reason: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Make a window's net positions final (CLOSED) and publish its events.

    The close is asked for now and made once the delay has passed: a payment taken in
    before the request and settled within the delay counts in this window, any later one
    in the next window still open. Closing again changes nothing in the ledger and
    re-publishes the same events. The close is recorded in the operator audit log
    (sakk audit log) and as the window's CLOSED row.
    """
    actor = actor_of(by, reason)
    if settings.uses_embedded_broker and not no_publish:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS to publish the close, "
            "or record it only with --no-publish"
        )
    delay = timedelta(seconds=settings.settlement_close_delay_s if delay_s is None else delay_s)
    engine = make_engine(as_database_url(database) if database else settings.ledger_url)
    try:
        window = Window.parse(window_text, int(hours))
        requested_at = datetime.now(UTC)
        if window.end > requested_at and not early:
            raise WindowError(
                f"window {window.label} ends at {window.end.isoformat()}, after now "
                f"({requested_at.isoformat()}); closing it early needs --early"
            )
        wait_for_close(requested_at, delay)
        result = _close(engine, CloseWindow(window, early, requested_at, actor.name), actor)
        topic = None if no_publish else _publish_close(settings, engine, result.report)
    except TransitionRefused as exc:
        raise click.ClickException(str(exc)) from exc
    except WindowError as exc:
        raise click.UsageError(str(exc)) from exc
    finally:
        engine.dispose()
    _print_close(result, requested_at, delay, topic, as_json)


def wait_for_close(requested_at: datetime, delay: timedelta) -> None:
    """Sleep until the close may be written (``may_close``), at most the delay (bounded)."""
    for _ in range(int(delay.total_seconds()) + 2):
        now = datetime.now(UTC)
        if may_close(now, requested_at, delay):
            return
        time.sleep(min(1.0, (closes_at(requested_at, delay) - now).total_seconds()))


def _publish_close(settings: Settings, engine: Engine, report: WindowReport) -> str:
    from engine.audit.window_events import publish_close, publish_transitions

    label = report.window.label
    try:
        topic = publish_close(settings, report)
        mark_published(engine, label, datetime.now(UTC))
        with engine.connect() as conn:
            rows = window_rows(conn, label).get(label, [])
        return f"{topic}, {publish_transitions(settings, rows)}"
    except KafkaPlumbingError as exc:
        raise click.ClickException(
            f"the close is recorded but not published: {exc}; close again to publish"
        ) from exc


def _print_close(
    result: CloseResult, requested_at: datetime, delay: timedelta, topic: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    report, close = result.report, result.report.close
    if close is None:
        raise click.ClickException(f"window {report.window.label} is not closed")
    if as_json:
        click.echo(json.dumps(jsonable({
            **report.summary(), "state": "CLOSED", "already_closed": result.already_closed,
            "requested_at": requested_at, "delay_s": int(delay.total_seconds()),
            "positions": [x.as_dict() for x in report.lines], "published_to": topic,
        }), indent=2))  # fmt: skip
        return
    console = Console()
    _print(console, report)
    verb = "was already closed" if result.already_closed else "closed"
    console.print(
        f"window {report.window.label} {verb} at {close.closed_at.isoformat()}; chain heads "
        f"(CHAIN:SEQ:HASH):"
    )
    for head in close.heads_list()[:SHOWN_HEADS]:
        console.print(
            f"  {head['chain_id']}:{head['chain_seq']}:{head['chain_hash']}", soft_wrap=True
        )
    if len(close.heads) > SHOWN_HEADS:
        console.print(f"  ... {len(close.heads) - SHOWN_HEADS} more (in the closed event)")
    if topic is not None:
        console.print(f"published SettlementWindowClosed {close.event_id} to {topic}")


def _close(engine: Engine, action: CloseWindow, actor: Actor) -> CloseResult:
    """The close, with its audit record; a window closed already is reported as it was closed."""
    now = datetime.now(UTC)
    try:
        done = run_action(engine, action, actor, now)
    except ActionRefusedError as exc:
        raise WindowError(str(exc)) from exc
    if done.plan.noop:
        return close_window(engine, action.window, now, early=True)  # writes nothing
    result: CloseResult = done.result
    return result


def _print(console: Console, report: WindowReport) -> None:
    status = (f"CLOSED {report.close.closed_at:%Y-%m-%d %H:%M}Z" if report.close
              else "OPEN: provisional")  # fmt: skip
    table = Table(
        title=f"Settlement window {report.window.label} "
        f"[{report.window.start:%Y-%m-%d %H:%M}Z, {report.window.end:%Y-%m-%d %H:%M}Z)"
        f" {status}"
    )
    for col in (
        "bank",
        "name",
        "gross debits",
        "gross credits",
        "net position",
        "postings",
        "carried in",
    ):
        table.add_column(col, justify="left" if col in ("bank", "name") else "right")
    for x in report.lines:
        table.add_row(
            x.bank_code,
            x.bank_name,
            format_minor(x.gross_debits_minor, x.currency),
            format_minor(x.gross_credits_minor, x.currency),
            format_minor(x.net_minor, x.currency),
            f"{x.postings:,}",
            f"{x.carried_in_postings:,}",
        )
    console.print(table)
    for currency, total in sorted(report.net_by_currency().items()):
        mark = "[green]OK[/]" if total == 0 else "[red]NOT ZERO[/]"
        console.print(f"{mark} net positions sum to {format_minor(total, currency)}")
    if report.carried_out_postings:
        console.print(
            f"{report.carried_out_postings} postings of this window were settled after "
            f"its close and count in a later window"
        )
    for problem in report.mismatches():
        console.print(f"[red]CHANGED SINCE CLOSE[/] {problem}")
