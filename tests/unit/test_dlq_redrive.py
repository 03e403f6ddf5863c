"""Redrive without a broker: the ledger's bookkeeping, the refusals, and how copies count.

The validator runs through ``BatchProcessor`` on a SQLite ledger and the producer is a
recording fake, so each step of "REQUESTED, produce, PUBLISHED" can be looked at alone.
The same paths run through the embedded broker in ``tests/integration/test_dlq_redrive.py``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from consumers.validator import Validator
from engine.config import Settings, load_settings
from engine.dlq.exceptions import (
    AlreadyHandledError,
    RedriveConflictError,
    RedriveNotAcknowledgedError,
    RedriveRefusedError,
    RedriveSignatureError,
    SecurityDeadLetterError,
    StillUndecodableError,
    StoredCopyTruncatedError,
)
from engine.dlq.inspect import inspect_dead_letter
from engine.dlq.redrive import Redriver
from engine.ledger.checks import flow_counts
from engine.ledger.database import make_engine, upgrade
from engine.ledger.dead_letters import (
    RedriveStatus,
    count_dead_letters,
    get_dead_letter,
    list_dead_letters,
    resolved_dead_letter_ids,
)
from engine.ledger.exceptions import DeadLetterNotFoundError
from engine.ledger.models import DeadLetter, DeadLetterRedrive
from engine.ledger.reference import load_reference_data, read_file
from engine.ops.audit_log import list_actions, verify_action_log
from engine.pipeline.dead_letters import DLQ_HEADROOM_BYTES
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from engine.serialization import AvroCodec
from sakk.app import TOPOLOGY, make_codec
from tests.factories import AMINA, KARIM, REFERENCE_FILE, as_read, payment, signed, switch_id

KEY = AMINA[1].encode()
MAX_MESSAGE_BYTES = 128 * 1024  # dead-letter copies are cut at 64 KiB


@dataclass
class RecordingProducer:
    """Acknowledges every send at the next offset of partition 0, or never (``acks=False``)."""

    acks: bool = True
    next_offset: int = 100
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> Any:
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": dict(headers)})
        self.next_offset += 1
        metadata = SimpleNamespace(topic=topic, partition=0, offset=self.next_offset - 1)
        return SimpleNamespace(
            is_done=self.acks, value=metadata, exception=None, failed=lambda: False
        )

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


@dataclass
class Ledger:
    settings: Settings
    engine: Engine
    codec: AvroCodec
    processor: BatchProcessor

    def deliver(
        self, offset: int, value: bytes | None, key: bytes = KEY, sign: bool = True
    ) -> None:
        """The validator handles one message of payments.initiated, partition 0, signed by 007."""
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        headers = signed(self.topic, key, value or b"") if sign else ()
        self.processor.process([RawMessage(self.topic, 0, offset, key, value, now_ms, headers)])

    @property
    def topic(self) -> str:
        return self.settings.topic("initiated")

    def fix(self, record: dict[str, Any], bank: str = "007") -> dict[str, bytes]:
        """The bank's corrected message as JSON fields, and its signature file for it."""
        fields = {**record, "occurred_at": record["occurred_at"].isoformat()}
        value = self.codec.encode("PaymentInitiated", record)
        headers = dict(signed(self.topic, KEY, value, bank))
        signature = {
            name: base64.b64encode(v).decode() if name == "sakk.signature" else v.decode()
            for name, v in headers.items()
        }
        return {"body": json.dumps(fields).encode(), "signature": json.dumps(signature).encode()}

    def redriver(self, producer: RecordingProducer) -> Redriver:
        return Redriver(self.settings, self.engine, self.codec, producer)  # type: ignore[arg-type]

    def dead_letter_ids(self) -> list[int]:
        with self.engine.connect() as conn:
            return [d.id for d in list_dead_letters(conn)]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    settings = load_settings(
        environ={},
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        data_dir=tmp_path,
        notify_log_path=tmp_path / "n.jsonl",
        max_message_bytes=MAX_MESSAGE_BYTES,
    )
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    codec = make_codec(settings)
    return Ledger(
        settings, engine, codec, BatchProcessor(Validator(settings), engine, codec, settings)
    )


def redrives(ledger: Ledger) -> list[Any]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(select(DeadLetterRedrive.__table__)).all())


