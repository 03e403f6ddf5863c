"""Delivery latency from a hand-made ledger: recorded times only, split healthy / down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from engine.config import load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import Notification, NotificationAttempt
from tooling.chaos.invariants import HEALTHY_P99_BOUND_S, Checked, Evidence, check_latency
from tooling.chaos.latency import Delivered, LatencySplit, delivery_latencies, percentile

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    upgrade(url)
    return make_engine(url)


def notification(
    engine: Engine, nid: str, bank: str, created_s: float, status: str = "DELIVERED"
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(Notification),
            [{
                "notification_id": nid, "payment_id": f"p-{nid}", "outcome": "SETTLED",
                "recipient_bank": bank, "sender": "webhook", "status": status, "attempts": 0,
                "payload": "{}", "source_event_id": f"e-{nid}", "created_at": at(created_s),
            }],
        )  # fmt: skip


def attempt(
    engine: Engine, nid: str, number: int, started_s: float, duration_ms: int, error: str | None
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(NotificationAttempt),
            [{
                "notification_id": nid, "number": number, "started_at": at(started_s),
                "duration_ms": duration_ms, "status_code": None if error else 200, "error": error,
            }],
        )  # fmt: skip


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile(list(reversed(values)), 0.5) == 50.0
    assert percentile([], 0.99) is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_latency_runs_from_creation_to_the_end_of_the_first_successful_attempt(engine):
    notification(engine, "a", "007", 0.0)
    attempt(engine, "a", 1, 0.1, 1_000, "timeout after 1000 ms")
    attempt(engine, "a", 2, 1.5, 200, None)  # ends at 1.7 s
    notification(engine, "b", "007", 10.0)
    attempt(engine, "b", 1, 10.2, 50, None)  # ends at 10.25 s
    attempt(engine, "b", 2, 16.0, 50, None)  # a crash repeated it: the first one counts
    notification(engine, "down", "190", 2.0)
    for n in range(1, 9):
        attempt(engine, "down", n, 2.0 + 2 * n, 1_000, "timeout after 1000 ms")
    attempt(engine, "down", 9, 22.0, 500, None)  # ends at 22.5 s
    notification(engine, "given-up", "011", 0.0, status="FAILED")
    attempt(engine, "given-up", 1, 0.5, 1_000, "timeout after 1000 ms")
    notification(engine, "pending", "011", 0.0, status="PENDING")
    with engine.connect() as conn:
        by_bank = delivery_latencies(conn)
    assert sorted(by_bank) == ["007", "190"]  # only DELIVERED ones have a latency
    assert [d.latency_s for d in by_bank["007"]] == pytest.approx([1.7, 0.25])
    assert [d.latency_s for d in by_bank["190"]] == pytest.approx([20.5])
    assert by_bank["190"][0].created_at == at(2.0)


def test_the_split_keeps_the_outage_and_leaves_out_what_stage_faults_caught():
    by_bank = {
        "007": [Delivered(at(5), 0.5), Delivered(at(6), 9.0), Delivered(at(40), 30.0)],
        "011": [Delivered(at(7), 1.0)],
        "190": [Delivered(at(1), 3.0), Delivered(at(8), 20.0)],
    }
    window = (at(4), at(30))
    freeze = (at(14), at(16))  # catches 007's notification created at 6 s, in flight until 15 s
    split = LatencySplit.of(by_bank, "190", window, [freeze])
    assert (split.healthy_count, split.healthy_p99_s, split.healthy_max_s) == (2, 1.0, 1.0)
    assert (split.healthy_all_count, split.healthy_all_p99_s) == (3, 9.0)
    assert (split.down_bank, split.down_count, split.down_p99_s) == ("190", 1, 20.0)
    everything = LatencySplit.of(by_bank)  # no bank down: every notification, all banks
    assert (everything.healthy_count, everything.down_count, everything.down_p99_s) == (6, 0, None)


def evidence(down_bank: str | None, window=None, stage_faults=()) -> Evidence:  # type: ignore[no-untyped-def]
    settings = load_settings(environ={})
    return Evidence(settings, None, None, {}, {}, None, down_bank, window, list(stage_faults))  # type: ignore[arg-type]


def test_healthy_banks_slower_than_the_bound_are_a_violation_the_down_bank_is_not(engine):
    slow = HEALTHY_P99_BOUND_S + 2
    for i in range(3):
        notification(engine, f"down-{i}", "190", 1.0)
        attempt(engine, f"down-{i}", 1, 1.0 + 3 * slow, 100, None)
        notification(engine, f"ok-{i}", "007", 1.0)
        attempt(engine, f"ok-{i}", 1, 1.5, 100, None)
    checked = Checked()
    with engine.connect() as conn:
        assert check_latency(conn, evidence("190", (at(0), at(60))), checked) == []
    assert checked.latency is not None and checked.latency.down_p99_s == pytest.approx(
        3 * slow + 0.1
    )
    notification(engine, "late", "011", 2.0)
    attempt(engine, "late", 1, 2.0 + slow, 100, None)
    with engine.connect() as conn:
        (violation,) = check_latency(conn, evidence("190", (at(0), at(60))), Checked())
        assert violation.startswith("latency: the healthy banks' p99 delivery latency is")
        assert f"above the {HEALTHY_P99_BOUND_S:.0f} s bound; bank 190, down" in violation
        # The same delay while the broker was frozen is everyone's, not the outage's.
        frozen = [(at(3), at(3 + slow))]
        assert check_latency(conn, evidence("190", (at(0), at(60)), frozen), Checked()) == []
