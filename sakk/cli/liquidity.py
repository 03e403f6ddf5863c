"""``sakk liquidity fund|withdraw|cap``: a bank's deposit at the switch, in and out; its cap.

The switch's operators issue these (a bank's treasury wires the money to the settlement
bank, or asks for it back); the switch publishes a ``FundsIn`` or ``FundsOut`` on
``liquidity.movements``, as its expiry scheduler publishes expiries: the switch's own
event, signed by no bank. Settlement posts it, or refuses a withdrawal that would leave
less liquidity than the bank's exposure (AM04); ``--wait`` prints which.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import select

from engine.config import Settings
from engine.events import FUNDS_IN, FUNDS_OUT, EventType
from engine.iso.amounts import AmountError, to_minor
from engine.kafka.client import Outgoing, make_producer, send_all
from engine.ledger.database import make_engine
from engine.ledger.models import LiquidityMovement, table_of
from engine.money import format_minor
from engine.ops.action import ActionRefusedError, run_action
from engine.ops.limits import IssueMovement, SetBankLimit
from sakk.app import kafka_for, ledger_engine, make_codec
from sakk.cli import cli
from sakk.cli.options import actor_of, actor_options, file_proposal, propose_options

WAIT_POLL_S = 0.2


def movement_record(
    bank: str, amount_minor: int, currency: str, issued_by: str, at: datetime,
    movement_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A movement's record: its id fresh (or the one proposed), its time the operator's."""
    movement_id = movement_id or str(uuid.uuid4())
    return {
        "event_id": movement_id, "payment_id": movement_id, "bank_code": bank,
        "currency": currency, "amount_minor": amount_minor, "occurred_at": at,
        "issued_by": issued_by, "causation_event_id": None,
    }  # fmt: skip


def publish_movement(settings: Settings, event: EventType, record: dict[str, Any]) -> None:
    """Send one movement and wait for the broker's acknowledgement."""
    codec = make_codec(settings)
    message = Outgoing(event.topic(settings), event.key(record), codec.encode(event.name, record))
    producer = make_producer(settings, "sakk-liquidity")
    try:
        send_all(producer, [message], settings.produce_timeout_s)
    finally:
        producer.close(timeout=settings.produce_timeout_s)


def movement_outcome(settings: Settings, movement_id: str) -> dict[str, Any] | None:
    """The movement as settlement decided it, or None while it is not yet decided."""
    m = table_of(LiquidityMovement)
    engine = make_engine(settings.ledger_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(m).where(m.c.movement_id == movement_id)).first()
    finally:
        engine.dispose()
    return None if row is None else {k: row._mapping[k] for k in ("outcome", "reason_code",
                                                                   "reason_message")}  # fmt: skip


def _movement(
    settings: Settings, event: EventType, bank: str, amount: str, currency: str,
    wait_s: float, as_json: bool, by: str | None = None, reason: str | None = None,
    proposing: int | None = None,
) -> None:  # fmt: skip
    """Issue the movement; with ``proposing`` (an expiry in seconds), propose it only."""
    try:
        minor = to_minor(amount, currency)
    except AmountError as exc:
        raise click.BadParameter(str(exc), param_hint="--amount") from exc
    if minor <= 0:
        raise click.BadParameter("must be above zero", param_hint="--amount")
    actor = actor_of(by, reason)
    record = movement_record(bank, minor, currency, actor.name, datetime.now(UTC))
    issued = IssueMovement(event.name, bank, currency, minor, record["payment_id"])
    if proposing is not None:
        file_proposal(settings, issued, actor, proposing, as_json)
        return
    try:
        run_action(ledger_engine(settings), issued, actor, record["occurred_at"])
    except ActionRefusedError as exc:
        raise click.ClickException(str(exc)) from exc
    with kafka_for(settings) as live:
        publish_movement(live, event, record)
    decided = None
    deadline = time.monotonic() + wait_s
    while wait_s and decided is None and time.monotonic() < deadline:
        decided = movement_outcome(settings, record["payment_id"])
        if decided is None:
            time.sleep(WAIT_POLL_S)
    summary = {"movement_id": record["payment_id"], "kind": event.name, "bank": bank,
               "currency": currency, "amount_minor": minor, "decided": decided}  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        what = f"{event.name} {format_minor(minor, currency)} for bank {bank}"
        click.echo(f"published {what} (movement {record['payment_id']})")
        if decided is not None:
            click.echo(f"{decided['outcome']}: {decided['reason_message']}")
    if decided is not None and decided["outcome"] != "POSTED":
        raise SystemExit(1)


