"""``sakk proposals list|show|approve|refuse|expire``: four eyes on operator actions.

An operator files a proposal with ``--propose`` on a command that moves money or trust
(``sakk liquidity fund|withdraw|cap``, ``sakk settlement settle|confirm``, ``sakk dlq
redrive ID --body``, ``sakk keys revoke``, ``sakk notifications redeliver`` in bulk);
another operator approves it here, which takes the action as decided then, and carries
out what follows it (publishing, writing the pacs.009, sending the dead letter). Nobody
approves their own proposal; a proposal expires. Without ``--propose`` those commands
act at once on the switch's own machine: the break-glass path (the console always
needs four eyes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.config import Settings
from engine.ops.proposals import (
    LIST_LIMIT_MAX,
    Proposal,
    ProposalError,
    ProposalState,
    approve,
    expire_due,
    get_proposal,
    list_proposals,
    refuse,
)
from sakk.app import ledger_engine
from sakk.cli import cli
from sakk.cli.options import actor_of, actor_options
from sakk.followups import follow_up, problem_before_approving

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@cli.group()
def proposals() -> None:
    """Four eyes: actions one operator proposed, waiting for another's approval."""


@proposals.command("list")
@click.option("--state", type=click.Choice([s.value for s in ProposalState]), help="Only these.")
@click.option("--limit", type=click.IntRange(1, LIST_LIMIT_MAX), default=50, show_default=True)
@click.option("--before", "before_id", type=click.IntRange(min=1), help="Ids below this one.")
@JSON_OPTION
@click.pass_obj
def proposals_list(
    settings: Settings, state: str | None, limit: int, before_id: int | None, as_json: bool
) -> None:
    """Proposals, newest first (those past their expiry are EXPIRED first)."""
    engine = ledger_engine(settings)
    try:
        found = list_proposals(
            engine, datetime.now(UTC), None if state is None else ProposalState(state), limit,
            before_id,
        )  # fmt: skip
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in found], indent=2, sort_keys=True))
        return
    table = Table(title=f"{len(found)} proposals")
    for column in ("id", "action", "target", "state", "proposed by", "expires", "decided by"):
        table.add_column(column)
    for p in found:
        table.add_row(
            str(p.id), p.action, escape(p.target), p.state.value, escape(p.proposed_by),
            f"{p.expires_at:%Y-%m-%dT%H:%M:%SZ}", escape(p.decided_by or ""),
        )  # fmt: skip
    Console(width=200).print(table)
    if len(found) == limit:
        click.echo(f"more may match: next page with --before {found[-1].id}", err=True)


@proposals.command("show")
@click.argument("proposal_id", type=click.IntRange(min=1))
@click.option("--request", "with_request", is_flag=True, help="Also the request itself.")
@JSON_OPTION
@click.pass_obj
def proposals_show(settings: Settings, proposal_id: int, with_request: bool, as_json: bool) -> None:
    """One proposal: what it would change (old and new), who proposed it, its decision."""
    proposal = _get(settings, proposal_id)
    shown = proposal.as_dict(with_request)
    if as_json:
        click.echo(json.dumps(shown, indent=2, sort_keys=True))
        return
    for key, value in shown.items():
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        click.echo(f"{key:16} {'' if text is None else text}")


@proposals.command("approve")
@click.argument("proposal_id", type=click.IntRange(min=1))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="For a window's settlement: where to write the pacs.009 (default: under the data "
    "dir, instructions/).",
)  # fmt: skip
@actor_options
@JSON_OPTION
@click.pass_obj
def proposals_approve(
    settings: Settings, proposal_id: int, out: Path | None, by: str | None, reason: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Approve PROPOSAL_ID (not your own): its action is taken now, decided on the ledger
    as it is now; refused by then, the proposal FAILS with the reason (exit 1)."""
    actor = actor_of(by, reason)
    problem = problem_before_approving(settings, _get(settings, proposal_id).action)
    if problem is not None:
        raise click.UsageError(problem)
    now = datetime.now(UTC)
    engine = ledger_engine(settings)
    try:
        done = approve(engine, proposal_id, actor, now)
        proposal = get_proposal(engine, proposal_id, now)
    except ProposalError as exc:
        _refused(as_json, proposal_id, exc)
        return
    finally:
        engine.dispose()
    lines = follow_up(settings, proposal, done, actor.name, now, out)
    if as_json:
        outcome = {**proposal.as_dict(), "followed_by": lines}
        click.echo(json.dumps(outcome, indent=2, sort_keys=True, default=str))
        return
    click.echo(
        f"proposal {proposal_id} approved by {actor.name}: {proposal.action} on "
        f"{proposal.target} taken (operator action #{done.seq})"
    )
    for line in lines:
        click.echo(f"  {line}")


@proposals.command("refuse")
@click.argument("proposal_id", type=click.IntRange(min=1))
@actor_options
@JSON_OPTION
@click.pass_obj
def proposals_refuse(
    settings: Settings, proposal_id: int, by: str | None, reason: str | None, as_json: bool
) -> None:
    """Refuse PROPOSAL_ID, for --reason (its proposer may withdraw it so)."""
    actor = actor_of(by, reason)
    if not (reason or "").strip():
        raise click.UsageError("a refusal says why: --reason TEXT")
    engine = ledger_engine(settings)
    try:
        proposal = refuse(engine, proposal_id, actor, datetime.now(UTC), reason or "")
    except ProposalError as exc:
        _refused(as_json, proposal_id, exc)
        return
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(proposal.as_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"proposal {proposal_id} refused by {actor.name}: {reason}")


@proposals.command("expire")
@click.pass_obj
def proposals_expire(settings: Settings) -> None:
    """Mark every PENDING proposal past its expiry EXPIRED (reading them does it too)."""
    engine = ledger_engine(settings)
    try:
        count = expire_due(engine, datetime.now(UTC))
    finally:
        engine.dispose()
    click.echo(f"{count} proposals expired")


def _get(settings: Settings, proposal_id: int) -> Proposal:
    engine = ledger_engine(settings)
    try:
        return get_proposal(engine, proposal_id, datetime.now(UTC))
    except ProposalError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()


def _refused(as_json: bool, proposal_id: int, exc: ProposalError) -> None:
    """Say why the proposal was not decided so, and exit 1."""
    shown: dict[str, Any] = {"proposal": proposal_id, "ok": False, "error": exc.code,
                             "message": str(exc)}  # fmt: skip
    if as_json:
        click.echo(json.dumps(shown, indent=2, sort_keys=True))
    else:
        click.echo(f"refused: {exc}", err=True)
    raise SystemExit(1)