def test_corrected_body_is_requested_then_published_with_headers_naming_the_dead_letter(ledger):
    p = payment(AMINA, KARIM, 2_000)
    ledger.deliver(5, ledger.codec.encode("PaymentInitiated", p)[:20])  # cut by the bank
    (dead_letter_id,) = ledger.dead_letter_ids()
    producer = RecordingProducer()

    outcome = ledger.redriver(producer).redrive(
        dead_letter_id, "alice", "bank re-sent", **ledger.fix(p)
    )

    assert outcome.sent and not outcome.resent
    (message,) = producer.sent
    assert message["topic"] == ledger.settings.topic("initiated")
    assert message["key"] == KEY
    assert ledger.codec.decode(message["value"]).record == as_read("PaymentInitiated", p)
    assert message["headers"] == {
        **dict(signed(ledger.topic, KEY, message["value"])),  # the bank's, not the switch's
        "sakk.redrive.of": str(dead_letter_id).encode(),
        "sakk.redrive.by": b"alice",
        "sakk.redrive.body": b"corrected",
        "sakk.source.topic": ledger.settings.topic("initiated").encode(),
        "sakk.source.partition": b"0",
        "sakk.source.offset": b"5",
    }
    (row,) = redrives(ledger)
    assert (row.status, row.published_partition, row.published_offset) == ("PUBLISHED", 0, 100)
    assert (row.payment_id, row.event_id) == (switch_id(p), switch_id(p, "event_id"))
    assert (row.requested_by, row.reason, row.body_source) == ("alice", "bank re-sent", "corrected")


def test_a_second_redrive_of_a_published_one_sends_nothing_and_changes_nothing(ledger):
    p = payment(AMINA, KARIM, 2_000)
    ledger.deliver(5, ledger.codec.encode("PaymentInitiated", p)[:20])
    (dead_letter_id,) = ledger.dead_letter_ids()
    producer = RecordingProducer()
    ledger.redriver(producer).redrive(dead_letter_id, "alice", **ledger.fix(p))
    before = redrives(ledger)

    again = ledger.redriver(producer).redrive(dead_letter_id, "bob", **ledger.fix(p))

    assert not again.sent
    assert "already redriven by alice" in again.summary and "nothing sent" in again.summary
    assert len(producer.sent) == 1
    assert [(r.requested_by, r.published_offset) for r in redrives(ledger)] == [
        (r.requested_by, r.published_offset) for r in before
    ]


def test_an_unacknowledged_redrive_stays_requested_and_the_next_call_sends_the_same_bytes(ledger):
    p = payment(AMINA, KARIM, 2_000)
    ledger.deliver(5, ledger.codec.encode("PaymentInitiated", p)[:20])
    (dead_letter_id,) = ledger.dead_letter_ids()
    silent = RecordingProducer(acks=False)
    with pytest.raises(RedriveNotAcknowledgedError, match="run the same redrive again"):
        ledger.redriver(silent).redrive(dead_letter_id, "alice", **ledger.fix(p))
    assert [r.status for r in redrives(ledger)] == [RedriveStatus.REQUESTED]
    producer = RecordingProducer()
    with pytest.raises(RedriveConflictError, match="run the redrive again without --body"):
        other = {**p, "amount_minor": 1}
        ledger.redriver(producer).redrive(dead_letter_id, "bob", **ledger.fix(other))

    with pytest.raises(RedriveSignatureError, match="--signature FILE"):
        ledger.redriver(producer).redrive(dead_letter_id, "bob")  # the ledger keeps no headers

    outcome = ledger.redriver(producer).redrive(dead_letter_id, "bob", **ledger.fix(p))

    assert outcome.sent and outcome.resent
    assert producer.sent[0]["value"] == silent.sent[0]["value"]
    assert producer.sent[0]["headers"]["sakk.redrive.by"] == b"alice"  # who asked first
    assert [r.status for r in redrives(ledger)] == [RedriveStatus.PUBLISHED]


def test_a_cut_copy_without_a_corrected_body_is_refused_and_nothing_is_recorded(ledger):
    ledger.deliver(3, b"\x00" + b"x" * (100 * 1024))
    (dead_letter_id,) = ledger.dead_letter_ids()
    producer = RecordingProducer()
    limit = MAX_MESSAGE_BYTES - DLQ_HEADROOM_BYTES

    with pytest.raises(StoredCopyTruncatedError, match=f"cut to {limit:,} bytes.*--body FILE"):
        ledger.redriver(producer).redrive(dead_letter_id, "alice")

    assert producer.sent == [] and redrives(ledger) == []
    with ledger.engine.connect() as conn:
        view = inspect_dead_letter(conn, ledger.codec, dead_letter_id, MAX_MESSAGE_BYTES)
    assert view.cut and view.stored_bytes == limit and view.body is None


