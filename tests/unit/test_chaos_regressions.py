"""Regression tests for the bugs the chaos harness found (docs/chaos.md tells each story)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from consumers.notification import NotificationStage
from consumers.notify.book import DeliveryBook, deliver_due
from consumers.notify.channels import LogSender
from consumers.validator import Validator
from engine.config import Settings, load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import EmittedEvent, Notification
from engine.ledger.reference import load_reference_data, read_file
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from engine.supervisor import ConsumerProcess, Fleet
from sakk.app import TOPOLOGY, make_codec
from tests.factories import (
    AMINA,
    KARIM,
    REFERENCE_FILE,
    YOUSSEF,
    authorization,
    payment,
    signed,
    step,
)


def now_ms() -> int:
    """The broker's record time: now, as the validator compares it with the event's time."""
    return int(datetime.now(UTC).timestamp() * 1000)


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Settings, Engine]:
    settings = load_settings(
        environ={},
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        data_dir=tmp_path,
        notify_log_path=tmp_path / "n.jsonl",
    )
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    return settings, engine


def raw(
    settings: Settings, topic: str, offset: int, value: bytes | None, key: bytes = b"k"
) -> RawMessage:
    """A record as the stage reads it; on payments.initiated signed by bank 007, as banks do."""
    name = settings.topic(topic)
    headers = signed(name, key, value or b"") if topic == "initiated" else ()
    return RawMessage(name, 0, offset, key, value, now_ms(), headers=headers)


def test_redelivered_poison_is_dead_lettered_again_with_its_reason_and_source(ledger):
    """Bug 1: the dead letter re-sent on redelivery had no headers (no reason, no source)."""
    settings, engine = ledger
    processor = BatchProcessor(Validator(settings), engine, make_codec(settings), settings)
    poison = raw(settings, "initiated", 7, b"\x01 not avro")
    first = processor.process([poison]).outgoing
    again = processor.process([poison]).outgoing  # crash before the offset commit: redelivered
    assert [m.topic for m in again] == [settings.topic("dlq")]
    assert again == first
    headers = dict(again[0].headers)
    assert headers["sakk.kind"] == b"undecodable"
    assert headers["sakk.reason"]
    assert headers["sakk.source.offset"] == b"7"


def test_a_redelivered_payment_is_produced_again_before_the_step_behind_it(ledger):
    """Bug 4: after a crash between the ledger commit and the produce, the redelivered batch
    produced its fresh events (a step) before the stored copies of the events it had
    recorded (the payment the step names): settlement then saw the step first."""
    settings, engine = ledger
    codec = make_codec(settings)
    processor = BatchProcessor(Validator(settings), engine, codec, settings)
    card = authorization(AMINA, KARIM, 5_000)
    key = card["payer_account"].encode()
    paid = raw(settings, "initiated", 0, codec.encode("PaymentInitiated", card), key)
    processor.process([paid])  # recorded; the process dies before producing (after_db_commit)
    capture = codec.encode("PaymentStepRequested", step(card, "CAPTURE", "007"))
    out = processor.process([paid, raw(settings, "initiated", 1, capture, key)]).outgoing
    types = [codec.decode(m.value).event_type for m in out]
    assert types == ["PaymentValidated", "PaymentStepValidated"]


def test_redelivered_huge_poison_keeps_its_truncation_header(ledger):
    settings, engine = ledger
    processor = BatchProcessor(Validator(settings), engine, make_codec(settings), settings)
    blob = raw(settings, "initiated", 0, b"\x00" * settings.max_message_bytes)
    first = processor.process([blob]).outgoing
    again = processor.process([blob]).outgoing
    assert again == first
    assert len(again[0].value) < settings.max_message_bytes
    assert (
        dict(again[0].headers)["sakk.truncated_from_bytes"]
        == str(settings.max_message_bytes).encode()
    )


def test_redelivered_stage_refusal_keeps_its_reason(ledger):
    settings, engine = ledger
    codec = make_codec(settings)
    processor = BatchProcessor(Validator(settings), engine, codec, settings)
    original = payment(AMINA, KARIM, 1_000)
    reused = original | {"event_id": "another-event"}
    key = AMINA[1].encode()
    processor.process(
        [raw(settings, "initiated", 0, codec.encode("PaymentInitiated", original), key)]
    )
    refusal = raw(settings, "initiated", 1, codec.encode("PaymentInitiated", reused), key)
    first = processor.process([refusal]).outgoing
    again = processor.process([refusal]).outgoing
    assert again == first
    assert dict(again[0].headers)["sakk.kind"] == b"payment_id_reused"


class CrashAfterDeliveries(Exception):
    """Stands for kill -9 after the deliveries, before their record and PaymentNotified commit."""


def test_payment_notified_is_emitted_after_a_crash_between_delivering_and_recording(ledger):
    """Bug 2: a crash there once left finished notifications no PaymentNotified would announce.

    Now a crash after the attempt, before its record, leaves the notification PENDING under
    a lease; once the lease expires the next round delivers it again under the same
    notification id, records it and announces it once.
    """
    settings, engine = ledger
    codec = make_codec(settings)
    validator = BatchProcessor(Validator(settings), engine, codec, settings)
    record = payment(AMINA, YOUSSEF, 1_000)  # one bank: one notification
    validated = validator.process(
        [raw(settings, "initiated", 0, codec.encode("PaymentInitiated", record), AMINA[1].encode())]
    ).outgoing
    rejected_or_validated = raw(
        settings, validated[0].topic.split(".", 1)[1], 0, validated[0].value
    )
    sender = LogSender(settings.notify_log_path)
    notifier = BatchProcessor(NotificationStage(settings), engine, codec, settings)
    terminal = _to_terminal(settings, engine, codec, rejected_or_validated)
    assert notifier.process([terminal]).outgoing == []  # scheduled, not yet delivered
    book = DeliveryBook(settings, engine, codec, sender.name)

    now = datetime.now(UTC)
    for claimed in book.claim(now, {"007": 10}):
        sender.deliver(claimed.notification)  # ... and the process dies before book.record
    with engine.connect() as conn:
        assert conn.execute(select(Notification.status)).scalars().all() == ["PENDING"]
    first_ids = [
        json.loads(line)["notification_id"]
        for line in settings.notify_log_path.read_text().splitlines()
    ]
    assert deliver_due(book, sender, now) == []  # leased: nobody takes it over yet

    after_lease = now + timedelta(seconds=settings.notify_lease_s + 1)
    outgoing = deliver_due(book, sender, after_lease)
    assert [a.message.topic for a in outgoing] == [settings.topic("notified")]
    notified = codec.decode(outgoing[0].message.value).record
    assert notified["delivery_status"] == "DELIVERED"
    ids = [
        json.loads(line)["notification_id"]
        for line in settings.notify_log_path.read_text().splitlines()
    ]
    assert ids == first_ids * 2  # delivered again, under the same id: the bank deduplicates
    assert deliver_due(book, sender, after_lease + timedelta(hours=1)) == []  # finished
    with engine.connect() as conn:
        assert conn.execute(select(Notification.status)).scalars().all() == ["DELIVERED"]
        stored = conn.execute(
            select(func.count())
            .select_from(EmittedEvent)
            .where(EmittedEvent.consumer == "notification")
        ).scalar_one()
    assert stored == 1
    # Never confirmed produced (no mark_announced): the sweep offers it again, same bytes.
    assert book.unannounced(after_lease + timedelta(minutes=5)) == outgoing


def _to_terminal(settings: Settings, engine: Engine, codec, message: RawMessage) -> RawMessage:  # type: ignore[no-untyped-def]
    from consumers.settlement import Settlement

    if message.topic != settings.topic("validated"):
        return message
    out = BatchProcessor(Settlement(settings), engine, codec, settings).process([message]).outgoing
    return raw(settings, out[0].topic.split(".", 1)[1], 0, out[0].value)


CHILD = textwrap.dedent("""
    import signal, sys, time
    stop = False
    def on_term(signum, frame):
        global stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    while not stop:
        time.sleep(0.01)
    # Stopped cleanly; now finalizing, where Python restores the default action.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(float(sys.argv[1]))
""")


def test_fleet_stop_sends_one_sigterm_only(tmp_path):
    """Bug 3: Fleet.stop signalled twice; the second SIGTERM killed a cleanly stopping process."""
    settings = load_settings(environ={})
    members = []
    for instance, finalize_s in ((1, "0.5"), (2, "3")):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, finalize_s], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        members.append(
            ConsumerProcess(
                "validator",
                instance,
                settings,
                tmp_path / f"v{instance}.log",
                TOPOLOGY.command("validator"),
                process=child,
            )
        )
    codes = Fleet(settings, tmp_path, TOPOLOGY, members).stop()
    assert codes == {"validator-1": 0, "validator-2": 0}
