"""Settlement's pure decision: funds, fee, legs, the event it emits; no database."""

from __future__ import annotations

from typing import Any

from consumers.settlement import Funds, Settlement, SettlementContext
from engine.config import load_settings
from engine.events import PAYMENT_FAILED, PAYMENT_SETTLED, PAYMENT_VALIDATED
from engine.ledger.models import AccountKind, PaymentState
from engine.ledger.positions import PositionMoved
from engine.ledger.postings import PostingDraft
from engine.ledger.recorder import Outcome, Transition
from engine.ledger.reference import FeeSchedule, internal_account
from engine.pipeline.contract import Decision, Refusal
from tests.factories import AMINA, KARIM, VIGNETTE_DGI, YOUSSEF, inbound, payment, vignette

WEB_FEE = FeeSchedule({("WEB", "TRANSFER", "MAD"): (100, 50, 1_000)})  # 1 MAD + 0.5%, max 10
STAGE = Settlement(load_settings(environ={}))


def validated(record: dict[str, Any]) -> Any:
    record = dict(record, causation_event_id=record["event_id"])
    return inbound("payments.validated", PAYMENT_VALIDATED.name, record)


def context(*balances: tuple[str, int, int | None]) -> SettlementContext:
    return SettlementContext({}, {n: Funds(b, o) for n, b, o in balances}, WEB_FEE)


def decide(ctx: SettlementContext, record: dict[str, Any]) -> Decision | Refusal:
    ctx.states.setdefault(record["payment_id"], PaymentState.VALIDATED)
    return STAGE.decide(validated(record), ctx)


def test_an_interbank_payment_settles_with_its_fee_and_five_balanced_legs() -> None:
    ctx = context((AMINA[1], 100_000, 0), (KARIM[1], 0, 0))
    p = payment(AMINA, KARIM, 20_000)

    decision = decide(ctx, p)

    assert isinstance(decision, Decision) and decision.outcome == "settled"
    outcome, draft, transition, payer_bank, payee_bank = decision.writes
    assert isinstance(outcome, Outcome) and outcome.fee_minor == 200  # 1 MAD + 0.5% of 200
    assert isinstance(payer_bank, PositionMoved) and isinstance(payee_bank, PositionMoved)
    moved = {(m.bank_code, m.posted_minor, m.holds_minor) for m in (payer_bank, payee_bank)}
    assert moved == {("007", 20_000, 0), ("011", -20_000, 0)}  # the amount, never the fee
    assert isinstance(draft, PostingDraft) and sum(leg.amount_minor for leg in draft.legs) == 0
    legs = {leg.account_number: leg.amount_minor for leg in draft.legs}
    assert legs == {
        AMINA[1]: -20_200, KARIM[1]: 20_000,
        internal_account("007", AccountKind.FEE_INCOME, "MAD"): 200,
        internal_account("007", AccountKind.SETTLEMENT, "MAD"): 20_000,
        internal_account("011", AccountKind.SETTLEMENT, "MAD"): -20_000,
    }  # fmt: skip
    assert isinstance(transition, Transition) and transition.to_state == PaymentState.SETTLED
    (emit,) = decision.emits
    assert emit.event is PAYMENT_SETTLED and emit.record["fee_minor"] == 200
    assert emit.record["posting_id"] == draft.posting_id
    assert emit.record["causation_event_id"] == p["event_id"]


def test_short_funds_fail_with_am04_and_post_nothing() -> None:
    ctx = context((YOUSSEF[1], 50_000, 10_000), (KARIM[1], 0, 0))

    decision = decide(ctx, payment(YOUSSEF, KARIM, 60_000))

    assert isinstance(decision, Decision) and decision.outcome == "failed"
    assert decision.reason == "AM04"
    assert not any(isinstance(w, PostingDraft) for w in decision.writes)
    (emit,) = decision.emits
    assert emit.event is PAYMENT_FAILED and "600.00 MAD available" in emit.record["reason_message"]


def test_each_decision_sees_the_funds_the_earlier_ones_left() -> None:
    ctx = context((AMINA[1], 25_000, 0), (KARIM[1], 0, 0))
    first = decide(ctx, payment(AMINA, KARIM, 20_000))
    assert isinstance(first, Decision)
    ctx.absorb(first)

    second = decide(ctx, payment(AMINA, KARIM, 20_000))

    assert isinstance(second, Decision) and second.outcome == "failed"
    assert ctx.funds[AMINA[1]].balance_minor == 25_000 - 20_200


def test_a_vignette_never_carries_a_fee() -> None:
    ctx = context((AMINA[1], 100_000, 0), (VIGNETTE_DGI[1], 0, None))
    ctx = SettlementContext(
        ctx.states, ctx.funds, FeeSchedule({("EGOV", "EGOV", "MAD"): (500, 0, None)})
    )

    decision = decide(ctx, vignette(70_000))

    assert isinstance(decision, Decision) and decision.emits[0].record["fee_minor"] == 0


def test_an_unknown_or_finished_payment_is_refused_not_raised() -> None:
    ctx = context((AMINA[1], 100_000, 0), (KARIM[1], 0, 0))
    p = payment(AMINA, KARIM, 1_000)
    unknown = STAGE.decide(validated(p), ctx)
    ctx.states[p["payment_id"]] = PaymentState.SETTLED

    settled_twice = STAGE.decide(validated(p), ctx)

    assert unknown == Refusal("unknown_payment", f"payment {p['payment_id']} is not in the ledger")
    assert isinstance(settled_twice, Refusal) and settled_twice.kind == "state_conflict"


def test_the_same_event_and_context_give_the_same_decision() -> None:
    p = payment(AMINA, KARIM, 5_000)
    assert decide(context((AMINA[1], 9_000, 0), (KARIM[1], 0, 0)), p) == decide(
        context((AMINA[1], 9_000, 0), (KARIM[1], 0, 0)), p
    )
