"""The demo's interbank risk: one bank pressed on its liquidity, then the liquidity table.

Once the traffic has drained, the demo plays a bank's treasury and the switch's operator
(``sakk liquidity withdraw|fund``, as the actor ``demo``): bank 007 withdraws its deposit
at the switch down to its exposure plus two and a half branch transfers of 500,000.00 MAD,
then sends two more than fit. Settlement refuses those two ``AM04`` (the liquidity binds
before the cap). The bank deposits their amount, sends them again, and they settle.
Everything is computed from the bank's exposure as the ledger holds it after the traffic,
so the counts are the same on every run, and the rest of the demo's figures are the
traffic's own (no reference data is changed).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from engine.config import Settings
from engine.events import FUNDS_IN, FUNDS_OUT, EventType
from engine.ledger.models import Payment, table_of
from engine.ledger.positions import read_banks
from engine.ops.action import Actor, run_action
from engine.ops.limits import IssueMovement
from engine.risk.limits import INSUFFICIENT_LIQUIDITY
from producers.publisher import PaymentPublisher, utc_now_ms
from producers.signing import Signers
from sakk.cli.liquidity import movement_outcome, movement_record, publish_movement

PRESSED_BANK = "007"
CURRENCY = "MAD"
AMOUNT_MINOR = 50_000_000  # 500,000.00 MAD: a branch transfer (its limit is 1,000,000.00)
REFUSED = 2  # payments sent beyond the bank's liquidity, sent again after its deposit
MOVEMENT_TIMEOUT_S = 60.0
POLL_S = 0.1
ACTOR = Actor("demo", "demo: bank 007 pressed on its liquidity")


@dataclass(frozen=True)
class Pressed:
    """What happened to the pressed bank's payments, before and after its deposit."""

    bank: str
    withdrawn_minor: int
    deposited_minor: int
    fits: int  # payments its liquidity left room for before the deposit
    settled_before: int
    refused_before: int  # refused AM04, beyond its liquidity
    settled_after: int
    published: int  # payments the demo sent for it

    @property
    def ok(self) -> bool:
        return (self.settled_before, self.refused_before, self.settled_after) == (
            self.fits, REFUSED, REFUSED
        )  # fmt: skip


def press_on_liquidity(
    live: Settings, engine: Engine, reference: Mapping[str, Any], signers: Signers,
    drain: Callable[[int], None],
) -> Pressed:  # fmt: skip
    """Withdraw, send beyond the liquidity, deposit, send again; ``drain(n)`` waits until
    ``n`` more payments are answered."""
    payer, payee = _accounts(reference)
    with engine.connect() as conn:
        row = read_banks(conn, [(PRESSED_BANK, CURRENCY)])[(PRESSED_BANK, CURRENCY)]
    exposure = row.exposure.total_minor
    left = max(exposure, 0) + REFUSED * AMOUNT_MINOR + AMOUNT_MINOR // 2
    fits = (left - exposure) // AMOUNT_MINOR
    withdrawn = row.liquidity_minor - left
    _move(live, engine, FUNDS_OUT, withdrawn)
    before = _send(live, signers, payer, payee, fits + REFUSED, "a")
    drain(fits + REFUSED)
    _move(live, engine, FUNDS_IN, REFUSED * AMOUNT_MINOR)
    after = _send(live, signers, payer, payee, REFUSED, "b")
    drain(REFUSED)
    settled, refused = _outcomes(engine, before)
    return Pressed(
        PRESSED_BANK, withdrawn, REFUSED * AMOUNT_MINOR, fits, settled, refused,
        _outcomes(engine, after)[0], len(before) + len(after),
    )  # fmt: skip


def _accounts(reference: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The pressed bank's richest active account, and another bank's first customer."""
    active = [
        a for a in reference["accounts"]
        if a.get("status", "ACTIVE") == "ACTIVE" and a.get("currency", CURRENCY) == CURRENCY
    ]  # fmt: skip
    payer = max((a for a in active if a["bank"] == PRESSED_BANK),
                key=lambda a: a.get("opening_balance_minor") or 0)  # fmt: skip
    payee = min((a for a in active if a["bank"] != PRESSED_BANK and a["kind"] == "CUSTOMER"),
                key=lambda a: (a["bank"], a["number"]))  # fmt: skip
    return payer, payee


def _move(live: Settings, engine: Engine, event: EventType, amount_minor: int) -> None:
    """An audited FundsIn or FundsOut, as ``sakk liquidity fund|withdraw`` issues it; waits
    until settlement has posted it."""
    record = movement_record(PRESSED_BANK, amount_minor, CURRENCY, ACTOR.name, datetime.now(UTC))
    action = IssueMovement(event.name, PRESSED_BANK, CURRENCY, amount_minor, record["payment_id"])
    run_action(engine, action, ACTOR, record["occurred_at"])
    publish_movement(live, event, record)
    deadline = time.monotonic() + MOVEMENT_TIMEOUT_S
    while (decided := movement_outcome(live, record["payment_id"])) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{event.name} for bank {PRESSED_BANK} not decided in time")
        time.sleep(POLL_S)
    if decided["outcome"] != "POSTED":
        raise RuntimeError(f"{event.name} for bank {PRESSED_BANK}: {decided['reason_message']}")


def _send(
    live: Settings, signers: Signers, payer: Mapping[str, Any], payee: Mapping[str, Any],
    count: int, batch: str,
) -> list[str]:  # fmt: skip
    """``count`` branch transfers from ``payer`` to ``payee``, signed by the payer's bank;
    their bank references."""
    payments = [_transfer(payer, payee, f"{PRESSED_BANK}-demo-liquidity-{batch}{i:03d}")
                for i in range(count)]  # fmt: skip
    with PaymentPublisher(live, client_id="sakk-demo", signers=signers) as publisher:
        for payment in payments:
            publisher.publish(payment)
    return [p["bank_reference"] for p in payments]


def _transfer(payer: Mapping[str, Any], payee: Mapping[str, Any], reference: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "payment_id": str(uuid.uuid4()),
        "bank_reference": reference, "occurred_at": utc_now_ms(),
        "payer_bank": payer["bank"], "payer_account": payer["number"],
        "payee_bank": payee["bank"], "payee_account": payee["number"],
        "amount_minor": AMOUNT_MINOR, "currency": CURRENCY, "channel": "BRANCH",
        "payment_type": "TRANSFER", "merchant_category_code": None, "egov_service": None,
        "intent": "SALE", "remittance_info": None,
    }  # fmt: skip


def _outcomes(engine: Engine, references: Sequence[str]) -> tuple[int, int]:
    """How many of the payments settled, and how many were refused beyond the liquidity."""
    p = table_of(Payment)
    with engine.connect() as conn:
        rows = conn.execute(
            select(p.c.state, p.c.reason_code).where(
                p.c.payer_bank == PRESSED_BANK, p.c.bank_reference.in_(references)
            )
        )
        found = [(state, reason) for state, reason in rows]
    settled = sum(state == "SETTLED" for state, _ in found)
    refused = sum(s != "SETTLED" and reason == INSUFFICIENT_LIQUIDITY for s, reason in found)
    return settled, refused
