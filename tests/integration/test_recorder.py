"""The recorder against SQLite and PostgreSQL: what it writes reads back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from engine.config import load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import (
    EmittedEvent,
    HandledEvent,
    Hold,
    Notification,
    Payment,
    PaymentStep,
    PaymentTransition,
)
from engine.ledger.recorder import (
    DueNotification,
    Emitted,
    GuardFailed,
    Handled,
    HoldChanged,
    HoldPlaced,
    NewPayment,
    Outcome,
    PaymentProgress,
    Recorder,
    StepRecorded,
    Transition,
)
from engine.ledger.reference import load_reference_data, read_file
from tests.factories import AMINA, KARIM, REFERENCE_FILE

MOMENT = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


def ledger(database_url: str, tmp_path: Path) -> Engine:
    settings = load_settings(environ={}, database_url=database_url, data_dir=tmp_path)
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    return engine


def new_payment(payment_id: str, signature: bytes | None) -> NewPayment:
    return NewPayment(
        payment_id, f"evt-{payment_id}", "REF-1", AMINA[0], AMINA[1], KARIM[0], KARIM[1],
        12_345, "MAD", "WEB", "TRANSFER", None, None, MOMENT, "VALIDATED", None, None,
        "007" if signature else None, "k1" if signature else None, signature,
        b"\x00\x01digest" if signature else None,
    )  # fmt: skip


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def test_rows_written_in_one_pass_read_back_exactly(database_url: str, tmp_path: Path) -> None:
    engine = ledger(database_url, tmp_path)
    recorder = Recorder()
    with engine.begin() as conn:
        recorder.record(
            conn,
            [
                Handled(
                    "validator",
                    "evt-p1",
                    "PaymentInitiated",
                    "p1",
                    "t.initiated",
                    3,
                    42,
                    "validated",
                    MOMENT,
                ),  # fmt: skip
                Transition("p1", None, "VALIDATED", None, "validator", "evt-p1", MOMENT),
                new_payment("p1", b"\xffsig"),
                new_payment("p2", None),
                Emitted("validator", "evt-p1", "out-1", "p1", "t.validated", b"key", b"\x00\xc3"),
            ],
        )
    with engine.begin() as conn:
        recorder.record(
            conn,
            [
                Outcome("p1", "VALIDATED", "SETTLED", None, None, 250, "posting-1", "2026-12-01"),
                Outcome("p2", "VALIDATED", "FAILED", "AM04", "needs 1.00 MAD", None, None, None),
                DueNotification(
                    "n1",
                    "p1",
                    "SETTLED",
                    "007",
                    "webhook",
                    "PENDING",
                    0,
                    "{}",
                    "evt-s1",
                    MOMENT,
                    MOMENT,
                    MOMENT + timedelta(hours=24),
                    0,
                ),  # fmt: skip
            ],
        )

    with engine.connect() as conn:
        payments = {r.payment_id: r for r in conn.execute(select(Payment.__table__))}
        handled = conn.execute(select(HandledEvent.__table__)).one()
        emitted = conn.execute(select(EmittedEvent.__table__)).one()
        transition = conn.execute(select(PaymentTransition.__table__)).one()
        notification = conn.execute(select(Notification.__table__)).one()
    p1, p2 = payments["p1"], payments["p2"]
    assert utc(p1.occurred_at) == MOMENT and p1.amount_minor == 12_345
    assert (p1.state, p1.fee_minor, p1.posting_id) == ("SETTLED", 250, "posting-1")
    assert (p1.signature, p1.signed_digest) == (b"\xffsig", b"\x00\x01digest")
    assert (p2.state, p2.reason_code, p2.signature, p2.fee_minor) == ("FAILED", "AM04", None, None)
    assert (handled.partition, handled.offset, utc(handled.handled_at)) == (3, 42, MOMENT)
    assert (emitted.key, emitted.value) == (b"key", b"\x00\xc3")
    assert transition.from_state is None and utc(transition.occurred_at) == MOMENT
    assert utc(notification.deadline_at) == MOMENT + timedelta(hours=24)
    assert notification.claim_token is None and notification.announced_at is None


def test_a_batch_with_nothing_to_write_writes_nothing(database_url: str, tmp_path: Path) -> None:
    engine = ledger(database_url, tmp_path)
    with engine.begin() as conn:
        Recorder().record(conn, [])
        assert conn.execute(select(Payment.__table__)).first() is None


def test_a_row_that_breaks_a_unique_key_refuses_the_whole_write(
    database_url: str, tmp_path: Path
) -> None:
    engine = ledger(database_url, tmp_path)
    row = Handled("validator", "evt-1", "PaymentInitiated", "p1", "t", 0, 1, "validated", MOMENT)
    with engine.begin() as conn:
        Recorder().record(conn, [row])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        Recorder().record(conn, [new_payment("p9", None), row])  # a racing instance's copy
    with engine.connect() as conn:
        assert conn.execute(select(Payment.__table__)).first() is None  # nothing of it stayed


def test_a_hold_and_its_steps_read_back_and_a_stale_change_refuses_the_batch(
    database_url: str, tmp_path: Path
) -> None:
    engine = ledger(database_url, tmp_path)
    expires = MOMENT + timedelta(days=3)
    authorized = new_payment("p1", None)._replace(state="AUTHORIZED", intent="AUTHORIZATION")
    hold = HoldPlaced(
        "p1", AMINA[1], "007", "MAD", 12_345, 100, 12_445, 0, "ACTIVE", MOMENT, expires, None, None
    )
    with engine.begin() as conn:
        Recorder().record(conn, [authorized, hold])
    capture = [
        HoldChanged("p1", "ACTIVE", 0, "CAPTURED", 0, 12_345, MOMENT, "step-1"),
        PaymentProgress("p1", "AUTHORIZED", 0, "CAPTURED", 12_345, 0, 150),
        StepRecorded(
            "step-1",
            "p1",
            "CAPTURE",
            "007",
            "CAP-1",
            MOMENT,
            12_345,
            150,
            "MAD",
            "APPLIED",
            None,
            None,
            "posting-1",
            "2026-12-01",
        ),  # fmt: skip
    ]
    with engine.begin() as conn:
        Recorder().record(conn, capture)
    with engine.connect() as conn:
        held = conn.execute(select(Hold.__table__)).mappings().one()
        paid = conn.execute(select(Payment.__table__)).mappings().one()
        stepped = conn.execute(select(PaymentStep.__table__)).mappings().one()
    assert (held["state"], held["reserved_minor"], held["captured_minor"]) == (
        "CAPTURED",
        0,
        12_345,
    )
    assert utc(held["expires_at"]) == expires and utc(held["resolved_at"]) == MOMENT
    assert (paid["state"], paid["intent"], paid["captured_minor"], paid["fee_minor"]) == (
        "CAPTURED", "AUTHORIZATION", 12_345, 150,
    )  # fmt: skip
    assert dict(stepped) | {"occurred_at": utc(stepped["occurred_at"])} == capture[2]._asdict()
    # The same capture decided again from the view before it (a racing instance): refused.
    with pytest.raises(GuardFailed), engine.begin() as conn:
        Recorder().record(conn, [capture[0]._replace(resolved_by="step-2")])
