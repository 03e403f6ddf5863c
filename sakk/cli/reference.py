"""``sakk reference fee|limit|bank|versions``: change reference data while the switch runs.

A fee or a limit takes effect at a time every stage and every replay agree on: at least
SAKK_REFERENCE_NOTICE_S after it is announced (or later, with --effective-from), for
events that occurred from then on. A bank's webhook URL and format take effect at the
next delivery. Every change is a numbered version and an operator action in the audit
log (``sakk audit log``); see docs/operations.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from engine.config import Settings
from engine.ledger.database import read_only
from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.reference import NOTIFICATION_FORMATS
from engine.ledger.reference_versions import MAX_VERSIONS, read_versions
from engine.ops.action import Action, ActionRefusedError, Actor, run_action
from engine.ops.reference import SetBankDelivery, SetFee, SetLimit, VersionChange
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.keys import INSTANT
from sakk.cli.options import actor_of, actor_options


@cli.group()
def reference() -> None:
    """Fees, limits and banks' delivery settings, changed while running, with their versions."""


def _effective_option(command: Any) -> Any:
    return click.option(
        "--effective-from", "effective_from", type=INSTANT, default=None, metavar="TIME",
        help="Take effect at this ISO 8601 time (default: now + SAKK_REFERENCE_NOTICE_S).",
    )(command)  # fmt: skip


@reference.command("fee")
@click.argument("channel")
@click.argument("payment_type")
@click.argument("currency")
@click.option("--fixed-minor", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--rate-bps", type=click.IntRange(0, 10_000), default=0, show_default=True)
@click.option("--max-minor", type=click.IntRange(min=0), default=None, help="Cap (none: no cap).")
@click.option("--remove", is_flag=True, help="Remove the rule: no fee from then on.")
@_effective_option
@actor_options
@click.pass_obj
def reference_fee(
    settings: Settings, channel: str, payment_type: str, currency: str, fixed_minor: int,
    rate_bps: int, max_minor: int | None, remove: bool, effective_from: datetime | None,
    by: str | None, reason: str | None,
) -> None:  # fmt: skip
    """Set the fee of CHANNEL PAYMENT_TYPE CURRENCY: fixed + basis points, capped."""
    rule = None if remove else {"fixed_minor": fixed_minor, "rate_bps": rate_bps,
                                "max_minor": max_minor}  # fmt: skip
    _run(settings, actor_of(by, reason), lambda: SetFee(
        channel, payment_type, currency, rule, settings.reference_notice_s,
        settings.reference_refresh_ms / 1000, effective_from,
    ))  # fmt: skip


@reference.command("limit")
@click.argument("channel")
@click.argument("currency")
@click.option("--max-amount-minor", type=click.IntRange(min=1), default=None)
@click.option("--hold-expiry-s", type=click.IntRange(min=1), default=None)
@click.option("--remove", is_flag=True, help="Remove the limit: the currency is refused there.")
@_effective_option
@actor_options
@click.pass_obj
def reference_limit(
    settings: Settings, channel: str, currency: str, max_amount_minor: int | None,
    hold_expiry_s: int | None, remove: bool, effective_from: datetime | None,
    by: str | None, reason: str | None,
) -> None:  # fmt: skip
    """Set the largest amount accepted on CHANNEL in CURRENCY (and how long holds live)."""
    if (max_amount_minor is None) != remove:
        raise click.UsageError("give --max-amount-minor, or --remove")
    limit = None if remove else {"max_amount_minor": max_amount_minor,
                                 "hold_expiry_s": hold_expiry_s}  # fmt: skip
    _run(settings, actor_of(by, reason), lambda: SetLimit(
        channel, currency, limit, settings.reference_notice_s,
        settings.reference_refresh_ms / 1000, effective_from,
    ))  # fmt: skip


@reference.command("bank")
@click.argument("bank")
@click.option("--webhook-url", metavar="URL", default=None, help="Where its webhooks go.")
@click.option("--no-webhook-url", is_flag=True, help="No webhook: notifications are logged.")
@click.option("--format", "fmt", type=click.Choice(NOTIFICATION_FORMATS), default=None)
@actor_options
@click.pass_obj
def reference_bank(
    settings: Settings, bank: str, webhook_url: str | None, no_webhook_url: bool,
    fmt: str | None, by: str | None, reason: str | None,
) -> None:  # fmt: skip
    """Set BANK's webhook URL and/or notification format; what is not given is kept."""
    if webhook_url is not None and no_webhook_url:
        raise click.UsageError("--webhook-url and --no-webhook-url exclude each other")
    values: dict[str, str | None] = {} if fmt is None else {"notification_format": fmt}
    if webhook_url is not None or no_webhook_url:
        values["webhook_url"] = webhook_url
    if not values:
        raise click.UsageError("give --webhook-url, --no-webhook-url or --format")
    _run(settings, actor_of(by, reason), lambda: SetBankDelivery(bank, values))


@reference.command("versions")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def reference_versions(settings: Settings, fmt: str) -> None:
    """Every change of reference data, oldest first, with when it takes effect."""
    with read_only(ledger_engine(settings)).connect() as conn:
        versions = read_versions(conn)
    rows = [{"version": v.version, "kind": v.kind, "item": v.item, "old": v.old, "new": v.new,
             "announced_at": v.announced_at.isoformat(),
             "effective_from": v.effective_from.isoformat()} for v in versions]  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    table = Table(title=f"{len(rows)} reference versions (at most {MAX_VERSIONS})")
    for column in ("version", "kind", "item", "old", "new", "effective_from"):
        table.add_column(column.replace("_", " "))
    for r in rows:
        cells = [r["version"], r["kind"], r["item"], _shown(r["old"]), _shown(r["new"]),
                 r["effective_from"]]  # fmt: skip
        table.add_row(*(str(c) for c in cells))
    Console(width=200).print(table)


def _run(settings: Settings, actor: Actor, make: Any) -> None:
    try:
        action: Action[Any] = make()
        done = run_action(ledger_engine(settings), action, actor, datetime.now(UTC))
    except (ReferenceDataError, ActionRefusedError) as exc:
        raise click.ClickException(str(exc)) from exc
    change: VersionChange = done.result
    click.echo(
        f"{change.kind} {change.item}: {_shown(change.old)} -> {_shown(change.new)}, "
        f"version {change.version}, in force from {change.effective_from.isoformat()} "
        f"(operator action #{done.seq} by {actor.name})"
    )


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "none"
