"""The chaos workload: seeded, complete, and every message decodes (or not) as labelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.config import load_settings
from engine.ledger.reference import read_file
from engine.serialization import DecodeError, UnknownSchemaError
from sakk.app import make_codec
from tests.factories import switch_id
from tooling.workload.chaos import (
    ABSURD_REASONS,
    GOOD_OUTCOMES,
    MEGABYTE,
    POISON_KINDS,
    WorkloadBuilder,
)
from tooling.workload.core import Accounts, hold_life_s
from tooling.workload.flows import FLOWS
from tooling.workload.pressing import (
    CAP_BOUND,
    LIQUIDITY_BOUND,
    limits_for,
    pressing_payments,
)

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def codec():
    return make_codec(load_settings(environ={}))


@pytest.fixture(scope="module")
def reference():
    return read_file(load_settings(environ={}).reference_file)


def build(reference, codec, seed=7, payments=300, start=START):
    return WorkloadBuilder(reference, seed, start, codec).build(payments)


def test_same_seed_and_start_give_the_same_bytes_in_the_same_order(reference, codec):
    assert build(reference, codec).messages == build(reference, codec).messages


def test_another_seed_gives_other_payments(reference, codec):
    a, b = build(reference, codec, seed=1), build(reference, codec, seed=2)
    assert set(a.payments).isdisjoint(b.payments)


def test_every_kind_of_bad_input_is_present(reference, codec):
    workload = build(reference, codec)
    labels = workload.labels
    assert set(POISON_KINDS) <= set(labels)
    assert set(ABSURD_REASONS) <= set(labels)
    assert labels["megabyte_reference"] == labels["megabyte_blob"] == 1
    assert workload.bank_retries >= 30
    assert len(workload.payments) == 300
    assert workload.published == 300 + workload.poison


def test_poison_does_not_decode_and_everything_else_does(reference, codec):
    workload = build(reference, codec)
    undecodable = 0
    for m in workload.messages:
        try:
            codec.decode(m.value)
        except UnknownSchemaError:
            assert m.label == "unknown_fingerprint"
            undecodable += 1
        except DecodeError:
            assert m.label in ("random_bytes", "truncated_avro", "empty_message", "megabyte_blob")
            undecodable += 1
    dead = workload.dead_letters
    assert undecodable == dead["undecodable"] + dead["schema_not_approved"]


def test_dependants_follow_their_original_on_its_key(reference, codec):
    workload = build(reference, codec)
    first_seen = {}
    for index, m in enumerate(workload.messages):
        if m.label != "bank_retry":
            first_seen[m.value] = (index, m.key)
        if m.label == "bank_retry":
            original_index, key = first_seen[m.value]  # KeyError: a copy before its original
            assert index > original_index and key == m.key


def test_expected_outcomes(reference, codec):
    workload = build(reference, codec)
    for expected in workload.payments.values():
        if expected.label == "payment":
            assert expected.outcomes == GOOD_OUTCOMES
        elif expected.label in FLOWS:
            assert expected.outcomes == {FLOWS[expected.label]: None}
        else:
            assert expected.outcomes == {"REJECTED": ABSURD_REASONS[expected.label]}


def test_the_megabyte_messages_fit_the_message_limit(reference, codec):
    limit = load_settings(environ={}).max_message_bytes
    sizes = [len(m.value or b"") for m in build(reference, codec).messages]
    assert MEGABYTE <= max(sizes) < limit - 1024


def test_bounds_and_time_zone_are_checked(reference, codec):
    with pytest.raises(ValueError, match="payments"):
        build(reference, codec, payments=0)
    with pytest.raises(ValueError, match="timezone"):
        build(reference, codec, start=datetime(2026, 1, 1))


# -- the lifecycle ---------------------------------------------------------------------------


def test_every_lifecycle_flow_is_present_and_its_steps_follow_its_payment(reference, codec):
    workload = build(reference, codec)
    labels = {e.label for e in workload.payments.values()}
    assert set(FLOWS) <= labels
    index_of = {m.payment_id: (i, m.key) for i, m in enumerate(workload.messages) if m.payment_id}
    seen: dict[str, int] = {}
    for i, m in enumerate(workload.messages):
        if not m.label.startswith("step_"):
            continue
        record = codec.decode(m.value).record
        payment_index, key = index_of[switch_id(record)]
        assert payment_index < i and key == m.key  # behind its payment, on its partition
        assert seen.get(switch_id(record), -1) < i
        seen[switch_id(record)] = i


def test_each_step_expected_once_with_a_deterministic_outcome(reference, codec):
    workload = build(reference, codec)
    again = build(reference, codec)
    assert workload.steps == again.steps and workload.payments == again.payments
    published = [codec.decode(m.value).record for m in workload.messages
                 if m.label.startswith("step_")]  # fmt: skip
    expiries = [s for s in workload.steps.values() if s.kind == "EXPIRE"]
    assert {switch_id(r, "event_id") for r in published} | {s.step_id for s in expiries} == set(
        workload.steps
    )
    assert len(published) + len(expiries) == len(workload.steps)
    reasons = {s.reason for s in workload.steps.values() if s.outcome == "REFUSED"}
    assert reasons == {"AM09", "AG01", "TM01", "AM05"}
    assert all(s.sender_bank == "SAKK" for s in expiries) and expiries


def test_expiring_holds_expire_a_few_seconds_after_the_start(reference, codec):
    workload = build(reference, codec)
    life = timedelta(seconds=hold_life_s(reference, "POS", 7 * 24 * 3600))
    assert life == timedelta(days=3)  # the reference's POS hold life
    expiring = {p for p, e in workload.payments.items() if e.label == "expiring"}
    for m in workload.messages:
        if m.payment_id in expiring:
            expires_at = codec.decode(m.value).record["occurred_at"] + life
            assert START + timedelta(seconds=3) <= expires_at <= START + timedelta(seconds=15)


def test_no_ordinary_payment_debits_a_lifecycle_account(reference, codec):
    """Funds never decide a lifecycle outcome: its payers pay nothing else."""
    workload = build(reference, codec, payments=1000)
    records = {m.payment_id: codec.decode(m.value).record
               for m in workload.messages if m.payment_id}  # fmt: skip
    flows = [p for p, e in workload.payments.items() if e.label in FLOWS]
    returned = [p for p, e in workload.payments.items() if e.label == "return"]
    lifecycle = {records[p]["payer_account"] for p in flows}
    lifecycle |= {records[p]["payee_account"] for p in returned}
    ordinary = {
        records[p]["payer_account"] for p, e in workload.payments.items() if e.label == "payment"
    }
    assert lifecycle and ordinary and lifecycle.isdisjoint(ordinary)


def test_lifecycle_accounts_can_afford_all_they_may_ever_debit(reference, codec):
    workload = build(reference, codec, payments=20_000)
    opening = {
        a["number"]: a.get("opening_balance_minor", 0) + a.get("overdraft_limit_minor", 0)
        for a in reference["accounts"]
    }
    held: dict[str, int] = {}
    for m in workload.messages:
        if m.payment_id and workload.payments[m.payment_id].label in FLOWS:
            r = codec.decode(m.value).record
            held[r["payer_account"]] = held.get(r["payer_account"], 0) + r["amount_minor"]
    assert held and all(total <= opening[n] for n, total in held.items())


def pressed(reference, codec, seed=7, payments=300):
    plan = limits_for(payments, seed)
    return plan, WorkloadBuilder(reference, seed, START, codec, pressing=plan).build(payments)


def test_the_pressing_banks_leave_the_other_banks_bytes_alone(reference, codec):
    plan, workload = pressed(reference, codec)
    others = [m for m in workload.messages if not m.label.startswith("pressing_")]
    assert others == build(reference, codec).messages
    pressing = {p: e for p, e in workload.payments.items() if e.label.startswith("pressing_")}
    assert len(pressing) == sum(b.payments for b in plan.banks.values()) == 60
    by_bank = {CAP_BOUND: {"SETTLED": None, "FAILED": "AM23"},
               LIQUIDITY_BOUND: {"SETTLED": None, "FAILED": "AM04"}}  # fmt: skip
    assert all(e.outcomes == by_bank[p.split(":")[0]] for p, e in pressing.items())
    assert pressed(reference, codec)[1].messages == workload.messages


@pytest.mark.parametrize(("seed", "payments"), [(1, 300), (7, 300), (11, 300), (3, 1), (5, 5000)])
def test_the_pressing_banks_try_to_send_far_more_than_their_limits_ever_let_through(
    reference, seed, payments
):
    """Whatever the faults reorder, both banks are refused: within its limit before the
    window settles, as much again after it (settling gives back at most what it owed),
    plus what it can receive (902 from nobody; 901 from 902) and deposits, is less than
    what each tries to send."""
    plan = limits_for(payments, seed)
    made = pressing_payments(plan, Accounts.of(reference).customers, START, payments)
    sent = {bank: sum(p.record["amount_minor"] for p in made if p.record["payer_bank"] == bank)
            for bank in plan.banks}  # fmt: skip
    to_901 = sum(p.record["amount_minor"] for p in made if p.record["payee_bank"] == CAP_BOUND)
    assert all(p.record["payer_bank"] != p.record["payee_bank"] for p in made)
    assert sent[CAP_BOUND] > 2 * plan.banks[CAP_BOUND].cap_minor + to_901
    deposited = plan.banks[LIQUIDITY_BOUND].liquidity_minor + plan.funds_in_minor
    assert sent[LIQUIDITY_BOUND] > 2 * deposited
    # and the limit that does not bind never does
    assert (
        plan.banks[CAP_BOUND].liquidity_minor - plan.funds_out_minor
        > 2 * plan.banks[CAP_BOUND].cap_minor
    )
    assert plan.banks[LIQUIDITY_BOUND].cap_minor > 2 * deposited
