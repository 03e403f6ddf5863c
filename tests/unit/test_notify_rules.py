"""What a round of attempts means for the ledger, and the claim's share per bank: pure rules."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from consumers.notify.message import Attempt, DeliveryResult, Notification
from consumers.notify.rules import Claimed, Finished, SlotLimits, deal_slots, decide
from consumers.notify.schedule import RetrySchedule
from engine.domain.notifications import NotificationStatus
from engine.ledger.notification_writes import RetryLater

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SCHEDULE = RetrySchedule(initial_s=1.0, cap_s=60.0, horizon_s=3_600.0)


def claimed(n: int, attempts_before: int = 0, deadline: datetime | None = None) -> Claimed:
    notification = Notification(f"ntf-{n}", f"pay-{n}", "SETTLED", "007", None, {})
    return Claimed(notification, "token", attempts_before, deadline or T0 + timedelta(hours=1),
                   0, f"evt-{n}")  # fmt: skip


def failed(error: str = "HTTP 503", tries: int = 1) -> DeliveryResult:
    attempts = tuple(Attempt(i, T0, 0.0125, 503, error) for i in range(1, tries + 1))
    return DeliveryResult(False, attempts, error)


OK = DeliveryResult(True, (Attempt(1, T0, 0.002, 200, None),), None)


def test_a_delivery_ends_the_notification_delivered_counting_earlier_attempts():
    decided = decide([Finished(claimed(1, attempts_before=3), OK)], T0, SCHEDULE, random.Random())
    (ending,) = decided.ending
    assert (ending.state, ending.attempts, ending.last_error) == (
        NotificationStatus.DELIVERED,
        4,
        None,
    )
    assert [(a.notification_id, a.number, a.duration_ms) for a in decided.attempts] == [
        ("ntf-1", 4, 2)
    ]
    assert decided.retries == ()


def test_a_failure_before_the_horizon_is_due_again_guarded_on_the_attempt_it_claimed():
    rng, mirror = random.Random(9), random.Random(9)
    decided = decide([Finished(claimed(1, attempts_before=2), failed())], T0, SCHEDULE, rng)
    at = T0 + timedelta(seconds=mirror.uniform(2.0, 4.0))  # the third failure: ceiling 4 s
    assert decided.retries == (RetryLater("ntf-1", "token", 2, at, 3, "HTTP 503"),)
    assert decided.ending == ()


def test_a_failure_at_the_horizon_gives_up_and_draws_nothing():
    rng = random.Random(9)
    state = rng.getstate()
    decided = decide([Finished(claimed(1, deadline=T0), failed())], T0, SCHEDULE, rng)
    (ending,) = decided.ending
    assert (ending.state, ending.attempts) == (NotificationStatus.FAILED, 1)
    assert rng.getstate() == state


def test_a_notification_never_sent_counts_one_attempt_and_keeps_its_error_short():
    never = DeliveryResult(False, (), "x" * 900)  # no URL: nothing posted
    decided = decide([Finished(claimed(1), never)], T0, SCHEDULE, random.Random(1))
    (retry,) = decided.retries
    assert retry.attempts == 1 and retry.last_error == "x" * 500 and decided.attempts == ()


def test_retries_draw_in_the_order_the_attempts_finished():
    rng, mirror = random.Random(4), random.Random(4)
    decided = decide([Finished(claimed(n), failed()) for n in (1, 2, 3)], T0, SCHEDULE, rng)
    expected = [T0 + timedelta(seconds=mirror.uniform(0.5, 1.0)) for _ in range(3)]
    assert [r.next_attempt_at for r in decided.retries] == expected


LIMITS = SlotLimits(threads=6, per_bank=2, claim_max=500)


def test_slots_are_bounded_per_bank_and_in_total():
    assert deal_slots({"007": 50, "011": 1, "230": 9}, {}, LIMITS, 0) == {
        "007": 2, "011": 1, "230": 2,
    }  # fmt: skip
    assert deal_slots({"007": 50, "011": 5, "230": 9}, {"007": 2, "230": 3}, LIMITS, 0) == {
        "011": 1
    }


def test_when_threads_are_short_the_first_bank_served_turns():
    few = SlotLimits(threads=1, per_bank=2, claim_max=500)
    due = {"007": 5, "011": 5, "230": 5}
    assert [deal_slots(due, {}, few, turn) for turn in range(4)] == [
        {"007": 1}, {"011": 1}, {"230": 1}, {"007": 1},
    ]  # fmt: skip


def test_no_bank_is_dealt_more_than_the_claim_maximum():
    assert deal_slots({"007": 9}, {}, SlotLimits(threads=64, per_bank=64, claim_max=3), 0) == {
        "007": 3
    }
