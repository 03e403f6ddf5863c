"""``sakk publish FILE``: a bank publishes its messages from a JSON Lines file, signed with
its one key; ``--capture`` writes what it sends for ``sakk conformance``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from engine.config import Settings
from sakk.app import kafka_for
from sakk.cli import cli
from sakk.cli.options import bank_settings


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--signing-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The bank's private key file (default: SAKK_SIGNING_KEY_FILE).",
)
@click.option(
    "--bank",
    default=None,
    help="The bank the key is (default: SAKK_SIGNING_BANK); needed only when the key "
    "file's name is not the BANK-KEYID.key that sakk keys generate gave it.",
)
@click.option(
    "--capture",
    "capture_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write every message as sent (JSON Lines: topic, base64 key, value, "
    "headers) to this file, for sakk conformance.",
)
@click.option(
    "--no-send",
    is_flag=True,
    help="Check, sign and capture only: send nothing (needs --capture; no broker needed).",
)
@click.pass_obj
def publish(
    settings: Settings,
    file: Path,
    signing_key: Path | None,
    bank: str | None,
    capture_path: Path | None,
    no_send: bool,
) -> None:
    """Publish each line of FILE (a payment or a step as JSON, one per line) to
    payments.initiated.

    A line's "type" is "payment" (the default: PaymentInitiated, a sale or an
    authorization) or "step" (PaymentStepRequested: CAPTURE, VOID, REFUND, RETURN). Each
    is signed as the key's one bank; a line acting for another bank, or that does not
    fit its schema, is reported with its number and not sent; the other lines go.
    Exits 1 when any line was skipped. See docs/publishing.md.
    """
    from producers.capture import CaptureWriter
    from producers.exceptions import PublisherError, SigningKeyError
    from producers.jsonl import publish_file

    if no_send and capture_path is None:
        raise click.UsageError("--no-send needs --capture FILE: otherwise nothing is written")
    settings = bank_settings(settings, signing_key, bank, needs_broker=not no_send)
    try:
        with contextlib.ExitStack() as stack:
            capture = None
            if capture_path is not None:
                out = stack.enter_context(capture_path.open("w", encoding="utf-8"))
                capture = CaptureWriter(out)
            live = settings if no_send else stack.enter_context(kafka_for(settings))
            report = publish_file(live, file, capture=capture, send=not no_send)
    except SigningKeyError as exc:  # before anything was sent: a usage error (exit 2)
        raise click.UsageError(str(exc)) from exc
    except PublisherError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report.summary())
    if report.bad_lines:
        raise SystemExit(1)