def _options(f: Any) -> Any:
    for option in reversed((
        click.option("--bank", required=True, help="The bank's code, e.g. 007."),
        click.option("--amount", required=True, help="Decimal amount, e.g. 1000.00."),
        click.option("--currency", default="MAD", show_default=True),
        click.option("--wait", "wait_s", type=click.FloatRange(0, 600), default=0,
                     help="Seconds to wait for settlement's decision (0: do not wait)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    )):  # fmt: skip
        f = option(f)
    return propose_options(actor_options(f))


@cli.group()
def liquidity() -> None:
    """A bank's liquidity at the switch: the deposit that covers its position."""


@liquidity.command("fund")
@_options
@click.pass_obj
def fund(settings: Settings, bank: str, amount: str, currency: str, wait_s: float,
         as_json: bool, by: str | None, reason: str | None, propose: bool,
         expires_in_s: int) -> None:  # fmt: skip
    """Publish a FundsIn: BANK deposited AMOUNT at the switch (an audited action;
    --propose: four eyes, published once another operator approves it)."""
    proposing = expires_in_s if propose else None
    _movement(settings, FUNDS_IN, bank, amount, currency, wait_s, as_json, by, reason, proposing)


@liquidity.command("withdraw")
@_options
@click.pass_obj
def withdraw(settings: Settings, bank: str, amount: str, currency: str, wait_s: float,
             as_json: bool, by: str | None, reason: str | None, propose: bool,
             expires_in_s: int) -> None:  # fmt: skip
    """Publish a FundsOut: BANK takes AMOUNT back (refused AM04 below its exposure; an
    audited action; --propose: four eyes, published once another operator approves it)."""
    proposing = expires_in_s if propose else None
    _movement(settings, FUNDS_OUT, bank, amount, currency, wait_s, as_json, by, reason, proposing)


@liquidity.command("cap")
@click.option("--bank", required=True, help="The bank's code, e.g. 007.")
@click.option("--currency", default="MAD", show_default=True)
@click.option("--cap", "cap", required=True, help="Net debit cap, decimal, e.g. 5000000.00.")
@click.option(
    "--alert-percent", type=click.IntRange(1, 100), default=80, show_default=True,
    help="The share of its cap at which the bank is alerted (once per crossing).",
)  # fmt: skip
@actor_options
@propose_options
@click.pass_obj
def cap(settings: Settings, bank: str, currency: str, cap: str, alert_percent: int,
        by: str | None, reason: str | None, propose: bool,
        expires_in_s: int) -> None:  # fmt: skip
    """Set BANK's net debit cap and alert percentage: an audited operator action
    (--propose: four eyes, another operator approves it).

    A cap below the bank's exposure is taken, with a warning: everything the bank would
    pay out is refused (AM23) until its position falls back under it.
    """
    try:
        minor = to_minor(cap, currency)
    except AmountError as exc:
        raise click.BadParameter(str(exc), param_hint="--cap") from exc
    actor = actor_of(by, reason)
    action = SetBankLimit(bank, currency, minor, alert_percent)
    if propose:
        file_proposal(settings, action, actor, expires_in_s)
        return
    try:
        done = run_action(ledger_engine(settings), action, actor, datetime.now(UTC))
    except ActionRefusedError as exc:
        raise click.ClickException(str(exc)) from exc
    if done.seq is None:
        click.echo(f"bank {bank} {currency}: the cap and alert percentage are already that")
        return
    click.echo(
        f"bank {bank} {currency}: net debit cap {format_minor(minor, currency)}, alerted at "
        f"{alert_percent} % (operator action #{done.seq} by {actor.name})"
    )
    if done.result:
        click.echo(f"warning: {done.result}")
