"""The delivery schedule and its ledger side (``consumers.notify``) on a real SQLite ledger."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from consumers.notification import NotificationStage
from consumers.notify.book import DeliveryBook, deliver_due
from consumers.notify.dispatcher import Dispatcher
from consumers.notify.message import Attempt, DeliveryResult, Notification
from consumers.notify.rules import Finished
from consumers.notify.schedule import RetrySchedule
from engine.config import Settings, load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import EmittedEvent, NotificationAttempt
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.reference import load_reference_data, read_file
from sakk.app import make_codec
from tests.factories import (
    AMINA,
    KARIM,
    REFERENCE_FILE,
    YOUSSEF,
    decide_and_record,
    inbound,
    payment,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class ScriptedSender:
    """Answers per bank as told: True delivers, False fails (a unit test of the rules)."""

    name = "scripted"
    concurrent = False

    def __init__(self, answers: dict[str, bool]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def deliver(self, notification: Notification) -> DeliveryResult:
        self.calls.append(notification.recipient_bank)
        ok = self.answers.get(notification.recipient_bank, True)
        attempt = Attempt(1, T0, 0.001, 200 if ok else 503, None if ok else "HTTP 503")
        return DeliveryResult(ok, (attempt,), None if ok else "HTTP 503")

    def close(self) -> None:
        pass


@pytest.fixture
def ledger(tmp_path: Path, database_url: str) -> tuple[Settings, Engine]:
    settings = load_settings(
        environ={},
        database_url=database_url,
        data_dir=tmp_path,
        notify_retry_initial_ms=1_000,
        notify_retry_max_ms=60_000,
        notify_horizon_s=3_600,
    )
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    return settings, engine


def schedule_settled(settings: Settings, engine: Engine, *pairs: tuple) -> None:  # type: ignore[type-arg]
    """Record PENDING notifications as the stage does, for PaymentSettled events."""
    stage = NotificationStage(settings)
    batch = []
    for offset, (payer, payee) in enumerate(pairs):
        record = payment(payer, payee, 1_000, fee_minor=0, settlement_window="2026-12-01")
        batch.append(inbound(settings.topic("settled"), "PaymentSettled", record, offset))
    with engine.begin() as conn:
        decide_and_record(conn, stage, batch)


def rows(engine: Engine) -> list:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return list(conn.execute(select(NotificationRow.__table__)).mappings())


@pytest.fixture
def book_at(ledger) -> Callable[[], DeliveryBook]:  # type: ignore[no-untyped-def]
    settings, engine = ledger
    return lambda: DeliveryBook(
        settings, engine, make_codec(settings), "scripted", random.Random(7)
    )


def test_retry_delays_double_from_the_initial_delay_up_to_the_cap_with_equal_jitter():
    schedule = RetrySchedule(initial_s=1.0, cap_s=8.0, horizon_s=3_600.0)
    rng = random.Random(1)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0)):
        for _ in range(50):
            assert ceiling / 2 <= schedule.delay_s(failures, rng) <= ceiling


def test_the_last_attempt_falls_on_the_horizon_and_a_failure_there_gives_up():
    schedule = RetrySchedule(initial_s=60.0, cap_s=600.0, horizon_s=3_600.0)
    rng = random.Random(2)
    deadline = T0 + timedelta(hours=1)
    near = deadline - timedelta(seconds=5)
    assert schedule.next_attempt_at(near, 9, deadline, rng) == deadline
    assert schedule.next_attempt_at(deadline, 10, deadline, rng) is None


def test_a_retry_needs_a_failure_first():
    with pytest.raises(ValueError, match="at least one failure"):
        RetrySchedule(1.0, 2.0, 3.0).delay_s(0, random.Random())


def test_interbank_settlement_schedules_one_notification_per_bank_due_now(ledger):
    settings, engine = ledger
    schedule_settled(settings, engine, (AMINA, KARIM))
    found = rows(engine)
    assert sorted(r["recipient_bank"] for r in found) == ["007", "011"]
    for r in found:
        assert r["status"] == "PENDING" and r["attempts"] == 0 and r["round"] == 0
        assert r["next_attempt_at"] is not None and r["deadline_at"] > r["next_attempt_at"]


def test_a_failed_attempt_is_rescheduled_and_later_delivered_under_the_same_id(ledger, book_at):
    settings, engine = ledger
    schedule_settled(settings, engine, (AMINA, YOUSSEF))  # one bank: 007
    book, sender = book_at(), ScriptedSender({"007": False})
    now = datetime.now(UTC)
    assert deliver_due(book, sender, now) == []
    (row,) = rows(engine)
    assert row["status"] == "PENDING" and row["attempts"] == 1 and row["claim_token"] is None
    retry_at = row["next_attempt_at"].replace(tzinfo=UTC)
    assert now + timedelta(seconds=0.5) <= retry_at <= now + timedelta(seconds=1)
    assert deliver_due(book, sender, now + timedelta(milliseconds=100)) == []  # not due yet
    assert sender.calls == ["007"]

    sender.answers["007"] = True
    outgoing = deliver_due(book, sender, retry_at)
    assert len(outgoing) == 1
    (row,) = rows(engine)
    assert (row["status"], row["attempts"]) == ("DELIVERED", 2)
    with engine.connect() as conn:
        numbers = conn.execute(select(NotificationAttempt.number)).scalars().all()
    assert sorted(numbers) == [1, 2]
    notified = book.codec.decode(outgoing[0].message.value).record
    assert notified["notification_id"] == row["notification_id"]
    assert (notified["delivery_status"], notified["attempts"]) == ("DELIVERED", 2)


def test_a_notification_still_undelivered_at_the_horizon_is_failed_and_announced(ledger, book_at):
    settings, engine = ledger
    schedule_settled(settings, engine, (AMINA, YOUSSEF))
    book, sender = book_at(), ScriptedSender({"007": False})
    (row,) = rows(engine)
    deadline = row["deadline_at"].replace(tzinfo=UTC)
    now = datetime.now(UTC)
    rounds = 0
    while rows(engine)[0]["status"] == "PENDING":
        rounds += 1
        if rounds > 200:  # 1 s doubling to a 60 s cap: about 70 attempts in an hour
            raise AssertionError("never gave up")
        due = rows(engine)[0]["next_attempt_at"].replace(tzinfo=UTC)
        now = max(now, due)
        outgoing = deliver_due(book, sender, now)
    (row,) = rows(engine)
    assert row["status"] == "FAILED" and now >= deadline
    notified = book.codec.decode(outgoing[0].message.value).record
    assert notified["delivery_status"] == "FAILED" and notified["attempts"] == row["attempts"]


def test_one_bank_failing_does_not_hold_back_another_banks_deliveries(ledger, book_at):
    settings, engine = ledger
    schedule_settled(settings, engine, (AMINA, KARIM), (AMINA, KARIM), (AMINA, KARIM))
    book, sender = book_at(), ScriptedSender({"011": False})
    outgoing = deliver_due(book, sender, datetime.now(UTC))
    by_bank = {(r["recipient_bank"], r["status"]) for r in rows(engine)}
    assert by_bank == {("007", "DELIVERED"), ("011", "PENDING")}
    assert len(outgoing) == 3  # the three 007 notifications, announced at once


def test_a_claim_held_by_another_dispatcher_is_not_taken_until_its_lease_expires(ledger, book_at):
    settings, engine = ledger
    schedule_settled(settings, engine, (AMINA, YOUSSEF))
    first, second = book_at(), book_at()
    now = datetime.now(UTC)
    (claimed,) = first.claim(now, {"007": 10})
    assert second.claim(now, {"007": 10}) == []
    later = now + timedelta(seconds=settings.notify_lease_s + 1)
    (taken_over,) = second.claim(later, {"007": 10})
    assert taken_over.notification == claimed.notification
    ok = ScriptedSender({}).deliver(claimed.notification)
    # The first dispatcher comes back late: its record must not finish the notification.
    assert first.record([Finished(claimed, ok)], later) == []
    assert rows(engine)[0]["status"] == "PENDING"
    assert len(second.record([Finished(taken_over, ok)], later)) == 1
    assert rows(engine)[0]["status"] == "DELIVERED"
    with engine.connect() as conn:
        emitted = conn.execute(select(func.count()).select_from(EmittedEvent)).scalar_one()
    assert emitted == 1


def test_free_slots_bound_work_per_bank_and_in_total(ledger):
    settings, engine = ledger
    settings = settings.replace(webhook_concurrency=6, notify_max_in_flight_per_bank=2)
    dispatcher = Dispatcher(
        settings, engine, make_codec(settings), ScriptedSender({}), threading.Event()
    )
    dispatcher.sender.concurrent = True  # type: ignore[misc]
    dispatcher._threads = 6
    assert dispatcher._free_slots(Counter({"007": 50, "011": 1, "230": 9})) == {
        "007": 2,
        "011": 1,
        "230": 2,
    }
    dispatcher._in_flight.update({"007": 2, "230": 3})
    assert dispatcher._free_slots(Counter({"007": 50, "011": 5, "230": 9})) == {"011": 1}


def test_a_body_that_cannot_be_built_is_an_attempt_recorded_and_counted(ledger, book_at):
    from prometheus_client import REGISTRY
    from sqlalchemy import update

    from consumers.notify.channels import WebhookSender
    from consumers.notify.formats import Body
    from engine.ledger.models import Bank
    from engine.trust.keys import KeyPair

    settings, engine = ledger
    with engine.begin() as conn:
        conn.execute(
            update(Bank.__table__)
            .where(Bank.code == "007")
            .values(webhook_url="http://127.0.0.1:9/n")
        )
    schedule_settled(settings, engine, (AMINA, YOUSSEF))  # one bank: 007

    def broken_builder(notification: Notification) -> Body:  # the seam: the body's builder
        raise RuntimeError("XMLSchemaParseError: Internal error")

    sender = WebhookSender([KeyPair.from_seed(b"t")], 100, 1, 0, 0, bodies=broken_builder)
    counted = "sakk_notification_body_failures_total"
    before = REGISTRY.get_sample_value(counted, {"recipient_bank": "007"}) or 0.0
    assert deliver_due(book_at(), sender, datetime.now(UTC)) == []
    (row,) = rows(engine)
    assert row["status"] == "PENDING" and row["attempts"] == 1  # retried on the schedule
    assert "not built: RuntimeError" in row["last_error"]
    with engine.connect() as conn:
        (attempt,) = conn.execute(select(NotificationAttempt.__table__)).mappings().all()
    assert attempt["number"] == 1 and attempt["status_code"] is None
    assert "notification not built" in attempt["error"]
    assert REGISTRY.get_sample_value(counted, {"recipient_bank": "007"}) == before + 1
