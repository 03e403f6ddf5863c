"""``sakk audit verify``: the hash chain, double entry and closed windows of a ledger."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from engine.audit.chain import Anchor, VerifyReport, parse_anchor, verify
from engine.audit.export import jsonable, write_report
from engine.audit.urls import as_database_url, safe_url
from engine.cli import cli
from engine.cli.options import report_options
from engine.config import Settings
from engine.ledger.database import make_engine

SHOWN_PROBLEMS = 20


@cli.group()
def audit() -> None:
    """Tamper evidence."""


@audit.command("verify")
@click.option(
    "--database-url", "database", metavar="URL|FILE", help="Ledger to verify (default: live)."
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="SEQ:HASH",
    help="A chain head noted earlier (printed by this command); repeatable.",
)
@click.option(
    "--anchors-from-topic",
    is_flag=True,
    help="Also check the chain heads carried by the window-closed events on the broker.",
)
@report_options("the findings")
@click.pass_obj
def audit_verify(
    settings: Settings,
    database: str | None,
    anchors: tuple[str, ...],
    anchors_from_topic: bool,
    fmt: str,
    out_dir: Path | None,
) -> None:
    """Walk the entries' hash chain and name the first entry that breaks it.

    Also checks that every posting sums to zero, every balance equals its entries,
    and every closed window's net positions are still what the close recorded.
    Exits with status 1 on any finding.
    """
    try:
        given = [parse_anchor(a) for a in anchors]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if anchors_from_topic:
        given += _topic_anchors(settings)
    url = as_database_url(database) if database else settings.ledger_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            report = verify(conn, given)
    finally:
        engine.dispose()
    if out_dir is not None:
        for path in write_report(
            out_dir,
            "audit-verify",
            {"ledger": safe_url(url), **report.summary()},
            report.sections(),
        ):
            click.echo(f"wrote {path}", err=True)
    if fmt == "json":
        click.echo(
            json.dumps(jsonable({"summary": report.summary(), **report.sections()}), indent=2)
        )
    else:
        _print(Console(), url, report)
    if not report.ok:
        raise SystemExit(1)


def _topic_anchors(settings: Settings) -> list[Anchor]:
    if settings.uses_embedded_broker:
        raise click.UsageError("--anchors-from-topic needs SAKK_KAFKA_BOOTSTRAP_SERVERS")
    from engine.audit.window_events import read_closed_events, windows_topic

    return [Anchor(int(e["chain_seq"]), str(e["chain_hash"]),
                   f"window {e['window']} closed event on {windows_topic(settings)}")
            for e in read_closed_events(settings)]  # fmt: skip


def _print(console: Console, url: str, report: VerifyReport) -> None:
    walk = report.walk
    console.print(
        f"ledger {safe_url(url)}: {walk.entries:,} entries, {report.ledger.postings:,} "
        f"postings, {report.ledger.accounts:,} accounts"
    )
    first = report.first_break
    if first is None:
        console.print(
            f"[green]OK[/] hash chain intact; head {walk.last_seq}:{walk.last_hash} "
            f"(note it down: `--anchor {walk.last_seq}:{walk.last_hash}` later proves "
            f"nothing before it was rewritten)"
        )
    else:
        console.print(
            f"[red]CHAIN BROKEN[/] first at entry #{first.chain_seq} (id {first.entry_id}, "
            f"posting {first.posting_id}): {first.problem}"
        )
        for b in walk.breaks[1:SHOWN_PROBLEMS]:
            console.print(
                f"  entry #{b.chain_seq} (id {b.entry_id}, posting {b.posting_id}): {b.problem}"
            )
        if len(walk.breaks) > SHOWN_PROBLEMS:
            console.print(f"  ... {len(walk.breaks) - SHOWN_PROBLEMS} more")
    _print_list(
        console,
        "double entry holds: postings sum to zero, balances equal entries",
        "LEDGER VIOLATIONS",
        report.ledger.violations,
    )
    _print_list(
        console,
        f"{report.windows_checked} closed windows unchanged since their close",
        "CLOSED WINDOWS CHANGED",
        report.window_problems,
    )
    _print_list(
        console,
        f"{report.anchors_checked} anchors match the chain",
        "ANCHORS BROKEN",
        report.anchor_problems,
    )


def _print_list(console: Console, ok_text: str, bad_title: str, problems: list[str]) -> None:
    if not problems:
        console.print(f"[green]OK[/] {ok_text}")
        return
    console.print(f"[red]{bad_title}[/] ({len(problems)})")
    for problem in problems[:SHOWN_PROBLEMS]:
        console.print(f"  {problem}")
