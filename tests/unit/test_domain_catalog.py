"""The step catalog describes each step once, and the machine it makes is the ledger's."""

from __future__ import annotations

import pytest

from engine.domain import ALLOWED, NOTIFIED_OUTCOMES, STEPS, Outcome, Party, StepKind
from engine.domain import PaymentState as S
from engine.domain.machine import reachable
from engine.domain.outcomes import DECIDED
from engine.domain.steps import (
    _SPECS,
    PAYMENT_POSTING_KINDS,
    Money,
    StepCatalogError,
    _catalog,
)


def test_every_step_kind_has_exactly_one_spec_in_kind_order() -> None:
    assert list(STEPS) == list(StepKind)
    assert all(spec.kind is kind for kind, spec in STEPS.items())


def test_a_catalog_that_misses_or_repeats_a_step_is_refused() -> None:
    with pytest.raises(StepCatalogError, match="one spec per step kind"):
        _catalog(_SPECS[:-1])
    with pytest.raises(StepCatalogError):
        _catalog((*_SPECS[:-1], _SPECS[0]))


def test_the_machine_is_the_documented_one() -> None:
    assert dict(ALLOWED) == {
        None: {S.VALIDATED, S.REJECTED},
        S.VALIDATED: {S.SETTLED, S.FAILED, S.AUTHORIZED},
        S.AUTHORIZED: {S.CAPTURED, S.VOIDED, S.EXPIRED},
        S.SETTLED: {S.REFUNDED, S.RETURNED},
        S.CAPTURED: {S.REFUNDED},
    }


@pytest.mark.parametrize("kind", list(StepKind))
def test_what_a_step_leaves_its_payment_in_is_reachable_from_where_it_leads(
    kind: StepKind,
) -> None:
    spec = STEPS[kind]
    landing = spec.targets | (spec.sources if spec.partial else frozenset())
    assert spec.targets <= spec.states_after <= reachable(landing)


def test_a_step_posts_exactly_when_it_moves_money_and_its_posting_has_a_sub_family() -> None:
    for spec in STEPS.values():
        assert (spec.posting_kind is not None) == (spec.money is not Money.NONE)
        assert (spec.sub_family is not None) == (spec.posting_kind is not None)
    assert PAYMENT_POSTING_KINDS == ("PAYMENT", "CAPTURE", "REFUND", "RETURN")


def test_who_may_ask_is_the_rule_book() -> None:
    asks = {k.value: {p.value for p in s.who_may_ask} for k, s in STEPS.items()}
    assert asks == {
        "AUTHORIZE": {"payer_bank"},
        "CAPTURE": {"payer_bank", "payee_bank"},
        "VOID": {"payer_bank", "payee_bank"},
        "EXPIRE": {"switch"},
        "REFUND": {"payee_bank"},
        "RETURN": {"payee_bank"},
    }
    assert all(s.who_is_told == {Party.PAYER_BANK, Party.PAYEE_BANK} for s in STEPS.values())


def test_the_metric_labels_and_told_outcomes_keep_the_values_dashboards_and_banks_know() -> None:
    assert [o.value for o in DECIDED] == [
        "validated", "rejected", "settled", "failed", "authorized", "step_validated",
        "captured", "voided", "expired", "refunded", "returned", "step_refused", "funds_in",
        "funds_out", "funds_refused",
    ]  # fmt: skip
    assert {s.outcome for s in STEPS.values()} <= set(DECIDED)
    assert Outcome.NOTIFIED == "notified" and Outcome.DEAD_LETTERED == "dead_lettered"
    assert NOTIFIED_OUTCOMES == (
        "SETTLED", "REJECTED", "FAILED", "AUTHORIZE", "CAPTURE", "VOID", "EXPIRE", "REFUND",
        "RETURN", "REFUSED", "CAP_ALERT",
    )  # fmt: skip