def test_original_bytes_that_still_do_not_decode_are_refused(ledger):
    p = payment(AMINA, KARIM, 2_000)
    unknown = b"\xc3\x01" + b"\x00" * 8 + ledger.codec.encode("PaymentInitiated", p)[10:]
    ledger.deliver(4, unknown)
    (dead_letter_id,) = ledger.dead_letter_ids()
    with pytest.raises(StillUndecodableError, match="schema_not_approved.*--body FILE"):
        ledger.redriver(RecordingProducer()).redrive(dead_letter_id, "alice")
    assert redrives(ledger) == []


def test_an_event_the_consumer_already_handled_is_not_sent_again(ledger):
    p = payment(AMINA, KARIM, 2_000)
    good = ledger.codec.encode("PaymentInitiated", p)
    ledger.deliver(4, good[:20])  # a cut copy, then the bank's good one
    ledger.deliver(5, good)
    (dead_letter_id,) = ledger.dead_letter_ids()
    with pytest.raises(AlreadyHandledError, match="already handled event .* \\(validated\\)"):
        ledger.redriver(RecordingProducer()).redrive(dead_letter_id, "alice", **ledger.fix(p))


def test_a_redriven_copy_counts_once_whatever_its_own_result(ledger):
    settled_later = payment(AMINA, KARIM, 2_000)
    lost_again = payment(AMINA, KARIM, 3_000)
    ledger.deliver(1, ledger.codec.encode("PaymentInitiated", settled_later)[:20])
    ledger.deliver(2, ledger.codec.encode("PaymentInitiated", lost_again)[:20])
    first, second = ledger.dead_letter_ids()
    producer = RecordingProducer(next_offset=10)
    redriver = ledger.redriver(producer)
    redriver.redrive(first, "alice", **ledger.fix(settled_later))
    redriver.redrive(second, "alice", **ledger.fix(lost_again))
    with ledger.engine.connect() as conn:
        published_not_handled = flow_counts(conn, TOPOLOGY.entry.name)
    assert (published_not_handled.dead_lettered, published_not_handled.redriven) == (2, 0)

    ledger.deliver(10, producer.sent[0]["value"])  # the copy is handled: a payment
    ledger.deliver(11, b"\x01 mangled on the way")  # the other copy is dead-lettered again

    with ledger.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        assert resolved_dead_letter_ids(conn, "validator") == {first, second}
        assert count_dead_letters(conn) == 3
    assert (counts.payments, counts.dead_lettered, counts.redriven) == (1, 1, 2)
    assert counts.payments + counts.dead_lettered == 2  # what the bank published


def test_redrive_by_kind_sends_the_ones_it_can_and_reports_the_others(ledger):
    ledger.deliver(1, b"\x00" + b"x" * (100 * 1024))  # cut: refused
    p = payment(AMINA, KARIM, 2_000)
    ledger.deliver(2, ledger.codec.encode("PaymentInitiated", p)[:20])  # still undecodable
    q = payment(AMINA, KARIM, 2_500)
    unknown = b"\xc3\x01" + b"\x00" * 8 + ledger.codec.encode("PaymentInitiated", q)[10:]
    ledger.deliver(3, unknown)  # another kind: left alone
    producer = RecordingProducer()

    run = ledger.redriver(producer).redrive_kind("undecodable", "alice")

    assert run.outcomes == [] and producer.sent == []
    assert [reason.split(":")[0] for _, reason in run.refused] == [
        f"dead letter {i}" for i in ledger.dead_letter_ids()[:2]
    ]


