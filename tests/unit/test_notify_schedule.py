"""The retry schedule is a pure function of the failures, the time and a seeded generator."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from consumers.notify.schedule import RetrySchedule

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SCHEDULE = RetrySchedule(initial_s=1.0, cap_s=8.0, horizon_s=3_600.0)


def test_the_same_seed_gives_the_same_delays_draw_for_draw():
    rng = random.Random(7)
    delays = [SCHEDULE.delay_s(failures, rng) for failures in (1, 2, 3, 4, 5)]
    assert delays == pytest.approx(
        [0.6619163824165812, 1.150849173924502, 3.3018689460797077, 4.289745146670171,
         6.143528017226757], abs=1e-12,
    )  # fmt: skip


def test_each_retry_is_one_uniform_draw_between_half_the_ceiling_and_the_ceiling():
    mirror, rng = random.Random(3), random.Random(3)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (61, 8.0)):
        assert SCHEDULE.ceiling_s(failures) == ceiling
        assert SCHEDULE.delay_s(failures, rng) == mirror.uniform(ceiling / 2, ceiling)


def test_the_next_attempts_follow_from_now_and_the_seed_alone():
    rng, now, times = random.Random(11), T0, []
    for failures in (1, 2, 3):
        at = SCHEDULE.next_attempt_at(now, failures, T0 + timedelta(hours=1), rng)
        assert at is not None
        times.append(at)
        now = at
    assert times == [
        datetime(2026, 12, 1, 9, 0, 0, 726190, tzinfo=UTC),
        datetime(2026, 12, 1, 9, 0, 2, 285962, tzinfo=UTC),
        datetime(2026, 12, 1, 9, 0, 6, 134383, tzinfo=UTC),
    ]


def test_the_last_attempt_falls_on_the_deadline_and_giving_up_draws_nothing():
    deadline = T0 + timedelta(hours=1)
    rng = random.Random(5)
    assert SCHEDULE.next_attempt_at(deadline - timedelta(seconds=1), 9, deadline, rng) == deadline
    state = rng.getstate()
    assert SCHEDULE.next_attempt_at(deadline, 10, deadline, rng) is None
    assert rng.getstate() == state


def test_a_retry_needs_a_failure_first():
    with pytest.raises(ValueError, match="at least one failure"):
        SCHEDULE.delay_s(0, random.Random())
