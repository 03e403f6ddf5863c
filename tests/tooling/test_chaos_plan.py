"""The fault plan: seeded, every kind present, stalls never overlap."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.pipeline.crash_points import CRASH_POINTS
from tooling.chaos.plan import (
    BANK_OUTAGE,
    BROKER_FREEZE,
    CRASH_POINT,
    EXCLUSIVE,
    FAULT_KINDS,
    MID_BATCH_KILL,
    fault_counts,
    plan_faults,
)

MEMBERS = ["validator-1", "validator-2", "settlement-1", "settlement-2", "notification-1"]
BANKS = ["007", "011", "013", "190"]


def test_same_seed_same_schedule_and_another_seed_another():
    assert plan_faults(5, 30, MEMBERS, BANKS) == plan_faults(5, 30, MEMBERS, BANKS)
    assert plan_faults(5, 30, MEMBERS, BANKS) != plan_faults(6, 30, MEMBERS, BANKS)


@pytest.mark.parametrize("duration_s", [20, 30, 600, 900])
def test_every_kind_is_planned_and_every_crash_point_aimed_at(duration_s):
    faults = plan_faults(1, duration_s, MEMBERS, BANKS)
    assert Counter(f.kind for f in faults) == fault_counts(duration_s)
    assert set(FAULT_KINDS) == {f.kind for f in faults}
    assert {f.point for f in faults if f.kind == CRASH_POINT} == set(CRASH_POINTS)
    assert all(0 < f.at_s < duration_s for f in faults)


def test_longer_runs_get_more_faults():
    short, long = fault_counts(30), fault_counts(900)
    assert all(long[k] >= short[k] for k in FAULT_KINDS)
    assert long["kill"] >= 100


def test_freezes_outages_and_graceful_stops_never_overlap():
    for seed in range(20):
        stalls = sorted(
            (f.at_s, f.at_s + f.duration_s)
            for f in plan_faults(seed, 120, MEMBERS, BANKS)
            if f.kind in EXCLUSIVE
        )
        assert all(end <= nxt for (_s, end), (nxt, _e) in zip(stalls, stalls[1:], strict=False))


def test_stalls_last_several_seconds():
    freezes = [f for f in plan_faults(3, 600, MEMBERS, BANKS) if f.kind == BROKER_FREEZE]
    assert all(3 <= f.duration_s <= 8 for f in freezes)


def test_mid_batch_kills_aim_at_a_group_of_two_or_more():
    faults = plan_faults(2, 600, MEMBERS, BANKS)
    targets = {f.target for f in faults if f.kind == MID_BATCH_KILL}
    assert targets and targets <= set(MEMBERS[:4])


def test_after_complete_is_aimed_at_the_notification_stage():
    faults = plan_faults(4, 600, MEMBERS, BANKS)
    assert {f.target for f in faults if f.point == "after_complete"} == {"notification-1"}


def test_one_bank_is_down_for_most_of_the_run_chosen_by_the_seed():
    for duration_s in (30, 600):
        (outage,) = [f for f in plan_faults(7, duration_s, MEMBERS, BANKS) if f.kind == BANK_OUTAGE]
        assert outage.bank in BANKS and not outage.target
        assert outage.at_s == pytest.approx(0.1 * duration_s)
        assert outage.at_s + outage.duration_s == pytest.approx(0.8 * duration_s)
        assert f"bank {outage.bank} for" in outage.describe()
    chosen = {
        next(f.bank for f in plan_faults(seed, 30, MEMBERS, BANKS) if f.kind == BANK_OUTAGE)
        for seed in range(40)
    }
    assert chosen == set(BANKS)  # every bank gets its turn across seeds


def test_the_bank_outage_leaves_the_rest_of_a_seeds_schedule_alone():
    with_outage = plan_faults(9, 120, MEMBERS, BANKS)
    others = [f for f in with_outage if f.kind != BANK_OUTAGE]
    assert others == [f for f in plan_faults(9, 120, MEMBERS, ["999"]) if f.kind != BANK_OUTAGE]


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        plan_faults(1, 0, MEMBERS, BANKS)
    with pytest.raises(ValueError):
        plan_faults(1, 10, [], BANKS)
    with pytest.raises(ValueError):
        plan_faults(1, 10, MEMBERS, [])
