"""The one drain wait (tooling.drain): on a real SQLite ledger fed Kafka-free by the Pump."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, update

from engine.config import Settings
from engine.ledger.models import Notification
from tests.tooling.test_chaos_invariants import flow
from tooling.drain import Drain, DrainState, drain_state, wait_drained

Ledger = tuple[Settings, Engine, dict[str, int]]


def look(engine: Engine, drain: Drain) -> DrainState:
    with engine.connect() as conn:
        return drain_state(conn, drain)


def test_an_empty_ledger_has_not_drained(ledger: Ledger):
    state = look(ledger[1], Drain(published=1))
    assert not state.done and not state.stuck
    assert state.text.startswith("0 terminal + 0 dead-lettered of 1")


def test_a_flow_drains_once_every_message_has_ended_and_every_bank_was_told(ledger: Ledger):
    _pump, evidence = flow(ledger)
    published = evidence.workload.published  # three payments and a poison message
    state = look(ledger[1], Drain(published))
    assert state.done, state.text
    assert state.counts.terminal + state.counts.dead_lettered == published
    assert not look(ledger[1], Drain(published + 1)).done  # one more awaited
    assert not look(ledger[1], Drain(published, steps=1)).done  # a step awaited


def test_the_lag_is_asked_only_once_the_ledger_has_drained_and_must_be_zero(ledger: Ledger):
    asked: list[int] = []

    def lag() -> dict[str, int]:
        asked.append(1)
        return {"payments.validated[0]": 2}

    assert not look(ledger[1], Drain(1, lag=lag)).done
    assert asked == []  # the ledger is not done: no broker round trip
    _pump, evidence = flow(ledger)
    state = look(ledger[1], Drain(evidence.workload.published, lag=lag))
    assert not state.done and asked == [1]
    assert "uncommitted {'payments.validated[0]': 2}" in state.text
    assert look(ledger[1], Drain(evidence.workload.published, lag=dict)).done


def test_a_notification_given_up_leaves_nothing_to_wait_for_when_delivery_is_awaited(
    ledger: Ledger,
):
    _pump, evidence = flow(ledger)
    engine, published = ledger[1], evidence.workload.published
    with engine.begin() as conn:
        conn.execute(update(Notification).values(status="FAILED"))
    state = look(engine, Drain(published, delivered=True))
    assert state.stuck and not state.done
    assert "given up; nothing left pending" in state.text
    assert look(engine, Drain(published)).done  # finished is enough when delivery is not awaited


def test_a_notification_pending_holds_the_drain(ledger: Ledger):
    _pump, evidence = flow(ledger)
    engine, published = ledger[1], evidence.workload.published
    with engine.begin() as conn:
        conn.execute(update(Notification).values(status="PENDING"))
    for delivered in (False, True):
        state = look(engine, Drain(published, delivered=delivered))
        assert not state.done and not state.stuck


def test_the_wait_is_bounded_and_returns_its_last_look(ledger: Ledger):
    pauses: list[float] = []
    looks: list[DrainState] = []
    started = time.monotonic()
    state = wait_drained(ledger[1], Drain(1), 0.3, 0.1, looks.append, pauses.append)
    assert not state.done and looks[-1] is state
    assert time.monotonic() - started < 10  # pauses recorded, not slept: only the reads
    assert all(0 <= p <= 0.1 for p in pauses)


def test_the_wait_returns_at_the_first_look_that_drained(ledger: Ledger):
    _pump, evidence = flow(ledger)
    looks: list[DrainState] = []
    state = wait_drained(ledger[1], Drain(evidence.workload.published), 60, 1, looks.append)
    assert state.done and looks == [state]


def test_a_watcher_that_raises_stops_the_wait(ledger: Ledger):
    def consumer_died(_state: DrainState) -> None:
        raise RuntimeError("validator exited")

    with pytest.raises(RuntimeError, match="validator exited"):
        wait_drained(ledger[1], Drain(1), 60, 0.1, consumer_died)
