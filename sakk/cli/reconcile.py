"""``sakk reconcile``: a replayed ledger against the live one, with a detailed report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from engine.audit.exceptions import AuditError
from engine.audit.export import write_report
from engine.audit.reconcile import ReconcileReport, reconcile
from engine.audit.runs import integer_counts, outcome_of
from engine.audit.urls import as_database_url, safe_url
from engine.config import Settings
from engine.ledger.database import make_engine
from engine.times import parse_instant
from sakk.app import TOPOLOGY
from sakk.cli import cli
from sakk.cli.options import operator_name
from sakk.cli.runs import record_options, record_url, recording

SHOWN_ROWS = 20


@cli.command("reconcile")
@click.option(
    "--replay",
    "replay_db",
    required=True,
    metavar="URL|FILE",
    help="The replayed ledger (from `sakk replay`).",
)
@click.option(
    "--live",
    "live_db",
    metavar="URL|FILE",
    help="The live ledger. Default: SAKK_DATABASE_URL (or the local SQLite ledger).",
)
@click.option(
    "--from", "from_text", metavar="TIME", help="Only payments that occurred at or after."
)
@click.option("--to", "to_text", metavar="TIME", help="Only payments that occurred before.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report directory. Default: var/reports/reconcile-<time>/.",
)
@click.option("--html/--no-html", default=True, show_default=True)
@record_options(("--by", "--actor"), "the live ledger")
@click.pass_obj
def reconcile_command(
    settings: Settings,
    replay_db: str,
    live_db: str | None,
    from_text: str | None,
    to_text: str | None,
    out_dir: Path | None,
    html: bool,
    run_by: str | None,
    record_in: str | None,
    record: bool,
) -> None:
    """Payments matched, missing on either side, different outcome, amount or fee; balances.

    Exits with status 1 when there is any difference. The run and its differences are
    recorded in the live ledger's audit runs unless --no-record.
    """
    try:
        lo = parse_instant(from_text) if from_text else None
        hi = parse_instant(to_text) if to_text else None
    except AuditError as exc:
        raise click.UsageError(str(exc)) from exc
    live_url = as_database_url(live_db) if live_db else settings.ledger_url
    replay_url = as_database_url(replay_db)
    options = {"live": safe_url(live_url), "replay": safe_url(replay_url), "from": lo, "to": hi}
    where = record_url(record, record_in, live_url)
    with recording("reconcile", operator_name(run_by), where, options) as run:
        live, replayed = make_engine(live_url), make_engine(replay_url)
        try:
            report = reconcile(live, replayed, TOPOLOGY, lo, hi)
        finally:
            live.dispose()
            replayed.dispose()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = out_dir or settings.data_dir / "reports" / f"reconcile-{stamp}"
        shown = {"live": safe_url(live_url), "replay": safe_url(replay_url), **report.summary()}
        paths = write_report(out_dir, "reconcile", shown, report.sections(), with_html=html)
        _print(Console(), report)
        click.echo(f"report: {out_dir} ({len(paths)} files)")
        summary = report.summary()  # recorded once shown: a record refused never hides it
        run.finish(outcome_of(report.ok), report.differences, integer_counts(summary),
                   summary, report.sections())  # fmt: skip
    if not report.ok:
        raise SystemExit(1)


def _print(console: Console, report: ReconcileReport) -> None:
    table = Table(title=f"Reconciliation: {report.scope}")
    table.add_column("")
    table.add_column("", justify="right")
    for key, value in report.summary().items():
        if key in ("scope", "ok"):
            continue
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    for name, rows in report.sections().items():
        if not rows:
            continue
        shown = Table(title=f"{name} ({len(rows)}; first {min(len(rows), SHOWN_ROWS)})")
        columns = list(dict.fromkeys(k for row in rows[:SHOWN_ROWS] for k in row))
        for col in columns:
            shown.add_column(col)
        for row in rows[:SHOWN_ROWS]:
            shown.add_row(*(str(row.get(c, "")) for c in columns))
        console.print(shown)
    mark = (
        "[green]OK[/] no differences" if report.ok else f"[red]{report.differences} differences[/]"
    )
    console.print(mark)
