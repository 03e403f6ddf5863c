"""``sakk replay``: payments.initiated over a time or offset range, into a new isolated ledger."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from engine.audit.exceptions import AuditError
from engine.audit.export import write_report
from engine.audit.replay import ReplayReport, ReplayRequest, replay
from engine.audit.runs import integer_counts, outcome_of
from engine.audit.urls import as_database_url, safe_url
from engine.config import Settings
from engine.kafka.exceptions import KafkaPlumbingError
from engine.ledger.exceptions import LedgerError
from engine.times import parse_instant
from sakk.app import TOPOLOGY
from sakk.cli import cli
from sakk.cli.options import operator_name
from sakk.cli.runs import record_options, record_url, recording

PROGRESS_EVERY_S = 5.0


def _offsets(values: tuple[str, ...], option: str) -> dict[int, int]:
    parsed: dict[int, int] = {}
    for value in values:
        partition, _, offset = value.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise click.BadParameter(f"{value!r}: expected PARTITION:OFFSET", param_hint=option)
        parsed[int(partition)] = int(offset)
    return parsed


@cli.command("replay")
@click.option(
    "--from", "from_text", metavar="TIME", help="Start, ISO 8601 (UTC unless a zone is given)."
)
@click.option("--to", "to_text", metavar="TIME", help="End (excluded), ISO 8601.")
@click.option(
    "--by",
    "selection",
    type=click.Choice(["record-time", "occurred-at"]),
    default="record-time",
    show_default=True,
    help="Which time --from/--to select on: the Kafka record time (a contiguous slice "
    "of the log) or the payment's occurred_at.",
)
@click.option(
    "--from-offset",
    multiple=True,
    metavar="PARTITION:OFFSET",
    help="First offset replayed on a partition (repeatable).",
)
@click.option(
    "--to-offset",
    multiple=True,
    metavar="PARTITION:OFFSET",
    help="First offset NOT replayed on a partition (repeatable).",
)
@click.option(
    "--reference",
    "reference_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Reference data snapshot (banks, accounts, opening balances, fees, limits).",
)
@click.option(
    "--database-url",
    "target",
    metavar="URL|FILE",
    help="Target ledger (must be new). Default: a new SQLite file under var/replays/.",
)
@click.option(
    "--order-from",
    "order_from",
    metavar="URL|FILE",
    help="Settle in the order this ledger's settlement stage decided (only the order is "
    "read from it): a whole replay then reproduces the live ledger exactly.",
)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the replay summary as JSON and CSV to this directory.",
)
@record_options(("--actor",), "the live ledger, SAKK_DATABASE_URL")
@click.pass_obj
def replay_command(
    settings: Settings,
    from_text: str | None,
    to_text: str | None,
    selection: str,
    from_offset: tuple[str, ...],
    to_offset: tuple[str, ...],
    reference_file: Path,
    target: str | None,
    order_from: str | None,
    batch_size: int,
    out_dir: Path | None,
    run_by: str | None,
    record_in: str | None,
    record: bool,
) -> None:
    """Replay payments.initiated through the validator and settlement code into a new ledger.

    Payments and the steps banks asked of them (captures, voids, refunds, returns) come
    from payments.initiated; the switch's hold expiries from payments.validated. Reads
    with no consumer group (nothing is committed), produces nothing, and writes only
    the new ledger. Compare it with the live one with `sakk reconcile`. The run is
    recorded in the live ledger's audit runs unless --no-record.
    """
    if settings.uses_embedded_broker:
        raise click.UsageError("set SAKK_KAFKA_BOOTSTRAP_SERVERS to the broker holding the topics")
    by_offsets = bool(from_offset or to_offset)
    if by_offsets and (from_text or to_text):
        raise click.UsageError("give a time range (--from/--to) or offsets, not both")
    try:
        request = ReplayRequest(
            reference_file=reference_file,
            target_url=as_database_url(target) if target else _new_replay_file(settings),
            selection="offsets" if by_offsets else selection,
            from_time=parse_instant(from_text) if from_text else None,
            to_time=parse_instant(to_text) if to_text else None,
            from_offsets=_offsets(from_offset, "--from-offset"),
            to_offsets=_offsets(to_offset, "--to-offset"),
            batch_size=batch_size,
            order_from=as_database_url(order_from) if order_from else None,
        )
    except (AuditError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    console = Console(stderr=True)
    console.print(
        f"replaying {settings.topic('initiated')} ({request.selection}) into "
        f"{safe_url(request.target_url)}"
    )
    where = record_url(record, record_in, settings.ledger_url)
    report = _replayed(settings, request, console, operator_name(run_by), where)
    _print(Console(), report)
    if out_dir is not None:
        ranges = [r.as_dict() for r in report.ranges]
        for path in write_report(out_dir, "replay", report.summary(), {"ranges": ranges}):
            click.echo(f"wrote {path}")


def _replayed(
    settings: Settings, request: ReplayRequest, console: Console, actor: str, where: str | None
) -> ReplayReport:
    """The replay, recorded as an audit run (refused signatures are its differences)."""
    with recording("replay", actor, where, _options(settings, request)) as run:
        try:
            report = replay(settings, request, TOPOLOGY, _progress(console))
        except (AuditError, LedgerError, KafkaPlumbingError) as exc:
            raise click.ClickException(str(exc)) from exc
        summary = report.summary()
        refused = len(report.signature_failures)
        run.finish(outcome_of(refused == 0), refused, integer_counts(summary), summary, {
            "signature_failures": [{"refused": f} for f in report.signature_failures],
            "ranges": [r.as_dict() for r in report.ranges]})  # fmt: skip
    return report


SIGNATURE_FAILURES_SHOWN = 20


def _options(settings: Settings, request: ReplayRequest) -> dict[str, object]:
    """What a replay covered, as its audit run keeps it."""
    return {
        "topic": settings.topic("initiated"), "selection": request.selection,
        "from": request.from_time, "to": request.to_time,
        "from_offsets": request.from_offsets, "to_offsets": request.to_offsets,
        "reference": str(request.reference_file), "target": safe_url(request.target_url),
        "order_from": safe_url(request.order_from) if request.order_from else None,
    }  # fmt: skip


def _new_replay_file(settings: Settings) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"sqlite:///{(settings.data_dir / 'replays' / f'replay-{stamp}.db').resolve()}"


def _progress(console: Console):  # type: ignore[no-untyped-def]
    last = [time.monotonic()]

    def report(r: ReplayReport) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            console.print(f"  {r.events_replayed:,} events replayed ({r.events_per_s:,.0f}/s)")

    return report


def _print(console: Console, report: ReplayReport) -> None:
    ranges = Table(title=f"Offsets replayed on {report.topic} (end excluded)")
    for col in ("partition", "start", "end", "events", "from log start", "located by"):
        ranges.add_column(col, justify="left" if col == "located by" else "right")
    for r in report.ranges:
        ranges.add_row(
            str(r.partition),
            str(r.start),
            str(r.end),
            f"{r.end - r.start:,}",
            "yes" if r.from_beginning else "no",
            r.located_by,
        )
    console.print(ranges)
    table = Table(title="Replay")
    table.add_column("")
    table.add_column("", justify="right")
    for key, value in report.summary().items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    if report.timestamps_going_back:
        console.print(
            f"[yellow]warning[/]: {report.timestamps_going_back} records are older than "
            f"the record before them; time boundaries assume ordered record times "
            f"(use --from-offset/--to-offset for an exact slice)"
        )
    for failure in report.signature_failures[:SIGNATURE_FAILURES_SHOWN]:
        console.print(f"[red]signature refused[/] at partition/offset {failure}")
    if len(report.signature_failures) > SIGNATURE_FAILURES_SHOWN:
        console.print(f"... and {len(report.signature_failures) - SIGNATURE_FAILURES_SHOWN} more")
    console.print(
        f"signatures: {report.signatures_verified:,} verified against the keys of the "
        f"reference file, {len(report.signature_failures):,} refused"
    )
    console.print(
        f"replayed {report.events_replayed:,} events in {report.seconds:.2f} s: "
        f"{report.events_per_s:,.0f} events/s"
    )
