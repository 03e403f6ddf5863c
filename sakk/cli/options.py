"""Options and checks commands share, so they read and behave the same everywhere."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.config import Settings
from engine.ops.action import Actor
from engine.ops.audit_log import MAX_REASON_CHARS

F = TypeVar("F", bound=Callable[..., Any])


def bank_settings(
    settings: Settings,
    signing_key: Path | None,
    bank: str | None = None,
    needs_broker: bool = True,
) -> Settings:
    """Settings a bank publishes with (``sakk publish``, ``sakk iso import``): a broker that
    outlives the command, and the bank's signing key (``--signing-key`` wins) with, when
    its file's name does not say whose it is, the bank's code (``--bank`` wins)."""
    if needs_broker and settings.uses_embedded_broker:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS: an embedded broker would vanish at exit"
        )
    if signing_key is not None:
        settings = settings.replace(signing_key_file=signing_key)
    if bank is not None:
        settings = settings.replace(signing_bank=bank)
    if settings.signing_key_file is None:
        raise click.UsageError(
            "no signing key: pass --signing-key FILE or set SAKK_SIGNING_KEY_FILE "
            "(sakk keys generate BANK writes one)"
        )
    return settings


def report_options(what: str) -> Callable[[F], F]:
    """``--format text|json`` and ``--out DIR`` (JSON and CSV copies of ``what``)."""

    def apply(command: F) -> F:
        command = click.option(
            "--out",
            "out_dir",
            type=click.Path(file_okay=False, path_type=Path),
            help=f"Also write {what} as JSON and CSV files to this directory.",
        )(command)
        return click.option(
            "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
            show_default=True,
        )(command)  # fmt: skip

    return apply


OPERATOR_ENV = "SAKK_OPERATOR"
MAX_OPERATOR_CHARS = 64  # operator_actions.actor is String(64)


def operator_name(given: str | None, max_chars: int = MAX_OPERATOR_CHARS) -> str:
    """Who acts, as the auditors will read it: ``--by``, else $SAKK_OPERATOR, else the login."""
    name = (given if given is not None else os.environ.get(OPERATOR_ENV) or _login_name()).strip()
    if not name:
        raise click.BadParameter("cannot tell who you are: give --by NAME", param_hint="--by")
    if len(name) > max_chars:
        raise click.BadParameter(f"at most {max_chars} characters", param_hint="--by")
    return name


def _login_name() -> str:
    """$USER, else the login name ($LOGNAME, ..., then the password database)."""
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def actor_options(command: F) -> F:
    """``--by NAME`` and ``--reason TEXT``: who acts and why, for the operator audit log."""
    command = click.option(
        "--reason", metavar="TEXT", help="Why, for the audit log (sakk audit log)."
    )(command)
    return click.option(
        "--by", "by", metavar="NAME",
        help=f"Who acts (default: ${OPERATOR_ENV}, else $USER or the login name).",
    )(command)  # fmt: skip


def actor_of(by: str | None, reason: str | None) -> Actor:
    """The actor the options name; a bad name or reason is a usage error."""
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise click.BadParameter(f"at most {MAX_REASON_CHARS} characters", param_hint="--reason")
    return Actor(operator_name(by), reason)


def audience_option(command: F) -> F:
    """``--as operator|auditor|bank:CODE``: who reads, which decides what is masked."""
    return click.option(
        "--as",
        "audience",
        metavar="WHO",
        default="operator",
        show_default=True,
        callback=_parse_audience,
        help="operator (accounts to their last 4 digits), auditor (whole), or bank:CODE "
        "(that bank's payments only).",
    )(command)


def _parse_audience(_ctx: click.Context, _param: click.Parameter, value: str) -> Any:
    from engine.read.audience import Audience
    from engine.read.exceptions import ReadError

    try:
        return Audience.parse(value)
    except ReadError as exc:
        raise click.BadParameter(str(exc)) from exc


def page_options(command: F) -> F:
    """``--limit N`` (at most the read side's ``MAX_PAGE``) and ``--after CURSOR``."""
    from engine.read.paging import DEFAULT_PAGE, MAX_PAGE

    command = click.option(
        "--after",
        metavar="CURSOR",
        help="The next page: the cursor the previous page printed.",
    )(command)
    return click.option(
        "--limit",
        type=click.IntRange(1, MAX_PAGE),
        default=DEFAULT_PAGE,
        show_default=True,
        help=f"Rows a page (at most {MAX_PAGE}).",
    )(command)


def propose_options(command: F) -> F:
    """``--propose`` and ``--expires-in``: file the action for a second operator's approval
    (``sakk proposals approve``) instead of taking it."""
    from engine.ops.proposals import DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S

    command = click.option(
        "--expires-in", "expires_in_s", type=click.IntRange(MIN_TTL_S, MAX_TTL_S),
        default=DEFAULT_TTL_S, show_default=True, metavar="SECONDS",
        help="With --propose: how long the proposal waits for its approval.",
    )(command)  # fmt: skip
    return click.option(
        "--propose", is_flag=True,
        help="Four eyes: file a proposal that another operator approves "
        "(sakk proposals approve ID) instead of acting now.",
    )(command)  # fmt: skip


def file_proposal(
    settings: Settings, action: Any, actor: Actor, expires_in_s: int, as_json: bool = False,
    database_url: str | None = None,
) -> None:  # fmt: skip
    """Propose ``action`` as ``actor`` (in ``database_url``'s ledger, default the live one);
    print the proposal, or why it is refused (exit 1)."""
    from datetime import UTC, datetime

    from engine.ledger.database import make_engine
    from engine.ops.action import ActionRefusedError
    from engine.ops.proposals import ProposalError, propose

    engine = make_engine(database_url or settings.ledger_url)
    try:
        proposal = propose(engine, action, actor, datetime.now(UTC), expires_in_s)
    except (ActionRefusedError, ProposalError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(proposal.as_dict(), indent=2, sort_keys=True))
        return
    click.echo(
        f"proposal {proposal.id} filed: {proposal.action} on {proposal.target}, by "
        f"{proposal.proposed_by}, expires at {proposal.expires_at:%Y-%m-%dT%H:%M:%SZ}\n"
        f"  now:      {json.dumps(proposal.preview_old, sort_keys=True)}\n"
        f"  proposed: {json.dumps(proposal.preview_new, sort_keys=True)}\n"
        f"another operator approves it: sakk proposals approve {proposal.id} --by NAME"
    )
