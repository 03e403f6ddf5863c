"""Every notification transition is a guarded row: one that finds the row moved on changes nothing.

Run on SQLite and PostgreSQL, through the recorder, as the dispatcher and an operator do.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from engine.config import load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.notification_writes import (
    DueNotification,
    NotificationAnnounced,
    NotificationClaimed,
    NotificationDone,
    NotificationRedelivered,
    NotificationWrite,
    RetryLater,
)
from engine.ledger.notifications import Redelivery, decide_redelivery
from engine.ledger.recorder import GuardFailed, Recorder
from engine.ledger.reference import load_reference_data, read_file
from tests.factories import REFERENCE_FILE

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(tmp_path: Path, database_url: str) -> Engine:
    settings = load_settings(environ={}, database_url=database_url, data_dir=tmp_path)
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    due = DueNotification("ntf-1", "pay-1", "SETTLED", "007", "log", "PENDING", 0, "{}",
                          "evt-1", T0, T0, T0 + timedelta(hours=1), 0)  # fmt: skip
    record(engine, due)
    return engine


def record(engine: Engine, *rows: NotificationWrite) -> None:
    with engine.begin() as conn:
        Recorder().record(conn, rows)


def row(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(NotificationRow.__table__)).mappings().one()


def force(engine: Engine, **values: Any) -> None:
    """Put the row in a given state, as an earlier writer would have left it."""
    with engine.begin() as conn:
        conn.execute(update(NotificationRow.__table__).values(**values))


def test_a_claim_takes_a_due_row_once_and_not_one_at_another_attempt(engine):
    lease = T0 + timedelta(seconds=30)
    record(engine, NotificationClaimed("ntf-1", 1, T0, "stale", lease))  # attempts is 0
    assert row(engine)["claim_token"] is None
    record(engine, NotificationClaimed("ntf-1", 0, T0, "first", lease))
    record(engine, NotificationClaimed("ntf-1", 0, T0, "second", lease))  # leased: not due
    assert row(engine)["claim_token"] == "first"


def test_a_retry_applies_only_under_the_lease_at_the_attempt_claimed(engine):
    record(engine, NotificationClaimed("ntf-1", 0, T0, "ours", T0 + timedelta(seconds=30)))
    later = T0 + timedelta(seconds=5)
    record(engine, RetryLater("ntf-1", "theirs", 0, later, 1, "refused"))
    record(engine, RetryLater("ntf-1", "ours", 3, later, 4, "refused"))
    assert (row(engine)["attempts"], row(engine)["claim_token"]) == (0, "ours")
    record(engine, RetryLater("ntf-1", "ours", 0, later, 1, "refused"))
    found = row(engine)
    assert (found["attempts"], found["claim_token"], found["last_error"]) == (1, None, "refused")


def test_finishing_a_row_moved_on_rolls_the_whole_transaction_back(engine):
    record(engine, NotificationClaimed("ntf-1", 0, T0, "ours", T0 + timedelta(seconds=30)))
    with pytest.raises(GuardFailed):
        record(engine, NotificationDone("ntf-1", "ours", 2, "DELIVERED", 3, None, T0))
    assert row(engine)["status"] == "PENDING"
    record(engine, NotificationDone("ntf-1", "ours", 0, "DELIVERED", 1, None, T0))
    found = row(engine)
    assert (found["status"], found["attempts"], found["claim_token"]) == ("DELIVERED", 1, None)


def test_an_announcement_marks_only_a_finished_row(engine):
    record(engine, NotificationAnnounced("ntf-1", T0))
    assert row(engine)["announced_at"] is None  # still PENDING: its round is not announced
    force(engine, status="DELIVERED", finished_at=T0)
    record(engine, NotificationAnnounced("ntf-1", T0))
    assert row(engine)["announced_at"] is not None


def test_a_redelivery_reopens_only_a_failed_row_of_the_round_read(engine):
    reopen = NotificationRedelivered("ntf-1", 0, 1, T0, T0 + timedelta(hours=1))
    with pytest.raises(GuardFailed):
        record(engine, reopen)  # PENDING, not FAILED
    force(engine, status="FAILED", finished_at=T0, announced_at=T0, round=1)
    with pytest.raises(GuardFailed):
        record(engine, reopen)  # FAILED, but in round 1: someone redelivered it meanwhile
    force(engine, round=0)
    record(engine, reopen)
    found = row(engine)
    assert (found["status"], found["round"], found["announced_at"]) == ("PENDING", 1, None)


def test_a_redelivery_decides_only_for_failed_notifications():
    request = Redelivery("ops", T0, timedelta(hours=1), "bank back up")
    found = [("a", "FAILED", 0), ("b", "DELIVERED", 0), ("c", "FAILED", 2)]
    report, rows = decide_redelivery(found, request)
    assert report.redelivered == ["a", "c"] and report.unchanged == {"b": "DELIVERED"}
    reopened = [r for r in rows if isinstance(r, NotificationRedelivered)]
    assert [(r.notification_id, r.from_round, r.round) for r in reopened] == [
        ("a", 0, 1), ("c", 2, 3),
    ]  # fmt: skip
    assert all(r.deadline_at == T0 + timedelta(hours=1) for r in reopened)


WRITES = re.compile(r"(?<![\w.])(update|insert|delete)\(")
MODELS = re.compile(r"\bNotification(Row|Attempt|Redelivery)?\b")


def test_no_module_but_the_notification_writer_writes_notification_rows():
    """Anyone else hands rows to the recorder; migrations are the schema's own history."""
    writers = []
    for package in ("engine", "consumers", "producers", "sakk", "tooling"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts or path.name == "notification_writes.py":
                continue
            text = path.read_text(encoding="utf-8")
            if MODELS.search(text) and WRITES.search(text):
                writers.append(str(path.relative_to(ROOT)))
    assert writers == []
