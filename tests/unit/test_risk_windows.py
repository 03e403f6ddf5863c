"""The window lifecycle: every allowed and refused move, attempts, and the close delay."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.risk.windows import (
    FINAL,
    MAX_ATTEMPTS,
    MAX_CLOSE_DELAY,
    TRANSITIONS,
    Assignment,
    IllegalTransition,
    WindowEvent,
    WindowRecord,
    WindowState,
    allowed_events,
    closes_at,
    may_close,
    transition,
    window_for,
)

EXAMPLES = 300  # random event sequences tried against the lifecycle
CLOSE = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
DELAY = timedelta(seconds=30)
S, E = WindowState, WindowEvent


def test_the_happy_path_ends_settled_after_one_attempt() -> None:
    window = WindowRecord("w1")
    for event in (E.CLOSE, E.SETTLE, E.CONFIRM):
        moved = transition(window, event)
        assert isinstance(moved, WindowRecord)
        window = moved

    assert window == WindowRecord("w1", S.SETTLED, attempt=1)


def test_an_aborted_window_can_be_settled_again_as_a_new_attempt() -> None:
    window = WindowRecord("w1", S.SETTLING, attempt=1)

    aborted = transition(window, E.ABORT)
    again = transition(aborted, E.SETTLE) if isinstance(aborted, WindowRecord) else aborted

    assert aborted == WindowRecord("w1", S.ABORTED, attempt=1)
    assert again == WindowRecord("w1", S.SETTLING, attempt=2)


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s, e in itertools.product(WindowState, WindowEvent) if (s, e) not in TRANSITIONS],
)
def test_every_move_outside_the_table_is_refused_with_its_reason(
    state: WindowState, event: WindowEvent
) -> None:
    window = WindowRecord("w7", state, attempt=1)

    result = transition(window, event)

    assert isinstance(result, IllegalTransition)
    assert result.window == window  # nothing moved
    assert f"window w7 is {state}: cannot {event}" in result.reason


def test_the_table_is_the_documented_lifecycle() -> None:
    assert {(s.value, e.value, t.value) for (s, e), t in TRANSITIONS.items()} == {
        ("OPEN", "close", "CLOSED"),
        ("CLOSED", "settle", "SETTLING"),
        ("SETTLING", "confirm", "SETTLED"),
        ("SETTLING", "abort", "ABORTED"),
        ("ABORTED", "settle", "SETTLING"),
    }
    assert frozenset({S.SETTLED}) == FINAL
    assert allowed_events(S.SETTLED) == ()
    assert allowed_events(S.SETTLING) == (E.CONFIRM, E.ABORT)


def test_a_settled_window_says_it_is_final() -> None:
    result = transition(WindowRecord("w1", S.SETTLED, 1), E.ABORT)

    assert isinstance(result, IllegalTransition) and "nothing: it is final" in result.reason


def test_settle_attempts_are_bounded() -> None:
    result = transition(WindowRecord("w1", S.ABORTED, MAX_ATTEMPTS), E.SETTLE)

    assert isinstance(result, IllegalTransition) and "an operator must" in result.reason
    assert transition(WindowRecord("w1", S.ABORTED, MAX_ATTEMPTS - 1), E.SETTLE) == WindowRecord(
        "w1", S.SETTLING, MAX_ATTEMPTS
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.sampled_from(list(WindowEvent)), max_size=30))
def test_any_event_sequence_stays_in_the_lifecycle(events: list[WindowEvent]) -> None:
    window = WindowRecord("w1")
    for event in events:
        result = transition(window, event)
        if window.state in FINAL:  # settled is final: every later event is refused
            assert isinstance(result, IllegalTransition)
        if isinstance(result, WindowRecord):
            assert TRANSITIONS[(window.state, event)] is result.state
            assert result.attempt == window.attempt + (event is E.SETTLE)
            window = result
        # Only a window that was instructed has an attempt.
        assert (window.attempt == 0) == (window.state in (S.OPEN, S.CLOSED))


# -- the close delay ---------------------------------------------------------------------


def at(seconds: float) -> datetime:
    return CLOSE + timedelta(seconds=seconds)


def test_a_payment_in_flight_decided_within_the_delay_stays_in_its_window() -> None:
    assert window_for(at(-1), at(30), CLOSE, DELAY) is Assignment.THIS_WINDOW
    assert window_for(at(-1), at(0), CLOSE, DELAY) is Assignment.THIS_WINDOW


def test_a_payment_in_flight_decided_after_the_delay_goes_to_the_next_window() -> None:
    assert window_for(at(-1), at(30.001), CLOSE, DELAY) is Assignment.NEXT_WINDOW


def test_a_payment_accepted_at_or_after_the_close_request_goes_to_the_next_window() -> None:
    assert window_for(at(0), at(1), CLOSE, DELAY) is Assignment.NEXT_WINDOW
    assert window_for(at(5), at(6), CLOSE, DELAY) is Assignment.NEXT_WINDOW


def test_with_no_delay_only_payments_decided_at_the_request_stay() -> None:
    assert window_for(at(-1), at(0), CLOSE, timedelta(0)) is Assignment.THIS_WINDOW
    assert window_for(at(-1), at(0.001), CLOSE, timedelta(0)) is Assignment.NEXT_WINDOW


def test_decided_before_accepted_is_a_bug() -> None:
    with pytest.raises(ValueError, match="before it was accepted"):
        window_for(at(1), at(0), CLOSE, DELAY)


def test_the_close_event_waits_for_the_delay() -> None:
    assert closes_at(CLOSE, DELAY) == at(30)
    assert not may_close(at(29.999), CLOSE, DELAY)
    assert may_close(at(30), CLOSE, DELAY)


@pytest.mark.parametrize("delay", [timedelta(seconds=-1), MAX_CLOSE_DELAY + timedelta(seconds=1)])
def test_a_close_delay_out_of_bounds_is_refused(delay: timedelta) -> None:
    with pytest.raises(ValueError, match="close delay"):
        closes_at(CLOSE, delay)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    accepted=st.integers(-10_000, 10_000),
    took=st.integers(0, 100_000),
    delay=st.integers(0, 600_000),
)
def test_every_payment_lands_in_exactly_one_window_and_this_one_closes_after_it(
    accepted: int, took: int, delay: int
) -> None:
    accepted_at = CLOSE + timedelta(milliseconds=accepted)
    decided_at = accepted_at + timedelta(milliseconds=took)
    wait = timedelta(milliseconds=delay)

    assignment = window_for(accepted_at, decided_at, CLOSE, wait)

    if assignment is Assignment.THIS_WINDOW:
        # Decided no later than the close itself: the window's nets include it.
        assert accepted_at < CLOSE and not decided_at > closes_at(CLOSE, wait)
    else:
        assert accepted_at >= CLOSE or decided_at > closes_at(CLOSE, wait)
