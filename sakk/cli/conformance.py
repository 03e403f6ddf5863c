"""``sakk conformance FILE``: a bank checks its messages as the switch would, without it."""

from __future__ import annotations

from pathlib import Path

import click

from engine.config import Settings
from sakk.cli import cli

EXIT_CONFORMANT, EXIT_NOT_CONFORMANT, EXIT_USAGE = 0, 1, 2


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--reference",
    "reference_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Reference data: banks with their keys, accounts, channel limits "
    "(default: SAKK_REFERENCE_FILE).",
)
@click.option(
    "--schemas",
    "schemas_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of the approved schemas (default: this release's schemas/).",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["auto", "capture", "jsonl", "iso"]),
    default="auto",
    show_default=True,
    help="capture: sakk publish --capture output; jsonl: the sakk publish format; "
    "iso: pacs.008 or pain.001 XML.",
)
@click.pass_obj
def conformance(
    settings: Settings,
    file: Path,
    reference_path: Path | None,
    schemas_dir: Path | None,
    form: str,
) -> None:
    """Check every message of FILE against the approved schemas, the signing rules and the
    reference data; print one line per problem, then a summary. Nothing is sent.

    Exits 0 when every message conforms, 1 when any does not, 2 on a usage error.
    See docs/publishing.md.
    """
    from producers.conformance import ConformanceInputError, Reference, check_file

    try:
        reference = Reference.read(reference_path or settings.reference_file)
        report = check_file(
            file, reference, schemas_dir or settings.schemas_dir,
            settings.topic("initiated"), form,
        )  # fmt: skip
    except ConformanceInputError as exc:
        click.echo(f"sakk conformance: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from exc
    for line in report.lines():
        click.echo(line)
    raise SystemExit(EXIT_CONFORMANT if report.ok else EXIT_NOT_CONFORMANT)
