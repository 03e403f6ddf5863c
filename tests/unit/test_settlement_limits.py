"""Settlement's pure decision against the paying bank's cap and liquidity; no database."""

from __future__ import annotations

from consumers.positions import BankBook
from consumers.settlement import Funds, SettlementContext
from engine.ledger.models import PaymentState
from engine.ledger.positions import BankRow, PositionMoved
from engine.pipeline.contract import Decision
from tests.factories import AMINA, KARIM, YOUSSEF, authorization, payment, step
from tests.unit.test_lifecycle import Flow, refused
from tests.unit.test_settlement import STAGE, WEB_FEE, validated

CAP = 50_000


def context(posted: int = 0, holds: int = 0, liquidity: int = 60_000) -> SettlementContext:
    banks = BankBook({
        ("007", "MAD"): BankRow("007", "MAD", posted, holds, liquidity, CAP, 80, 0),
        ("011", "MAD"): BankRow("011", "MAD", 0, 0, 0, None, None, 0),
    })  # fmt: skip
    funds = {AMINA[1]: Funds(1_000_000, 0), YOUSSEF[1]: Funds(1_000_000, 0), KARIM[1]: Funds(0, 0)}
    return SettlementContext({}, funds, WEB_FEE, banks=banks)


def decide(ctx: SettlementContext, amount: int, intent: str = "SALE", payer=AMINA) -> Decision:
    record = payment(payer, KARIM, amount, intent=intent)
    ctx.states[record["payment_id"]] = PaymentState.VALIDATED
    decision = STAGE.decide(validated(record), ctx)
    assert isinstance(decision, Decision)
    ctx.absorb(decision)
    return decision


def test_exactly_at_the_cap_settles_and_one_minor_unit_more_fails_am23() -> None:
    assert decide(context(posted=CAP - 10_000), 10_000).outcome == "settled"
    failed = decide(context(posted=CAP - 10_000), 10_001)
    assert (failed.outcome, failed.reason) == ("failed", "AM23")
    assert not any(isinstance(w, PositionMoved) for w in failed.writes)  # nothing moves


def test_beyond_the_liquidity_fails_am04_first() -> None:
    failed = decide(context(liquidity=CAP - 1), CAP)
    assert (failed.outcome, failed.reason) == ("failed", "AM04")


def test_a_hold_takes_room_and_later_payments_in_the_batch_see_it() -> None:
    ctx = context()
    authorized = decide(ctx, 40_000, intent="AUTHORIZATION")
    (held,) = [w for w in authorized.writes if isinstance(w, PositionMoved)]
    assert (held.bank_code, held.posted_minor, held.holds_minor) == ("007", 0, 40_000)
    assert decide(ctx, 10_001, payer=YOUSSEF).reason == "AM23"
    assert decide(ctx, 10_000, payer=YOUSSEF).outcome == "settled"


def test_money_coming_in_within_the_batch_raises_no_headroom() -> None:
    ctx = context(posted=CAP)
    ctx.banks.absorb(
        PositionMoved("007", "MAD", -20_000, 0, 0, CAP, 0, 80, payment()["occurred_at"])
    )
    assert decide(ctx, 1).reason == "AM23"


def test_a_deposit_within_the_batch_makes_room_for_the_payments_after_it() -> None:
    ctx = context(liquidity=0)
    assert decide(ctx, 1).reason == "AM04"
    at = payment()["occurred_at"]
    ctx.banks.absorb(PositionMoved("007", "MAD", 0, 0, 30_000, CAP, 0, 80, at))  # FundsIn
    ctx.banks.absorb(PositionMoved("007", "MAD", 0, 0, -10_000, CAP, 0, 80, at))  # FundsOut
    assert decide(ctx, 20_000).outcome == "settled"
    assert decide(ctx, 1).reason == "AM04"  # 20,000 owed, 20,000 deposited


def test_a_bank_without_limits_is_not_bounded() -> None:
    ctx = context()
    record = payment(KARIM, AMINA, 100)
    ctx.funds[KARIM[1]] = Funds(1_000_000, 0)
    ctx.states[record["payment_id"]] = PaymentState.VALIDATED
    assert STAGE.decide(validated(record), ctx).outcome == "settled"  # type: ignore[union-attr]


def moves_of(decision: Decision) -> set[tuple[str, int, int]]:
    return {
        (w.bank_code, w.posted_minor, w.holds_minor)
        for w in decision.writes
        if isinstance(w, PositionMoved)
    }


def test_a_capture_turns_the_hold_into_the_position_and_a_void_releases_the_rest() -> None:
    flow = Flow()
    auth = authorization(AMINA, KARIM, 30_000)

    assert moves_of(flow.pay(auth)) == {("007", 0, 30_000)}
    captured = flow.step(step(auth, "CAPTURE", "007", 10_000))
    assert moves_of(captured) == {("007", 10_000, -10_000), ("011", -10_000, 0)}
    assert moves_of(flow.step(step(auth, "VOID", "007"))) == {("007", 0, -20_000)}


def test_a_refund_the_payees_bank_cannot_cover_under_its_cap_is_refused_am23() -> None:
    flow = Flow()
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE")
    flow.pay(sale)
    flow.ctx.banks.rows[("011", "MAD")] = BankRow("011", "MAD", 0, 0, 9_000, 5_000, 80, 0)

    assert refused(flow.step(step(sale, "REFUND", "011", 5_001)))[0] == "AM23"
    applied = flow.step(step(sale, "REFUND", "011", 5_000))  # exactly at its cap
    assert moves_of(applied) == {("011", 5_000, 0), ("007", -5_000, 0)}
