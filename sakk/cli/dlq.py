"""``sakk dlq list|show|redrive``: dead letters inspected, fixed and sent again.

Account numbers are shown to their last 4 digits and holders' names never: an operator
reads dead letters, a bank's customer data stays with the bank.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from engine.audit.exceptions import AuditError
from engine.audit.export import jsonable
from engine.audit.urls import safe_url
from engine.config import Settings
from engine.dlq.body import corrected_body, read_body_file
from engine.dlq.exceptions import RedriveError
from engine.dlq.inspect import DeadLetterView, inspect_dead_letter
from engine.dlq.redrive import KindRedrive, Redriver
from engine.dlq.signatures import MAX_SIGNATURE_FILE_BYTES
from engine.kafka.exceptions import KafkaPlumbingError
from engine.ledger.database import make_engine
from engine.ledger.dead_letters import (
    MAX_LISTED,
    MAX_REASON_CHARS,
    MAX_REQUESTED_BY_CHARS,
    DeadLetterRecord,
    Redrive,
    get_dead_letter,
)
from engine.ledger.exceptions import DeadLetterNotFoundError
from engine.ledger.schemas import LedgerApprovedSchemas
from engine.masking import mask_text
from engine.ops.action import Actor
from engine.ops.redrive import (
    FORCE_FLAG,
    REFUSED_UNLESS_FORCED,
    RedriveCorrected,
    check_redrivable,
)
from engine.read.audience import Audience
from engine.read.dead_letters import DeadLetterFilter, count_dead_letters, list_dead_letters
from engine.read.exceptions import ReadError
from engine.read.snapshot import snapshot
from engine.serialization import AvroCodec, SchemaRegistry, SchemaStoreError, SerializationError
from engine.times import as_utc, parse_instant
from sakk.app import STAGE_NAMES, make_codec
from sakk.cli import cli
from sakk.cli.options import (
    actor_of,
    audience_option,
    file_proposal,
    operator_name,
    page_options,
    propose_options,
)

REASON_COLUMN_CHARS = 60  # the table cuts reasons; ``show`` prints them whole


@cli.group()
def dlq() -> None:
    """Dead letters: list them, read one, send them again once the cause is fixed."""


@contextmanager
def _ledger(settings: Settings) -> Iterator[Engine]:
    """The live ledger; a database that is missing, behind or down is said so, in one line."""
    engine = make_engine(settings.ledger_url)
    try:
        yield engine
    except DBAPIError as exc:
        first = str(exc.orig or exc).splitlines()[0]
        raise click.ClickException(
            f"cannot use the ledger {safe_url(settings.ledger_url)}: {first} "
            f"(is it reachable, and migrated with sakk db upgrade?)"
        ) from exc
    finally:
        engine.dispose()


@dlq.command("list")
@click.option("--kind", metavar="KIND", help="undecodable, schema_not_approved, poison, ...")
@click.option(
    "--since", metavar="TIME", help="Recorded at or after, ISO 8601 (UTC unless a zone is given)."
)
@click.option("--consumer", type=click.Choice(STAGE_NAMES), help="The consumer that refused it.")
@page_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@audience_option
@click.pass_obj
def dlq_list(
    settings: Settings,
    kind: str | None,
    since: str | None,
    consumer: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
    audience: Audience,
) -> None:
    """Dead letters, oldest first, a page at a time: where each came from, why, and whether
    it was sent again."""
    since_at = None
    if since is not None:
        try:
            since_at = parse_instant(since)
        except AuditError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from exc
    which = DeadLetterFilter(kind, consumer, since_at)
    try:
        with _ledger(settings) as engine, snapshot(engine) as conn:
            page = list_dead_letters(conn, audience, which, after, limit)
            total = count_dead_letters(conn, audience, which)
    except ReadError as exc:
        raise click.UsageError(str(exc)) from exc
    found = page.items
    if as_json:
        click.echo(json.dumps(jsonable([_listed(d) for d in found]), indent=2))
        if page.next_cursor is not None:
            click.echo(f"more match: next page with --after {page.next_cursor}", err=True)
        return
    console = Console()
    if not found:
        console.print("no dead letters match")
        return
    table = Table(title=f"Dead letters ({len(found)} of {total})")
    for col in ("id", "recorded", "consumer", "kind", "source", "reason", "redrive"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for d in found:
        table.add_row(
            str(d.id),
            _iso(d.recorded_at),
            d.consumer,
            d.kind,
            f"{d.source_topic}/{d.source_partition}/{d.source_offset}",
            escape(_cut(mask_text(d.reason), REASON_COLUMN_CHARS)),
            escape(_redrive_cell(d.redrive)),
        )
    console.print(table)
    if page.next_cursor is not None:
        console.print(f"more match: next page with --after {page.next_cursor}", soft_wrap=True)


@dlq.command("show")
@click.argument("dead_letter_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def dlq_show(settings: Settings, dead_letter_id: int, as_json: bool) -> None:
    """One dead letter: reason, source, its body when it decodes (masked), its redrive."""
    codec, schemas = _reading_codec(settings)
    try:
        with _ledger(settings) as engine, snapshot(engine) as conn:
            view = inspect_dead_letter(conn, codec, dead_letter_id, settings.max_message_bytes)
    except DeadLetterNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    except SerializationError as exc:  # the approved schemas are unreadable
        raise click.ClickException(f"cannot decode dead letter {dead_letter_id}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(jsonable({**_shown(view), "schemas": schemas}), indent=2))
        return
    _print_view(Console(), view, schemas)


@dlq.command("redrive")
@click.argument("dead_letter_id", metavar="[ID]", type=click.IntRange(min=1), required=False)
@click.option("--kind", metavar="KIND", help="Every dead letter of this kind not yet sent again.")
@click.option(
    "--body",
    "body_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Send this corrected message instead (JSON fields of the event, or its Avro bytes).",
)
@click.option(
    "--signature",
    "signature_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --body on payments.initiated: the bank's signature headers for it (JSON).",
)
@click.option(
    "--by", "requested_by", metavar="NAME", help="Who asks (default: $SAKK_OPERATOR, else $USER)."
)
@click.option("--reason", metavar="TEXT", help="Why, for the auditors (what was fixed).")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LISTED),
    default=MAX_LISTED,
    show_default=True,
    help="With --kind: dead letters sent in this run, oldest first.",
)
@click.option(
    FORCE_FLAG,
    "forced",
    is_flag=True,
    help=f"Also send {' and '.join(REFUSED_UNLESS_FORCED)} dead letters as they are (they "
    "most likely fail the same way again).",
)
@propose_options
@click.pass_obj
def dlq_redrive(
    settings: Settings,
    dead_letter_id: int | None,
    kind: str | None,
    body_file: Path | None,
    signature_file: Path | None,
    requested_by: str | None,
    reason: str | None,
    limit: int,
    forced: bool,
    propose: bool,
    expires_in_s: int,
) -> None:
    """Send a dead letter (ID) or every one of a --kind back to its source topic.

    The copy is the original bytes (with the bank's signature, read from the source
    topic), or --body FILE (with the bank's --signature FILE where banks sign). A dead
    letter is sent again once: redriving it a second time sends nothing and says so.
    Poison and corrupt-batch dead letters are refused unless --force. Each redrive is
    recorded in the operator audit log (sakk audit log). --propose (four eyes, with
    --body): sent once another operator approves the corrected body (sakk proposals).
    """
    _check_redrive_options(dead_letter_id, kind, body_file, signature_file, forced)
    if propose:
        if body_file is None or dead_letter_id is None:
            raise click.UsageError("--propose holds a corrected --body for one dead letter ID")
        _propose_corrected(settings, dead_letter_id, body_file, signature_file, forced,
                           actor_of(requested_by, reason), expires_in_s)  # fmt: skip
        return
    if settings.uses_embedded_broker:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS: the copy goes to the broker your consumers read"
        )
    who = operator_name(requested_by, MAX_REQUESTED_BY_CHARS)
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise click.BadParameter(f"at most {MAX_REASON_CHARS} characters", param_hint="--reason")
    body = signature = None
    try:
        if body_file is not None:
            body = read_body_file(body_file, settings.max_message_bytes)
        if signature_file is not None:
            signature = read_body_file(signature_file, MAX_SIGNATURE_FILE_BYTES)
        with (
            _ledger(settings) as engine,
            _writing_codec(settings) as codec,
            Redriver(settings, engine, codec, forced=forced) as r,
        ):
            if dead_letter_id is not None:
                click.echo(r.redrive(dead_letter_id, who, reason, body, signature).summary)
                return
            assert kind is not None  # checked above
            run = r.redrive_kind(kind, who, reason, limit)
    except (DeadLetterNotFoundError, RedriveError, SerializationError, KafkaPlumbingError) as exc:
        raise click.ClickException(str(exc)) from exc
    _print_kind_run(run)
    if run.refused:
        raise SystemExit(1)


def _check_redrive_options(
    dead_letter_id: int | None, kind: str | None, body_file: Path | None,
    signature_file: Path | None, forced: bool,
) -> None:  # fmt: skip
    if (dead_letter_id is None) == (kind is None):
        raise click.UsageError("give a dead letter ID or --kind KIND")
    if body_file is not None and kind is not None:
        raise click.UsageError("--body corrects one dead letter: give its ID, not --kind")
    if signature_file is not None and body_file is None:
        raise click.UsageError("--signature goes with --body: an original keeps its own")
    if kind is not None and (refusal := check_redrivable(f"--kind {kind}", kind, forced)):
        raise click.UsageError(refusal.reason)


def _propose_corrected(
    settings: Settings, dead_letter_id: int, body_file: Path, signature_file: Path | None,
    forced: bool, actor: Actor, expires_in_s: int,
) -> None:  # fmt: skip
    """File the corrected body for a second operator's approval; nothing is sent."""
    try:
        body = read_body_file(body_file, settings.max_message_bytes)
        signature = (None if signature_file is None
                     else read_body_file(signature_file, MAX_SIGNATURE_FILE_BYTES))  # fmt: skip
        codec, _ = _reading_codec(settings)
        with _ledger(settings) as engine, engine.connect() as conn:
            topic = get_dead_letter(conn, dead_letter_id).source_topic
        corrected_body(codec, topic, body)  # a body that does not decode is refused now
    except (RedriveError, DeadLetterNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    action = RedriveCorrected(dead_letter_id, body, signature, forced)
    file_proposal(settings, action, actor, expires_in_s)


@contextmanager
def _writing_codec(settings: Settings) -> Iterator[AvroCodec]:
    """The stages' codec: the release's schemas and every schema approved in the ledger."""
    with _ledger(settings) as engine:
        yield make_codec(settings, engine)


def _reading_codec(settings: Settings) -> tuple[AvroCodec, str]:
    """A codec that writes nothing: the release's schemas and those approved in the ledger."""
    registry = SchemaRegistry.from_dir(settings.schemas_dir)
    engine = make_engine(settings.ledger_url, pool_size=1)
    try:
        return AvroCodec(registry, LedgerApprovedSchemas(engine)), "release and approved"
    except SchemaStoreError as exc:
        raise click.ClickException(f"{exc} (is the ledger migrated with sakk db upgrade?)") from exc


def _iso(moment: Any) -> str:
    return "" if moment is None else as_utc(moment).isoformat(timespec="seconds")


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _redrive_cell(redrive: Redrive | None) -> str:
    if redrive is None:
        return ""
    return f"{redrive.status} by {redrive.requested_by} {_iso(redrive.requested_at)}"


def _redrive_fields(redrive: Redrive | None) -> dict[str, Any] | None:
    if redrive is None:
        return None
    return {
        "status": redrive.status,
        "requested_by": redrive.requested_by,
        "requested_at": _iso(redrive.requested_at),
        "reason": redrive.reason,
        "body_source": redrive.body_source,
        "target_topic": redrive.target_topic,
        "published_partition": redrive.published_partition,
        "published_offset": redrive.published_offset,
        "published_at": _iso(redrive.published_at),
        "payment_id": redrive.payment_id,
        "event_id": redrive.event_id,
    }


def _listed(d: DeadLetterRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "recorded_at": _iso(d.recorded_at),
        "consumer": d.consumer,
        "kind": d.kind,
        "reason": mask_text(d.reason),
        "source_topic": d.source_topic,
        "source_partition": d.source_partition,
        "source_offset": d.source_offset,
        "payment_id": d.payment_id,
        "redriven": d.redrive is not None and d.redrive.published,
        "redrive": _redrive_fields(d.redrive),
    }


def _shown(view: DeadLetterView) -> dict[str, Any]:
    return {
        **_listed(view.record),
        "reason": view.reason,
        "key": view.key,
        "stored_bytes": view.stored_bytes,
        "cut": view.cut,
        "event_type": view.event_type,
        "body": view.body,
        "decode_error": view.decode_error,
    }


def _print_view(console: Console, view: DeadLetterView, schemas: str) -> None:
    """Every line escaped: reasons quote SQL and schemas, whose brackets rich would eat."""
    d = view.record
    console.rule(f"dead letter {d.id}")
    console.print(
        f"kind      [bold]{escape(d.kind)}[/] (by {d.consumer}, recorded {_iso(d.recorded_at)})"
    )
    console.print(f"reason    {escape(view.reason)}")
    console.print(
        f"source    {escape(d.source_topic)} partition {d.source_partition} "
        f"offset {d.source_offset}"
    )
    size = "no stored copy" if view.stored_bytes is None else f"{view.stored_bytes:,} bytes"
    cut = " [red](cut to fit the dead-letter topic: redrive needs --body)[/]" if view.cut else ""
    console.print(f"copy      {size}, key {escape(view.key or '(none)')}{cut}")
    if view.body is None:
        problem = escape(view.decode_error or "")
        console.print(f"body      does not decode: {problem} [dim](schemas: {schemas})[/]")
    else:
        table = Table(title=f"{view.event_type} (masked)")
        table.add_column("field")
        table.add_column("value")
        for name, value in view.body.items():
            table.add_row(name, "" if value is None else escape(str(jsonable(value))))
        console.print(table)
    r = d.redrive
    if r is None:
        console.print(escape(f"redrive   none: sakk dlq redrive {d.id} [--body FILE]"))
        return
    why = f": {r.reason}" if r.reason else ""
    console.print(
        escape(
            f"redrive   {r.status} by {r.requested_by} at {_iso(r.requested_at)} "
            f"({r.body_source} body){why}"
        )
    )
    if r.published:
        console.print(
            f"          published to {escape(r.target_topic)} partition "
            f"{r.published_partition} offset {r.published_offset} at {_iso(r.published_at)}"
        )


def _print_kind_run(run: KindRedrive) -> None:
    for outcome in run.outcomes:
        click.echo(outcome.summary)
    for dead_letter_id, problem in run.refused:
        click.echo(f"dead letter {dead_letter_id} refused: {problem}", err=True)
    sent = sum(1 for o in run.outcomes if o.sent)
    click.echo(
        f"kind {run.kind}: {sent} sent, {len(run.outcomes) - sent} already sent, "
        f"{len(run.refused)} refused"
    )
    if run.limit_reached:
        click.echo("the --limit was reached: run again for the rest")
