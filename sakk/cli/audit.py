"""``sakk audit verify|log``: a ledger's hash chains, double entry, lifecycle, closed windows and
operator audit log."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Connection, Engine

from engine.audit.chain import (
    Anchor,
    ChainBreak,
    VerifyReport,
    event_anchors,
    parse_anchor,
    verify,
)
from engine.audit.export import jsonable, write_report
from engine.audit.runs import integer_counts, outcome_of, verify_findings
from engine.audit.urls import as_database_url, safe_url
from engine.config import Settings
from engine.ledger.database import make_engine, read_only
from engine.ops.audit_log import LIST_LIMIT_MAX, list_actions
from sakk.cli import cli
from sakk.cli.options import operator_name, report_options
from sakk.cli.runs import record_options, record_url, recording

SHOWN_PROBLEMS = 20
SHOWN_HEADS = 64  # chain heads printed as text; --format json has every one


@cli.group()
def audit() -> None:
    """Tamper evidence, and the operator audit log."""


@audit.command("verify")
@click.option(
    "--database-url", "database", metavar="URL|FILE", help="Ledger to verify (default: live)."
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="CHAIN:SEQ:HASH",
    help="A chain head noted earlier (printed by this command; SEQ:HASH means chain 0); "
    "repeatable.",
)
@click.option(
    "--anchors-from-topic",
    is_flag=True,
    help="Also check the chain heads carried by the window-closed events on the broker.",
)
@click.option(
    "--windows-from-topic",
    is_flag=True,
    help="Also replay the settlement.windows events and compare each window's state.",
)
@report_options("the findings")
@record_options(("--by", "--actor"), "the ledger verified")
@click.pass_obj
def audit_verify(
    settings: Settings,
    database: str | None,
    anchors: tuple[str, ...],
    anchors_from_topic: bool,
    windows_from_topic: bool,
    fmt: str,
    out_dir: Path | None,
    run_by: str | None,
    record_in: str | None,
    record: bool,
) -> None:
    """Walk every hash chain of the entries and name the first entry that breaks one.

    Also checks that every posting sums to zero, every balance equals its entries, the
    lifecycle's invariants (no hold resolved twice, captures within holds, refunds within
    captures, no available balance below minus the overdraft), and every closed window's
    net positions are still what the close recorded, each bank's position row equals the
    ledger's interbank postings and active interbank holds, the position journal walked in
    write order shows no payment or withdrawal accepted beyond a bank's cap (in force when
    it was decided) or liquidity, and the operator audit log's hash chain (sakk audit log)
    is whole, with every approved proposal's action recorded and approved by someone other
    than its proposer (sakk proposals).
    Exits with status 1 on any finding. The run is recorded in the ledger's audit runs
    (the console's audit screen) unless --no-record.
    """
    try:
        given = [parse_anchor(a) for a in anchors]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    url = as_database_url(database) if database else settings.ledger_url
    options = {
        "ledger": safe_url(url),
        "anchors": len(anchors),
        "anchors_from_topic": anchors_from_topic,
        "windows_from_topic": windows_from_topic,
    }
    actor = operator_name(run_by)
    where = record_url(record, record_in, url)
    with recording("verify", actor, where, options, announce=fmt == "text") as run:
        report = _verified(settings, url, given, anchors_from_topic, windows_from_topic)
        summary = report.summary()
        findings = verify_findings(summary)
        sections = report.sections()  # the findings first, the chain heads last
        sections["chains"] = sections.pop("chains")
        _emit(url, report, fmt, out_dir)  # shown first: a record refused never hides it
        run.finish(outcome_of(report.ok), findings, integer_counts(summary), summary, sections)
    if not report.ok:
        raise SystemExit(1)


def _emit(url: str, report: VerifyReport, fmt: str, out_dir: Path | None) -> None:
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


def _verified(
    settings: Settings, url: str, given: list[Anchor], from_topic: bool, windows: bool
) -> VerifyReport:
    if from_topic:
        given = given + _topic_anchors(settings)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            report = verify(conn, given)
            if windows:
                report.settlement.problems += _replayed_window_problems(settings, engine, conn)
    finally:
        engine.dispose()
    return report


def _topic_anchors(settings: Settings) -> list[Anchor]:
    if settings.uses_embedded_broker:
        raise click.UsageError("--anchors-from-topic needs SAKK_KAFKA_BOOTSTRAP_SERVERS")
    from engine.audit.window_events import read_closed_events, windows_topic
    from engine.kafka.exceptions import KafkaPlumbingError
    from engine.ledger.database import make_engine
    from engine.ledger.schemas import LedgerApprovedSchemas
    from engine.serialization import SchemaStoreError

    topic = windows_topic(settings)
    engine = make_engine(settings.ledger_url, pool_size=1)
    try:
        events = read_closed_events(settings, LedgerApprovedSchemas(engine))
    except (KafkaPlumbingError, SchemaStoreError) as exc:
        raise click.ClickException(
            f"cannot read the window-closed events on {topic}: {exc}"
        ) from exc
    finally:
        engine.dispose()
    return [a for e in events
            for a in event_anchors(e, f"window {e['window']} closed event on {topic}")]  # fmt: skip


def _replayed_window_problems(settings: Settings, engine: Engine, conn: Connection) -> list[str]:
    """How the window states replayed from ``settlement.windows`` differ from the ledger's."""
    if settings.uses_embedded_broker:
        raise click.UsageError("--windows-from-topic needs SAKK_KAFKA_BOOTSTRAP_SERVERS")
    from engine.audit.window_events import read_transition_events
    from engine.audit.window_lifecycle import replay_states, state_differences, window_rows
    from engine.kafka.exceptions import KafkaPlumbingError
    from engine.ledger.schemas import LedgerApprovedSchemas
    from engine.serialization import SchemaStoreError

    try:
        replayed = replay_states(read_transition_events(settings, LedgerApprovedSchemas(engine)))
    except (KafkaPlumbingError, SchemaStoreError) as exc:
        raise click.ClickException(f"cannot read the window events: {exc}") from exc
    ledger = {label: rows[-1].record for label, rows in window_rows(conn).items()}
    return replayed.problems + state_differences(replayed.states, ledger)


def _print(console: Console, url: str, report: VerifyReport) -> None:
    walk = report.walk
    chains = list(walk.chains.values())
    console.print(
        f"ledger {safe_url(url)}: {walk.entries:,} entries in {len(chains)} chains, "
        f"{report.ledger.postings:,} postings, {report.ledger.accounts:,} accounts"
    )
    first = report.first_break
    if first is None:
        console.print(
            f"[green]OK[/] every hash chain intact ({len(chains)}); their heads as "
            f"CHAIN:SEQ:HASH (note them down: `--anchor CHAIN:SEQ:HASH` later proves "
            f"nothing before a head was rewritten):"
        )
        for c in chains[:SHOWN_HEADS]:
            console.print(f"  {c.chain_id}:{c.last_seq}:{c.last_hash}", soft_wrap=True)
        if len(chains) > SHOWN_HEADS:
            console.print(f"  ... {len(chains) - SHOWN_HEADS} more (--format json lists all)")
    else:
        console.print(f"[red]CHAIN BROKEN[/] ({walk.break_count}) first at {_where(first)}")
        for b in walk.breaks[1:SHOWN_PROBLEMS]:
            console.print(f"  {_where(b)}")
        if walk.break_count > SHOWN_PROBLEMS:
            console.print(f"  ... {walk.break_count - SHOWN_PROBLEMS} more")
    _print_list(
        console,
        "double entry holds: postings sum to zero, balances equal entries",
        "LEDGER VIOLATIONS",
        report.ledger.violations,
    )
    life = report.lifecycle
    _print_list(
        console,
        f"the lifecycle holds: {life.holds:,} holds each resolved at most once, captures "
        f"within their holds, refunds within captures ({life.steps:,} applied steps); no "
        f"available balance below minus its overdraft, now or along {life.entries_walked:,} "
        f"entries of {life.accounts_walked:,} accounts with a limit",
        "LIFECYCLE VIOLATIONS",
        life.violations + ([f"... and {life.more} more"] if life.more else []),
    )
    _print_list(
        console,
        f"{report.windows_checked} closed windows unchanged since their close",
        "CLOSED WINDOWS CHANGED",
        report.window_problems,
    )
    _print_settlement(console, report)
    _print_list(
        console,
        f"{report.anchors_checked} anchors match their chains",
        "ANCHORS BROKEN",
        report.anchor_problems,
    )
    log = report.action_log
    _print_list(
        console,
        f"the operator audit log holds: {log.rows:,} actions, head #{log.last_seq} {log.head_hash}",
        "OPERATOR AUDIT LOG BROKEN",
        log.problems,
    )


def _print_settlement(console: Console, report: VerifyReport) -> None:
    settled = report.settlement
    _print_list(
        console,
        f"{settled.windows} windows' lifecycle rows intact and allowed; {settled.settled} "
        f"settled windows unchanged; each bank's position equals its unsettled nets; "
        f"{settled.position_rows} position rows equal the ledger's postings and holds",
        "SETTLEMENT PROBLEMS",
        settled.problems,
    )
    _print_journal(console, report)


def _print_journal(console: Console, report: VerifyReport) -> None:
    j = report.journal
    _print_list(
        console,
        f"{j.rows:,} position changes of {j.banks} banks walked in write order: none of the "
        f"{j.checked:,} that raised an exposure or withdrew liquidity went beyond the cap in "
        "force when it was decided or the liquidity",
        "ACCEPTED BEYOND A CAP OR LIQUIDITY",
        j.violations,
    )
    _print_list(
        console,
        f"the journal sums to the position rows, settled nets, liquidity accounts and funds "
        f"movements; caps: {j.caps_operator} set by operator actions (each in the audit log), "
        f"{j.caps_loaded} by reference data loads, {j.caps_upgraded} in force at upgrade",
        "POSITION JOURNAL PROBLEMS",
        j.problems,
    )


def _where(b: ChainBreak) -> str:
    return (
        f"chain {b.chain_id} entry #{b.chain_seq} (id {b.entry_id}, posting {b.posting_id}): "
        f"{b.problem}"
    )


def _print_list(console: Console, ok_text: str, bad_title: str, problems: list[str]) -> None:
    if not problems:
        console.print(f"[green]OK[/] {ok_text}")
        return
    console.print(f"[red]{bad_title}[/] ({len(problems)})")
    for problem in problems[:SHOWN_PROBLEMS]:
        console.print(f"  {problem}")


@audit.command("log")
@click.option(
    "--database-url", "database", metavar="URL|FILE", help="Ledger to read (default: live)."
)
@click.option("--action", metavar="NAME", help="Only this action (e.g. reference.fee).")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Rows after this seq.")
@click.option("--limit", type=click.IntRange(1, LIST_LIMIT_MAX), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def audit_log(
    settings: Settings, database: str | None, action: str | None, after: int, limit: int, fmt: str
) -> None:
    """Operator actions, oldest first: who, when, what, old and new values.

    Page on with --after SEQ (the last seq shown). `sakk audit verify` checks the chain.
    """
    url = as_database_url(database) if database else settings.ledger_url
    engine = read_only(make_engine(url))
    try:
        with engine.connect() as conn:
            rows = [r.as_dict() for r in list_actions(conn, limit, after, action)]
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=False))
        return
    console = Console(width=200)
    for r in rows:
        console.print(
            f"#{r['seq']} {r['acted_at']} {escape(r['actor'])} {r['action']} "
            f"{escape(r['target'])}", soft_wrap=True,
        )  # fmt: skip
        console.print(f"    old {escape(_compact(r['old']))}", soft_wrap=True)
        console.print(f"    new {escape(_compact(r['new']))}", soft_wrap=True)
        if r["reason"]:
            console.print(f"    why {escape(r['reason'])}", soft_wrap=True)
    console.print(f"{len(rows)} operator actions")


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
