"""``sakk schemas approve FILE`` and ``sakk schemas list``: the writer schemas the switch reads.

Only approved writer schemas are ever used to decode a message. This release's own
schemas (``schemas/*.avsc``) are approved when the ledger is upgraded or a stage starts;
an operator approves a newer version of an event with ``approve``, checked against the
policy of ``engine.schema_policy`` (only optional fields with defaults added, no
recursion, bounded size, no fingerprint collision). Approvals are never changed nor
withdrawn. Banks cannot approve anything: they have no access to the ledger.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings
from engine.ledger.exceptions import ReleaseSchemaConflictError
from engine.ledger.schemas import (
    MAX_APPROVER_CHARS,
    ApprovalStatus,
    approve,
    approve_release_schemas,
)
from engine.read.reference import approved_schemas
from engine.read.snapshot import snapshot
from engine.schema_policy import MAX_SCHEMA_TEXT_BYTES
from engine.serialization import SchemaFileError, read_release_schemas
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.options import operator_name


@cli.group()
def schemas() -> None:
    """Writer schemas the switch approved: approve a new version, list them."""


@schemas.command("approve")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", "by", default=None, help="Who approves (default: your login name).")
@click.pass_obj
def schemas_approve(settings: Settings, file: Path, by: str | None) -> None:
    """Approve the writer schema in FILE, or say why it is refused (exit status 1)."""
    approver = operator_name(by, MAX_APPROVER_CHARS)
    text = _read_bounded(file)
    try:
        release = read_release_schemas(settings.schemas_dir)
        engine = ledger_engine(settings)
        try:
            approve_release_schemas(engine, release)
            outcome = approve(
                engine, text, {k: json.loads(v) for k, v in release.items()}, approver
            )
        finally:
            engine.dispose()
    except (SchemaFileError, ReleaseSchemaConflictError) as exc:
        raise click.ClickException(str(exc)) from exc
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise click.ClickException(f"cannot use the ledger's approved schemas: {cause}") from exc
    candidate = outcome.candidate
    what = f"{candidate.event_type} {candidate.fingerprint.hex()}" if candidate else str(file)
    if outcome.status is ApprovalStatus.REFUSED:
        raise click.ClickException(f"refused {what}: {outcome.reason}")
    if outcome.status is ApprovalStatus.ALREADY_APPROVED:
        click.echo(f"already approved: {what} (nothing changed)")
        return
    identity = candidate.identity if candidate else ""
    click.echo(f"approved: {what} identity {identity} by {approver}")


@schemas.command("list")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_obj
def schemas_list(settings: Settings, fmt: str) -> None:
    """Every approved writer schema, oldest first."""
    try:
        engine = ledger_engine(settings)
        try:
            with snapshot(engine) as conn:
                rows = approved_schemas(conn)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise click.ClickException(f"cannot read the ledger's approved schemas: {cause}") from exc
    listed = [
        {
            "id": r.id, "event_type": r.event_type, "fingerprint": r.fingerprint.hex(),
            "identity": r.identity, "origin": r.origin, "approved_by": r.approved_by,
            "approved_at": r.approved_at.isoformat(timespec="seconds"),
        }
        for r in rows
    ]  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo("no approved schemas (sakk db upgrade approves this release's own)")
        return
    header = ("id", "event type", "fingerprint", "identity", "origin", "by", "at")
    table = [header] + [
        (str(r.id), r.event_type, r.fingerprint.hex(), r.identity[:16], r.origin,
         r.approved_by, r.approved_at.isoformat(timespec="seconds"))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _read_bounded(file: Path) -> str:
    """The file's text, refused when larger than a schema may be."""
    with file.open("rb") as f:
        data = f.read(MAX_SCHEMA_TEXT_BYTES + 1)
    if len(data) > MAX_SCHEMA_TEXT_BYTES:
        raise click.ClickException(
            f"refused {file}: larger than the {MAX_SCHEMA_TEXT_BYTES} bytes a schema may have"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"refused {file}: not UTF-8 text ({exc.reason})") from exc
