"""The payment state machine: one terminal state per payment."""

from __future__ import annotations

import pytest

from engine.ledger.states import IllegalTransitionError, check_transition


@pytest.mark.parametrize(
    ("current", "target"),
    [(None, "VALIDATED"), (None, "REJECTED"), ("VALIDATED", "SETTLED"), ("VALIDATED", "FAILED")],
)
def test_allowed_transitions(current, target):
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("SETTLED", "FAILED"),
        ("FAILED", "SETTLED"),
        ("REJECTED", "VALIDATED"),
        ("SETTLED", "SETTLED"),
        (None, "SETTLED"),
        ("REJECTED", "SETTLED"),
    ],
)
def test_terminal_states_never_change(current, target):
    with pytest.raises(IllegalTransitionError):
        check_transition(current, target)
