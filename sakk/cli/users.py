"""``sakk users``: the console's users, from the switch's own machine (the first operator).

Passwords are read from the terminal (asked twice) or from standard input, never from
the command line (``ps`` and shell histories show arguments). Each change is the same
audited operator action the console runs (``engine.ops.users``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from engine.config import Settings
from engine.ledger import console as store
from engine.ops.action import ActionRefusedError, Actor, run_action
from engine.ops.users import (
    MAX_PASSWORD_CHARS,
    CreateUser,
    IssueToken,
    PasswordPolicyError,
    hash_password,
    new_token,
)
from engine.read.audience import Role
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.options import actor_of, actor_options


@cli.group()
def users() -> None:
    """The console's users: operators, auditors, bank users."""


def _database(settings: Settings, url: str | None) -> Settings:
    return settings if url is None else settings.replace(database_url=url)


def read_password() -> str:
    """From the terminal (twice, hidden), else the first line of standard input."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline(MAX_PASSWORD_CHARS + 2)
    return line.rstrip("\r\n")


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--bank", "bank_code", metavar="CODE", help="A bank user's bank.")
@click.option("--database-url", "database_url", metavar="URL", help="Ledger (default: live).")
@actor_options
@click.pass_obj
def add(
    settings: Settings, name: str, role: str, bank_code: str | None, database_url: str | None,
    by: str | None, reason: str | None,
) -> None:  # fmt: skip
    """Add a console user; the password is asked for (or read from standard input)."""
    actor = actor_of(by, reason)
    try:
        password_hash = hash_password(read_password())
    except PasswordPolicyError as exc:
        raise click.ClickException(str(exc)) from exc
    engine = ledger_engine(_database(settings, database_url), migrate=True)
    action = CreateUser(name, role, bank_code, password_hash, actor.name)
    try:
        done = run_action(engine, action, actor, datetime.now(UTC))
    except ActionRefusedError as exc:
        raise click.ClickException(exc.reason) from exc
    finally:
        engine.dispose()
    click.echo(f"user {name} ({role}{' of bank ' + bank_code if bank_code else ''}) added "
               f"(operator action #{done.seq})")  # fmt: skip


@users.command("list")
@click.option("--database-url", "database_url", metavar="URL", help="Ledger (default: live).")
@click.pass_obj
def list_(settings: Settings, database_url: str | None) -> None:
    """Every console user: name, role, bank, disabled."""
    engine = ledger_engine(_database(settings, database_url), migrate=True)
    try:
        with engine.connect() as conn:
            rows = store.list_users(conn)
    finally:
        engine.dispose()
    for u in rows:
        flag = " (disabled)" if u.disabled else ""
        click.echo(f"{u.name}\t{u.role}\t{u.bank_code or '-'}{flag}")


@users.command("token")
@click.argument("name")
@click.option("--label", required=True, help="What the token is for (a machine's name).")
@click.option("--ttl-s", type=int, help="Seconds it lives (default: until revoked).")
@click.option("--database-url", "database_url", metavar="URL", help="Ledger (default: live).")
@actor_options
@click.pass_obj
def token(
    settings: Settings, name: str, label: str, ttl_s: int | None, database_url: str | None,
    by: str | None, reason: str | None,
) -> None:  # fmt: skip
    """Issue an API token for a user's machine; printed once, only its hash is kept."""
    actor: Actor = actor_of(by, reason)
    issued = new_token()
    engine = ledger_engine(_database(settings, database_url), migrate=True)
    action = IssueToken(name, issued.token_id, issued.secret_hash, label, actor.name, ttl_s)
    try:
        run_action(engine, action, actor, datetime.now(UTC))
    except ActionRefusedError as exc:
        raise click.ClickException(exc.reason) from exc
    finally:
        engine.dispose()
    click.echo(issued.text)
