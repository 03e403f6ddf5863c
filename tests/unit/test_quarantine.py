"""The quarantine's pure core: a mark in hand at re-poll is a death; MAX_DEATHS alone, poison."""

from __future__ import annotations

import pytest

from engine.pipeline.quarantine import MAX_DEATHS, Mark, plan_partition, poison_reason


def in_hand(first: int, last: int, deaths: int = 0, suspect: int | None = None) -> Mark:
    return Mark(first, last, deaths, suspect, "other-instance")


def idle(suspect: int | None = None) -> Mark:
    return Mark(None, None, 0, suspect, "other-instance")


def test_without_a_mark_the_batch_is_handled_whole():
    plan = plan_partition(None, 10, 20)
    assert (plan.first, plan.last, plan.alone, plan.died, plan.deaths) == (10, 20, False, False, 0)
    assert plan.poison_deaths is None and plan.suspect_after is None


def test_a_cleared_mark_is_no_death():
    plan = plan_partition(idle(), 21, 30)
    assert not plan.died and not plan.alone and (plan.first, plan.last) == (21, 30)


def test_a_batch_still_in_hand_when_polled_again_is_a_death_and_goes_one_at_a_time():
    plan = plan_partition(in_hand(10, 20), 10, 25)
    assert plan.died and plan.alone
    assert (plan.first, plan.last, plan.deaths, plan.suspect_until) == (10, 10, 0, 20)
    assert plan.suspect_after == 20  # offsets 11..20 follow alone too
    assert plan.poison_deaths is None


def test_after_a_death_the_rest_of_the_range_is_handled_alone_without_a_new_death():
    plan = plan_partition(idle(suspect=20), 11, 25)
    assert plan.alone and not plan.died and (plan.first, plan.last, plan.deaths) == (11, 11, 0)


def test_past_the_range_that_died_batches_come_back():
    plan = plan_partition(idle(suspect=20), 21, 25)
    assert not plan.alone and (plan.first, plan.last) == (21, 25)
    assert plan.suspect_until is None


def test_the_last_suspect_message_clears_the_suspicion_once_committed():
    plan = plan_partition(idle(suspect=20), 20, 25)
    assert plan.alone and plan.suspect_after is None


def test_deaths_of_one_message_alone_add_up_and_the_last_quarantines_it_unrun():
    mark = in_hand(15, 15, deaths=0, suspect=20)
    for expected in range(1, MAX_DEATHS):
        plan = plan_partition(mark, 15, 30)
        assert plan.died and plan.alone and plan.deaths == expected and plan.poison_deaths is None
        mark = plan.mark("restarted")
    plan = plan_partition(mark, 15, 30)
    assert plan.poison_deaths == MAX_DEATHS and (plan.first, plan.last) == (15, 15)
    assert plan.suspect_after == 20  # the others of the range still follow alone


def test_a_batch_death_never_counts_towards_one_message():
    """Chaos kills at random: only deaths with the message alone in hand make it poison."""
    plan = plan_partition(in_hand(15, 40, deaths=0), 15, 40)
    assert plan.deaths == 0
    for _ in range(5):  # the batch dies again and again: never a poison verdict
        assert plan_partition(in_hand(15, 40, deaths=MAX_DEATHS), 15, 40).poison_deaths is None


def test_a_single_message_batch_that_dies_is_a_death_of_that_message_alone():
    plan = plan_partition(in_hand(7, 7), 7, 9)
    assert plan.died and plan.deaths == 1


def test_a_mark_behind_the_offset_polled_is_no_death():
    """Someone got past those offsets (an expelled instance committing late, a seek)."""
    plan = plan_partition(in_hand(10, 20, deaths=2), 21, 30)
    assert not plan.died and not plan.alone


def test_a_death_on_another_message_starts_its_count_afresh():
    plan = plan_partition(in_hand(16, 16, deaths=2, suspect=20), 15, 30)
    assert plan.died and plan.first == 15 and plan.deaths == 0


def test_the_suspect_range_grows_with_each_death():
    plan = plan_partition(in_hand(12, 30, suspect=20), 12, 30)
    assert plan.suspect_until == 30


def test_a_bound_of_one_quarantines_on_the_first_death_alone():
    assert plan_partition(in_hand(5, 5), 5, 6, max_deaths=1).poison_deaths == 1


@pytest.mark.parametrize(("first", "last", "bound"), [(5, 4, 3), (1, 2, 0)])
def test_impossible_inputs_are_refused(first, last, bound):
    with pytest.raises(ValueError):
        plan_partition(None, first, last, max_deaths=bound)


def test_the_reason_names_the_deaths():
    assert "3 times" in poison_reason(3)
