"""The lifecycle rows' chain and the replay of window events, as pure functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from engine.audit.window_lifecycle import (
    GENESIS_HASH,
    Transition,
    WindowEventRow,
    chain_problems,
    replay_states,
    state_differences,
)
from engine.risk.windows import WindowEvent, WindowRecord, WindowState

AT = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
MOVES = [
    (WindowEvent.CLOSE, WindowState.CLOSED, 0),
    (WindowEvent.SETTLE, WindowState.SETTLING, 1),
    (WindowEvent.ABORT, WindowState.ABORTED, 1),
    (WindowEvent.SETTLE, WindowState.SETTLING, 2),
    (WindowEvent.CONFIRM, WindowState.SETTLED, 2),
]


def chained(moves=MOVES, label="2026-11-24"):  # type: ignore[no-untyped-def]
    rows, prev = [], GENESIS_HASH
    for seq, (event, state, attempt) in enumerate(moves, start=1):
        row = WindowEventRow(label, seq, event, state, attempt, Transition("op"),
                             AT + timedelta(minutes=seq), prev)  # fmt: skip
        row = replace(row, row_hash=row.computed_hash())
        rows.append(row)
        prev = row.row_hash
    return rows


def test_an_intact_chain_of_allowed_moves_has_no_problem():
    assert chain_problems("2026-11-24", chained()) == []


def test_a_changed_row_a_missing_row_and_an_illegal_move_are_each_named():
    rows = chained()
    changed = [*rows[:2], replace(rows[2], details=Transition("op", reason="edited")), *rows[3:]]
    assert chain_problems("2026-11-24", changed) == [
        "window 2026-11-24 transition 3: its hash does not cover its content (it was changed)"
    ]
    gap = chain_problems("2026-11-24", [rows[0], *rows[2:]])
    assert "expected transition 2 (one is missing)" in gap[0]
    assert any("does not follow the previous row's hash" in p for p in gap)
    illegal = chained([(WindowEvent.CLOSE, WindowState.CLOSED, 0),
                       (WindowEvent.CONFIRM, WindowState.SETTLED, 0)])  # fmt: skip
    assert chain_problems("2026-11-24", illegal) == [
        "window 2026-11-24 transition 2: window 2026-11-24 is CLOSED: cannot confirm; "
        "it accepts settle"
    ]


def test_replay_folds_events_in_seq_order_once_each_and_names_refused_moves():
    events = [r.as_event() for r in chained()]
    replayed = replay_states([*reversed(events), events[0]])
    assert replayed.events == 5 and replayed.problems == []
    assert replayed.states["2026-11-24"] == WindowRecord("2026-11-24", WindowState.SETTLED, 2)
    broken = replay_states([events[0], events[2]])
    assert broken.problems == [
        "window 2026-11-24 event 3: window 2026-11-24 is CLOSED: cannot abort; it accepts settle"
    ]


def test_state_differences_name_each_window_that_disagrees():
    ledger = {"a": WindowRecord("a", WindowState.SETTLING, 2), "b": WindowRecord("b")}
    replayed = {"a": WindowRecord("a", WindowState.ABORTED, 1)}
    assert state_differences(replayed, ledger) == [
        "window a: events give ABORTED/1, the ledger SETTLING/2"
    ]


def test_the_window_event_is_declared_beside_the_payment_events_and_matches_its_schema():
    from engine.config import Settings
    from engine.events import EVENTS, SETTLEMENT_WINDOW_CHANGED, check_against_schemas
    from engine.serialization import read_release_schemas

    check_against_schemas(Settings().schemas_dir)  # raises on any disagreement
    assert SETTLEMENT_WINDOW_CHANGED.topic_name == "settlement.windows"
    assert SETTLEMENT_WINDOW_CHANGED.name not in EVENTS  # no stage consumes it
    assert SETTLEMENT_WINDOW_CHANGED.name in read_release_schemas(Settings().schemas_dir)
    row = chained()[1]
    assert SETTLEMENT_WINDOW_CHANGED.key(row.as_event()) == b"2026-11-24"
