"""``sakk keys generate|list|revoke``: the banks' signing keys.

A bank runs ``generate``: it keeps the private key (a PEM file its owner alone may read)
and hands the switch the public entry, to paste under its ``keys`` in a reference file
or to register directly (``--register``). The switch's operator runs ``list`` and
``revoke`` against the ledger (``SAKK_DATABASE_URL``); a revocation is never undone nor
moved later.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings
from engine.ledger.database import read_only
from engine.ledger.keys import KeyEntry, bank_exists, register_keys
from engine.ops.action import ActionRefusedError, run_action
from engine.ops.keys import RevokeKey
from engine.read.audience import Audience
from engine.read.reference import bank_keys
from engine.read.snapshot import snapshot
from engine.trust.keys import KeyPair, decode_public, encode_public
from engine.trust.signing import BANK_CODE_MAX_CHARS, BankKey
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.options import actor_of, actor_options, file_proposal, propose_options

STATUS_TEXT = {
    None: "yes",
    "key_not_yet_valid": "no (not yet valid)",
    "key_expired": "no (expired)",
    "key_revoked": "no (revoked)",
}


class Instant(click.ParamType):
    """An ISO 8601 time with its UTC offset (``2026-11-26T09:30:00Z``), as UTC."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{str(value)[:40]!r} is not an ISO 8601 time", param, ctx)
        if moment.utcoffset() is None:
            self.fail(f"{str(value)[:40]!r} has no UTC offset (add Z or +01:00)", param, ctx)
        return moment.astimezone(UTC)


INSTANT = Instant()


@cli.group()
def keys() -> None:
    """The banks' signing keys: generate one, list them, revoke one."""


@keys.command("generate")
@click.argument("bank")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for the private key file and the public entry.",
)
@click.option("--valid-from", type=INSTANT, default=None, help="Default: now.")
@click.option("--valid-until", type=INSTANT, default=None, help="Default: no end.")
@click.option(
    "--register", is_flag=True, help="Also register the public key in the switch's ledger."
)
@click.pass_obj
def keys_generate(
    settings: Settings,
    bank: str,
    out_dir: Path,
    valid_from: datetime | None,
    valid_until: datetime | None,
    register: bool,
) -> None:
    """Write a new key pair for BANK: BANK-KEYID.key (private, mode 600) and BANK-KEYID.json.

    The JSON is the public entry, ready to paste under the bank's "keys" in a reference
    file; it is also printed. The private key is never printed.
    """
    _check_bank_code(bank)
    start = valid_from or datetime.now(UTC).replace(microsecond=0)
    if valid_until is not None and valid_until <= start:
        raise click.UsageError("--valid-until must be later than --valid-from")
    engine = ledger_engine(settings, migrate=True) if register else None
    if engine is not None:
        with read_only(engine).connect() as conn:
            if not bank_exists(conn, bank):
                raise click.ClickException(
                    f"bank {bank} is not in the ledger: load its reference data first"
                )
    pair = KeyPair.generate()
    entry = KeyEntry(bank, pair.key_id, encode_public(pair.public), start, valid_until)
    private_path = out_dir / f"{bank}-{pair.key_id}.key"
    public_path = out_dir / f"{bank}-{pair.key_id}.json"
    try:
        pair.write(private_path)
    except OSError as exc:
        raise click.ClickException(f"{private_path}: {exc.strerror}") from exc
    public_json = json.dumps(entry.as_json(), indent=2)
    public_path.write_text(public_json + "\n", encoding="utf-8")
    click.echo(public_json)
    click.echo(
        f"private key: {private_path} (mode 600; it stays at bank {bank}, never sent)",
        err=True,
    )
    click.echo(f"public entry: {public_path}", err=True)
    if engine is not None:
        with engine.begin() as conn:
            register_keys(conn, [entry])
        click.echo(f"registered key {pair.key_id} of bank {bank} in the ledger", err=True)


@keys.command("list")
@click.option("--bank", default=None, help="Only this bank's keys.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_obj
def keys_list(settings: Settings, bank: str | None, fmt: str) -> None:
    """The public keys the switch holds, with their windows and whether each is valid now."""
    try:
        with snapshot(ledger_engine(settings)) as conn:
            entries = bank_keys(conn, Audience.operator(), bank)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's message, without the SQL
        raise click.ClickException(f"cannot read the ledger's keys: {cause}") from exc
    now = datetime.now(UTC)
    rows = [_listed(e, now) for e in entries]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no keys" + (f" for bank {bank}" if bank else ""))
        return
    header = (
        "key id",
        "bank",
        "public key",
        "valid from",
        "valid until",
        "revoked at",
        "valid now",
    )
    table = [header] + [
        (
            r["key_id"],
            r["bank"],
            r["public_key"],
            r["valid_from"],
            r["valid_until"] or "-",
            r["revoked_at"] or "-",
            STATUS_TEXT.get(r["refusal"], r["refusal"]),
        )  # fmt: skip
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for line in table:
        cells = (str(cell).ljust(w) for cell, w in zip(line, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@keys.command("revoke")
@click.argument("bank")
@click.argument("key_id")
@click.option(
    "--at", "at", type=INSTANT, default=None, help="Revoked from this time (default: now)."
)
@actor_options
@propose_options
@click.pass_obj
def keys_revoke(
    settings: Settings,
    bank: str,
    key_id: str,
    at: datetime | None,
    by: str | None,
    reason: str | None,
    propose: bool,
    expires_in_s: int,
) -> None:
    """Revoke KEY_ID of BANK from --at on: the validator refuses it from then.

    Recorded in the operator audit log (sakk audit log) with who asked and why.
    --propose: four eyes, revoked once another operator approves it (sakk proposals).
    """
    actor = actor_of(by, reason)
    now = datetime.now(UTC)
    moment = at or now.replace(microsecond=0)
    if propose:
        file_proposal(settings, RevokeKey(bank, key_id, moment), actor, expires_in_s)
        return
    try:
        done = run_action(ledger_engine(settings), RevokeKey(bank, key_id, moment), actor, now)
    except ActionRefusedError as exc:
        raise click.ClickException(str(exc)) from exc
    in_force = done.plan.changes
    if in_force < moment:
        click.echo(
            f"key {key_id} of bank {bank} was already revoked from {_iso(in_force)}, earlier: "
            f"that revocation is kept"
        )
        return
    click.echo(f"key {key_id} of bank {bank} revoked from {_iso(in_force)}")


def _check_bank_code(bank: str) -> None:
    if not (0 < len(bank) <= BANK_CODE_MAX_CHARS and bank.isascii() and bank.isalnum()):
        raise click.UsageError(
            f"BANK must be a bank code of 1 to {BANK_CODE_MAX_CHARS} letters or digits"
        )


def _listed(entry: KeyEntry, now: datetime) -> dict[str, Any]:
    """One key as ``list`` shows it; ``refusal`` says why it is not valid now (None: it is)."""
    try:
        key = BankKey(
            entry.bank_code, entry.key_id, decode_public(entry.public_key), entry.valid_from,
            entry.valid_until, entry.revoked_at,
        )  # fmt: skip
        refusal = key.refusal_at(now)
        why = None if refusal is None else str(refusal)
    except ValueError:
        why = "public key unreadable"
    return {
        "key_id": entry.key_id,
        "bank": entry.bank_code,
        "public_key": entry.public_key,
        "valid_from": _iso(entry.valid_from),
        "valid_until": _iso(entry.valid_until) if entry.valid_until else None,
        "revoked_at": _iso(entry.revoked_at) if entry.revoked_at else None,
        "valid_now": why is None,
        "refusal": why,
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
