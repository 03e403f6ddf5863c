"""The lifecycle's pure rules: holds, captures, voids, expiries, refunds, returns; no database.

Each test decides events in order through the settlement stage on an in-memory context,
absorbing each decision as the processor does, so what one step leaves is what the next
one sees.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from consumers.lifecycle import NOT_A_PARTY, Funds, PaymentView
from consumers.settlement import Settlement, SettlementContext
from engine.config import load_settings
from engine.events import (
    PAYMENT_STEP_COMPLETED,
    PAYMENT_STEP_REFUSED,
    PAYMENT_STEP_VALIDATED,
    PAYMENT_VALIDATED,
    SWITCH,
)
from engine.ledger.models import AccountKind, HoldState, PaymentState
from engine.ledger.postings import PostingDraft
from engine.ledger.recorder import HoldChanged, HoldPlaced, PaymentProgress, StepRecorded
from engine.ledger.reference import FeeSchedule, Limits, internal_account
from engine.pipeline.contract import Decision
from tests.factories import (
    AMINA,
    KARIM,
    RAM,
    VIGNETTE_DGI,
    authorization,
    inbound,
    payment,
    step,
    validated_step,
)

FEES = FeeSchedule(
    {
        ("POS", "PURCHASE", "MAD"): (100, 0, None),  # 1 MAD a capture
        ("WEB", "PURCHASE", "MAD"): (0, 0, None),
        ("WEB", "REFUND", "MAD"): (200, 0, None),  # 2 MAD a refund, paid by the payee
        ("EGOV", "REFUND", "MAD"): (200, 0, None),  # never charged on a vignette
    }
)
LIMITS = Limits(hold_expiry_s={("POS", "MAD"): 3 * 24 * 3600})
STAGE = Settlement(load_settings(environ={}), FEES, limits=LIMITS)


class Flow:
    """A settlement context and the events decided against it, one after another."""

    def __init__(self, **balances: int) -> None:
        accounts = {AMINA[1]: 100_000, KARIM[1]: 20_000, RAM[1]: 0, VIGNETTE_DGI[1]: 0}
        accounts.update({k: v for k, v in balances.items()})
        self.ctx = SettlementContext({}, {n: Funds(b, 0) for n, b in accounts.items()}, FEES)
        self.ctx.limits = LIMITS

    def pay(self, record: dict[str, Any]) -> Decision:
        """The validated payment, as settlement decides it."""
        self.ctx.states[record["payment_id"]] = PaymentState.VALIDATED
        self.ctx.payments[record["payment_id"]] = _view(record)
        validated = dict(record, causation_event_id=record["event_id"])
        return self._decide(inbound("payments.validated", PAYMENT_VALIDATED.name, validated))

    def step(self, record: dict[str, Any]) -> Decision:
        event = inbound("payments.validated", PAYMENT_STEP_VALIDATED.name, validated_step(record))
        return self._decide(event)

    def _decide(self, event: Any) -> Decision:
        decision = STAGE.decide(event, self.ctx)
        assert isinstance(decision, Decision), decision
        self.ctx.absorb(decision)
        return decision

    def available(self, account: tuple[str, str]) -> int | None:
        return self.ctx.funds[account[1]].available_minor


def _view(p: dict[str, Any]) -> PaymentView:
    """The payment as the validator recorded it (what settlement loads for a step)."""
    return PaymentView(
        p["payment_id"], PaymentState.VALIDATED, p.get("intent", "SALE"), p["payer_bank"],
        p["payer_account"], p["payee_bank"], p["payee_account"], p["amount_minor"], p["currency"],
        p["channel"], p["payment_type"], p.get("egov_service"), 0, 0, 0,
    )  # fmt: skip


def completed(decision: Decision) -> dict[str, Any]:
    (emit,) = decision.emits
    assert emit.event is PAYMENT_STEP_COMPLETED, emit.record
    return emit.record


def refused(decision: Decision) -> tuple[str, str]:
    (emit,) = decision.emits
    assert emit.event is PAYMENT_STEP_REFUSED, emit.record
    assert not any(isinstance(w, (PostingDraft, HoldChanged, PaymentProgress))
                   for w in decision.writes)  # fmt: skip
    (row,) = decision.writes
    assert isinstance(row, StepRecorded) and row.outcome == "REFUSED"
    return emit.record["reason_code"], emit.record["reason_message"]


def legs_of(decision: Decision) -> dict[str, int]:
    (draft,) = [w for w in decision.writes if isinstance(w, PostingDraft)]
    assert sum(leg.amount_minor for leg in draft.legs) == 0
    return {leg.account_number: leg.amount_minor for leg in draft.legs}


# -- authorizations and holds --------------------------------------------------------------


def test_an_authorization_holds_amount_and_fee_and_posts_nothing() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)

    decision = flow.pay(auth)

    assert decision.outcome == "authorized"
    assert not any(isinstance(w, PostingDraft) for w in decision.writes)
    (hold,) = [w for w in decision.writes if isinstance(w, HoldPlaced)]
    assert (hold.amount_minor, hold.fee_minor, hold.reserved_minor) == (30_000, 100, 30_100)
    assert hold.expires_at == auth["occurred_at"] + timedelta(days=3)  # the POS channel's life
    record = completed(decision)
    assert record["step"] == "AUTHORIZE" and record["held_minor"] == 30_100
    assert record["payment_state"] == PaymentState.AUTHORIZED
    assert flow.available(AMINA) == 100_000 - 30_100


def test_a_channel_without_a_hold_life_takes_the_default() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 1_000, channel="WEB")

    (hold,) = [w for w in flow.pay(auth).writes if isinstance(w, HoldPlaced)]

    assert hold.expires_at - auth["occurred_at"] == timedelta(seconds=STAGE.settings.hold_expiry_s)


def test_six_holds_of_1000_on_5000_the_sixth_is_refused() -> None:
    flow = Flow(**{AMINA[1]: 5_000 * 100 + 5 * 100})  # 5,000 MAD and the five fees

    outcomes = [flow.pay(authorization(AMINA, RAM, 1_000 * 100)).outcome for _ in range(6)]

    assert outcomes == ["authorized"] * 5 + ["failed"]


def test_holds_count_against_a_one_step_payment_too() -> None:
    flow = Flow()
    flow.pay(authorization(AMINA, RAM, 90_000))

    decision = flow.pay(payment(AMINA, RAM, 20_000, "WEB", "PURCHASE"))

    assert decision.outcome == "failed" and decision.reason == "AM04"


# -- captures ------------------------------------------------------------------------------


def test_partial_captures_up_to_the_hold_then_the_last_one_resolves_it() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)

    first = flow.step(step(auth, "CAPTURE", "007", 10_000))
    second = flow.step(step(auth, "CAPTURE", "007", 20_000))

    assert completed(first)["payment_state"] == PaymentState.AUTHORIZED
    assert completed(first)["held_minor"] == 30_100 - 10_100
    assert legs_of(first)[AMINA[1]] == -10_100  # the capture and its own fee
    last = completed(second)
    assert (last["captured_minor"], last["held_minor"]) == (30_000, 0)
    assert last["payment_state"] == PaymentState.CAPTURED
    assert flow.ctx.holds[auth["payment_id"]].state == HoldState.CAPTURED
    # 300 MAD captured, two 1 MAD fees: the hold no longer counts.
    assert flow.available(AMINA) == 100_000 - 30_200


def test_a_final_capture_releases_what_remains() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)

    record = completed(flow.step(step(auth, "CAPTURE", "007", 12_000, final=True)))

    assert record["payment_state"] == PaymentState.CAPTURED and record["held_minor"] == 0
    assert flow.available(AMINA) == 100_000 - 12_100


def test_the_acquirer_may_capture_for_its_merchant() -> None:
    flow = Flow()
    auth = authorization(KARIM, RAM, 5_000)  # payer at 011, merchant at 007
    flow.pay(auth)

    decision = flow.step(step(auth, "CAPTURE", "007"))

    assert completed(decision)["captured_minor"] == 5_000
    legs = legs_of(decision)
    assert legs[internal_account("011", AccountKind.SETTLEMENT, "MAD")] == 5_000
    assert legs[internal_account("007", AccountKind.SETTLEMENT, "MAD")] == -5_000


def test_a_capture_above_what_remains_is_refused_am09() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    flow.step(step(auth, "CAPTURE", "007", 20_000))

    reason, message = refused(flow.step(step(auth, "CAPTURE", "007", 20_000)))

    assert reason == "AM09" and "100.00 MAD that remain" in message


def test_two_captures_that_fit_only_one_at_a_time_capture_once() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)

    outcomes = [flow.step(step(auth, "CAPTURE", "007", 20_000)).outcome for _ in range(2)]

    assert outcomes == ["captured", "step_refused"]


def test_fees_of_partial_captures_beyond_the_hold_need_funds() -> None:
    flow = Flow(**{AMINA[1]: 30_100})  # exactly the hold
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    flow.step(step(auth, "CAPTURE", "007", 10_000))
    flow.step(step(auth, "CAPTURE", "007", 10_000))

    reason, _ = refused(flow.step(step(auth, "CAPTURE", "007", 10_000)))

    assert reason == "AM04"  # the third fee is 1 MAD more than was held, and nothing is left


@pytest.mark.parametrize(
    ("before", "reason"),
    [("VOID", "AG01"), ("CAPTURE", "AG01"), ("EXPIRE", "TM01")],
)
def test_a_resolved_hold_takes_no_capture_and_no_void(before: str, reason: str) -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    later = auth["occurred_at"] + timedelta(days=3)
    if before == "EXPIRE":
        flow.step(step(auth, "EXPIRE", SWITCH, occurred_at=later))
    else:
        flow.step(step(auth, before, "007"))

    for kind in ("CAPTURE", "VOID"):
        assert refused(flow.step(step(auth, kind, "007", occurred_at=later)))[0] == reason


def test_a_capture_at_or_after_the_expiry_is_refused_even_before_the_expiry_event() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    late = auth["occurred_at"] + timedelta(days=3)

    reason, _ = refused(flow.step(step(auth, "CAPTURE", "007", 1_000, occurred_at=late)))

    assert reason == "TM01"


# -- voids and expiries ---------------------------------------------------------------------


def test_a_void_releases_the_hold_and_posts_nothing() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)

    decision = flow.step(step(auth, "VOID", "011" if auth["payee_bank"] == "011" else "007"))

    assert not any(isinstance(w, PostingDraft) for w in decision.writes)
    assert completed(decision)["payment_state"] == PaymentState.VOIDED
    assert flow.available(AMINA) == 100_000


def test_a_void_after_a_partial_capture_leaves_the_payment_captured() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    flow.step(step(auth, "CAPTURE", "007", 10_000))

    record = completed(flow.step(step(auth, "VOID", "007")))

    assert record["payment_state"] == PaymentState.CAPTURED
    assert (record["amount_minor"], record["captured_minor"]) == (20_000, 10_000)  # released
    assert flow.available(AMINA) == 100_000 - 10_100


def test_an_expiry_applies_only_once_its_time_has_come() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    expires_at = auth["occurred_at"] + timedelta(days=3)

    early = flow.step(step(auth, "EXPIRE", SWITCH, occurred_at=expires_at - timedelta(seconds=1)))
    due = flow.step(step(auth, "EXPIRE", SWITCH, occurred_at=expires_at))

    assert refused(early)[0] == "AG01"
    assert completed(due)["payment_state"] == PaymentState.EXPIRED
    assert flow.available(AMINA) == 100_000


def test_an_expiry_racing_a_capture_exactly_one_wins() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    expires_at = auth["occurred_at"] + timedelta(days=3)
    capture = step(auth, "CAPTURE", "007", occurred_at=expires_at - timedelta(minutes=1))
    expiry = step(auth, "EXPIRE", SWITCH, occurred_at=expires_at)

    first, second = flow.step(capture), flow.step(expiry)

    assert completed(first)["payment_state"] == PaymentState.CAPTURED
    assert refused(second)[0] == "AG01"
    assert second.emits[0].record["payer_bank"] == "007"  # told with the payment's parties


def test_only_the_switch_expires_a_hold() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    later = auth["occurred_at"] + timedelta(days=4)

    assert refused(flow.step(step(auth, "EXPIRE", "007", occurred_at=later)))[0] == "AG01"


# -- refunds and returns ----------------------------------------------------------------------


def test_refunds_add_up_to_what_was_settled_and_run_the_other_way() -> None:
    flow = Flow()
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE")
    flow.pay(sale)

    part = flow.step(step(sale, "REFUND", "011", 4_000))
    rest = flow.step(step(sale, "REFUND", "011"))

    assert legs_of(part) == {
        KARIM[1]: -4_200, AMINA[1]: 4_000,  # the payee pays the refund and its 2 MAD fee
        internal_account("011", AccountKind.FEE_INCOME, "MAD"): 200,
        internal_account("011", AccountKind.SETTLEMENT, "MAD"): 4_000,
        internal_account("007", AccountKind.SETTLEMENT, "MAD"): -4_000,
    }  # fmt: skip
    assert completed(part)["payment_state"] == PaymentState.SETTLED
    assert completed(rest)["amount_minor"] == 6_000
    assert completed(rest)["payment_state"] == PaymentState.REFUNDED
    assert refused(flow.step(step(sale, "REFUND", "011", 1)))[0] == "ARDT"


def test_a_refund_above_what_is_refundable_is_refused_am09() -> None:
    flow = Flow()
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE")
    flow.pay(sale)
    flow.step(step(sale, "REFUND", "011", 8_000))

    assert refused(flow.step(step(sale, "REFUND", "011", 3_000)))[0] == "AM09"


def test_a_captured_authorization_refunds_at_most_what_was_captured() -> None:
    flow = Flow()
    auth = authorization(AMINA, RAM, 30_000)
    flow.pay(auth)
    flow.step(step(auth, "CAPTURE", "007", 10_000, final=True))

    assert refused(flow.step(step(auth, "REFUND", "007", 10_001)))[0] == "AM09"
    assert completed(flow.step(step(auth, "REFUND", "007", 10_000)))["refunded_minor"] == 10_000


@pytest.mark.parametrize("state", ["failed", "authorized"])
def test_a_payment_never_settled_cannot_be_refunded(state: str) -> None:
    flow = Flow(**{AMINA[1]: 500})
    record = (
        payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE")
        if state == "failed"
        else authorization(AMINA, KARIM, 400)
    )
    assert flow.pay(record).outcome == state

    assert refused(flow.step(step(record, "REFUND", "011")))[0] == "AG01"


def test_a_vignette_refund_never_carries_a_fee() -> None:
    flow = Flow(**{VIGNETTE_DGI[1]: 0})
    paid = payment(AMINA, VIGNETTE_DGI, 35_000, "EGOV", "EGOV", egov_service="VIGNETTE")
    flow.pay(paid)

    record = completed(flow.step(step(paid, "REFUND", "310")))

    assert record["fee_minor"] == 0 and record["payment_state"] == PaymentState.REFUNDED


def test_the_payee_needs_the_funds_it_refunds() -> None:
    flow = Flow(**{KARIM[1]: 0})
    sale = payment(AMINA, KARIM, 10_000, "WEB", "PURCHASE")
    flow.pay(sale)
    flow.ctx.funds[KARIM[1]].balance_minor = 5_000  # spent meanwhile

    assert refused(flow.step(step(sale, "REFUND", "011", 6_000)))[0] == "AM04"


def test_a_return_gives_back_an_interbank_credit_with_its_reason() -> None:
    flow = Flow()
    transfer = payment(AMINA, KARIM, 10_000)
    flow.pay(transfer)

    decision = flow.step(step(transfer, "RETURN", "011", reason_code="AC04"))

    record = completed(decision)
    assert record["payment_state"] == PaymentState.RETURNED and record["reason_code"] == "AC04"
    assert record["fee_minor"] == 0
    assert legs_of(decision)[AMINA[1]] == 10_000


def test_a_return_needs_a_return_reason_and_two_banks() -> None:
    flow = Flow()
    transfer, internal = payment(AMINA, KARIM, 10_000), payment(AMINA, RAM, 1_000)
    flow.pay(transfer)
    flow.pay(internal)

    assert refused(flow.step(step(transfer, "RETURN", "011")))[0] == "CH16"
    assert (
        refused(flow.step(step(transfer, "RETURN", "011", 5_000, reason_code="AC04")))[0] == "AM09"
    )
    assert refused(flow.step(step(internal, "RETURN", "007", reason_code="AC04")))[0] == "AG01"


# -- who may ask -----------------------------------------------------------------------------


def test_a_step_for_an_unknown_payment_is_refused_as_no_party() -> None:
    flow = Flow()
    ghost = authorization(AMINA, RAM, 1_000)

    assert refused(flow.step(step(ghost, "CAPTURE", "007"))) == (
        "AG01", NOT_A_PARTY.message,
    )  # fmt: skip


@pytest.mark.parametrize(("kind", "sender"), [("REFUND", "007"), ("RETURN", "007")])
def test_a_party_asking_for_a_step_that_is_not_its_own_is_told_why(kind: str, sender: str) -> None:
    flow = Flow()
    transfer = payment(AMINA, KARIM, 10_000)
    flow.pay(transfer)

    reason, message = refused(flow.step(step(transfer, kind, sender, reason_code="AC04")))

    assert reason == "AG01" and f"bank {sender} may not" in message


def test_a_bank_that_is_no_party_hears_the_same_whatever_the_payment() -> None:
    """Whether the payment exists, and whether the payer account it named is right, a bank
    that is no party gets one answer, and nothing of the payment."""
    flow = Flow()
    auth = authorization(AMINA, RAM, 1_000)
    flow.pay(auth)
    ghost = authorization(AMINA, RAM, 1_000)
    asks = [
        step(auth, "CAPTURE", "310"),  # the payment exists, its payer account guessed right
        dict(step(auth, "CAPTURE", "310"), payer_account=KARIM[1]),  # guessed wrong
        step(ghost, "CAPTURE", "310"),  # no such payment
    ]

    answers = [flow.step(a) for a in asks]

    assert {refused(d) for d in answers} == {("AG01", NOT_A_PARTY.message)}
    for decision in answers:
        (emit,) = decision.emits
        assert emit.record["payer_bank"] is None and emit.record["payee_bank"] is None
        assert decision.channel == ""
    assert flow.ctx.holds[auth["payment_id"]].state == "ACTIVE"


def test_a_party_refused_a_step_is_told_the_payments_banks() -> None:
    flow = Flow()
    transfer = payment(AMINA, KARIM, 10_000)
    flow.pay(transfer)

    decision = flow.step(step(transfer, "REFUND", "007"))  # the payer's bank may not refund

    (emit,) = decision.emits
    assert (emit.record["payer_bank"], emit.record["payee_bank"]) == ("007", "011")


def test_the_same_step_and_context_give_the_same_decision() -> None:
    auth = authorization(AMINA, RAM, 30_000)
    capture = step(auth, "CAPTURE", "007", 10_000)
    decisions = []
    for _ in range(2):
        flow = Flow()
        flow.pay(auth)
        decisions.append(flow.step(capture))
    assert decisions[0] == decisions[1]


def test_a_step_naming_a_payment_from_before_namespaces_finds_it_by_its_bare_id() -> None:
    """A ledger from before ids were per bank keeps its bare ids; their banks were told
    them, so a step that names one (the gate qualifies it) still applies to it."""
    flow = Flow()
    legacy = authorization(AMINA, RAM, 3_000)  # its id, "P", is bare in the ledger
    flow.pay(legacy)
    named = dict(step(legacy, "CAPTURE", "007", 1_000), payment_id=f"007:{legacy['payment_id']}")

    record = completed(flow.step(named))

    assert record["payment_id"] == legacy["payment_id"]
    assert flow.ctx.holds[legacy["payment_id"]].captured_minor == 1_000
