"""A bank's liquidity at the switch: ``FundsIn`` posts a deposit, ``FundsOut`` a withdrawal.

Each bank has a liquidity account at the switch (``BANK-LIQUIDITY-CUR``), the cover of
its position. A movement is posted like any money, against the bank's funding account,
and moves the liquidity kept in the bank's position row in the same transaction; a
withdrawal that would leave less liquidity than the bank's exposure is refused ``AM04``
(:func:`engine.risk.limits.check_funds_out`) and posts nothing. Settlement decides them,
on its own input ``liquidity.movements`` (keyed by bank, so one bank's movements keep
their order), so a replay reproduces every bank's liquidity and every refusal.
"""

from __future__ import annotations

from typing import Any

from consumers.legs import settlement_window
from consumers.positions import BankBook
from engine.domain.outcomes import Outcome
from engine.events import FUNDS_IN, FUNDS_OUT, derived_event_id
from engine.ledger.models import AccountKind
from engine.ledger.positions import LiquidityRecorded
from engine.ledger.postings import Leg, PostingDraft
from engine.ledger.reference import funding_account, internal_account
from engine.money import format_minor, is_known_currency
from engine.pipeline.contract import Decision, Refusal
from engine.pipeline.messages import Inbound
from engine.risk.limits import MAX_LIMIT_MINOR

LIQUIDITY = frozenset({FUNDS_IN.name, FUNDS_OUT.name})
KIND = {FUNDS_IN.name: "FUNDS_IN", FUNDS_OUT.name: "FUNDS_OUT"}  # posting and movement kind


def liquidity_account(bank: str, currency: str) -> str:
    return internal_account(bank, AccountKind.LIQUIDITY, currency)


def liquidity_decision(inbound: Inbound, banks: BankBook) -> Decision | Refusal:
    """Post the movement, or refuse the withdrawal that would uncover the bank's exposure."""
    r = inbound.record
    bank, cur, amount = r["bank_code"], r["currency"], r["amount_minor"]
    if not is_known_currency(cur) or not 0 < amount <= MAX_LIMIT_MINOR:
        return Refusal("invalid_movement", f"{amount} {cur}: not an amount Sakk holds")
    if (bank, cur) not in banks.rows:
        return Refusal("unknown_bank", f"bank {bank} has no {cur} position at the switch")
    kind = KIND[inbound.event_type]
    out = inbound.event_type == FUNDS_OUT.name
    if out:
        refused = banks.check_funds_out(bank, cur, amount)
        if refused is not None:
            row = _recorded(r, kind, "REFUSED", refused.reason_code, refused.message, None)
            return Decision(Outcome.FUNDS_REFUSED, None, writes=(row,), reason=refused.reason_code)
    signed = -amount if out else amount
    posting_id = derived_event_id(r["event_id"], "Posting")
    legs = (
        Leg(liquidity_account(bank, cur), signed, cur, checked=True),
        Leg(funding_account(bank, cur), -signed, cur),
    )
    draft = PostingDraft(
        posting_id, r["payment_id"], kind, r["occurred_at"], settlement_window(r["occurred_at"]),
        legs, chain=inbound.partition,
    )  # fmt: skip
    message = f"{'withdrew' if out else 'deposited'} {format_minor(amount, cur)}"
    row = _recorded(r, kind, "POSTED", None, message, posting_id)
    moved = banks.moved(
        bank, cur, r["occurred_at"], liquidity=signed, ref=r["payment_id"], cause=kind
    )
    outcome = Outcome.FUNDS_OUT if out else Outcome.FUNDS_IN
    return Decision(outcome, None, writes=(row, draft, moved))


def _recorded(
    r: dict[str, Any], kind: str, outcome: str, code: str | None, message: str | None,
    posting_id: str | None,
) -> LiquidityRecorded:  # fmt: skip
    return LiquidityRecorded(
        r["payment_id"], r["bank_code"], r["currency"], kind, r["amount_minor"], outcome, code,
        message, posting_id, r["occurred_at"],
    )  # fmt: skip