def test_listing_filters_by_kind_consumer_and_time_and_shows_the_redrive(ledger):
    p = payment(AMINA, KARIM, 2_000)
    ledger.deliver(1, b"\x01 junk")
    ledger.deliver(2, ledger.codec.encode("PaymentInitiated", p)[:20])
    ledger.deliver(3, b"\xc3\x01" + b"\x00" * 8 + ledger.codec.encode("PaymentInitiated", p)[10:])
    first, second, third = ledger.dead_letter_ids()
    ledger.redriver(RecordingProducer()).redrive(second, "alice", **ledger.fix(p))
    later = datetime.now(UTC) + timedelta(hours=1)
    with ledger.engine.connect() as conn:
        assert [d.id for d in list_dead_letters(conn, kind="undecodable")] == [first, second]
        assert [d.id for d in list_dead_letters(conn, kind="schema_not_approved")] == [third]
        assert list_dead_letters(conn, consumer="settlement") == []
        assert list_dead_letters(conn, since=later) == []
        assert [d.id for d in list_dead_letters(conn, limit=1)] == [first]
        shown = get_dead_letter(conn, second)
        with pytest.raises(DeadLetterNotFoundError, match="no dead letter 999"):
            get_dead_letter(conn, 999)
        assert conn.scalar(select(func.count()).select_from(DeadLetterRedrive)) == 1
    assert shown.redrive is not None and shown.redrive.published
    assert shown.event_id == f"dlq:{ledger.settings.topic('initiated')}:0:2"


def test_a_corrected_body_needs_the_payer_banks_own_valid_signature(ledger):
    p = payment(AMINA, KARIM, 2_000)
    ledger.deliver(5, ledger.codec.encode("PaymentInitiated", p)[:20])
    (dead_letter_id,) = ledger.dead_letter_ids()
    producer = RecordingProducer()
    redriver = ledger.redriver(producer)
    fix = ledger.fix(p)
    with pytest.raises(RedriveSignatureError, match="cannot sign for a bank.*--signature FILE"):
        redriver.redrive(dead_letter_id, "alice", body=fix["body"])
    with pytest.raises(RedriveSignatureError, match="signed by bank 011.*no bank acts for another"):
        redriver.redrive(dead_letter_id, "alice", **ledger.fix(p, bank="011"))
    other = ledger.fix({**p, "amount_minor": 2_001})  # signed for other bytes
    with pytest.raises(RedriveSignatureError, match="would refuse this copy: signature_invalid"):
        redriver.redrive(dead_letter_id, "alice", body=fix["body"], signature=other["signature"])
    with pytest.raises(RedriveSignatureError, match="must hold exactly"):
        redriver.redrive(dead_letter_id, "alice", body=fix["body"], signature=b"{}")
    assert producer.sent == [] and redrives(ledger) == []


def test_a_message_refused_for_its_signature_is_never_sent_again_from_here(ledger):
    ledger.deliver(6, ledger.codec.encode("PaymentInitiated", payment()), sign=False)
    (dead_letter_id,) = ledger.dead_letter_ids()
    with pytest.raises(SecurityDeadLetterError, match="signature_missing.*the bank signs it again"):
        ledger.redriver(RecordingProducer()).redrive(dead_letter_id, "alice")
    assert redrives(ledger) == []


@pytest.mark.parametrize("kind", ["poison", "corrupt_batch"])
def test_a_poison_or_corrupt_batch_is_sent_again_only_when_forced_and_each_redrive_is_logged(
    ledger, kind
):
    p = payment(AMINA, KARIM, 2_000)
    ledger.deliver(5, ledger.codec.encode("PaymentInitiated", p)[:20])
    (dead_letter_id,) = ledger.dead_letter_ids()
    with ledger.engine.begin() as conn:  # as the quarantine or the batch reader records them
        conn.execute(update(DeadLetter).values(kind=kind))
    producer = RecordingProducer()
    with pytest.raises(RedriveRefusedError, match=f"{kind} dead letter.*--force"):
        ledger.redriver(producer).redrive(dead_letter_id, "alice", **ledger.fix(p))
    assert producer.sent == [] and redrives(ledger) == []

    forced = Redriver(ledger.settings, ledger.engine, ledger.codec, producer, forced=True)  # type: ignore[arg-type]
    assert forced.redrive(dead_letter_id, "alice", "fixed by 007", **ledger.fix(p)).sent
    with ledger.engine.connect() as conn:
        (logged,) = list_actions(conn)
        assert verify_action_log(conn).ok
    record = logged.as_dict()
    assert (record["actor"], record["action"], record["target"], record["reason"]) == (
        "alice", "dlq.redrive", f"dead letter {dead_letter_id}", "fixed by 007",
    )  # fmt: skip
    assert record["old"] == {"kind": kind, "redrive": None}
    assert record["new"]["forced"] and record["new"]["body_source"] == "corrected"
