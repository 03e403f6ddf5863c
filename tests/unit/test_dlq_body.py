"""Corrected bodies: JSON fields or Avro bytes, checked as every consumer will read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.dlq.body import corrected_body, event_types_of_topic, read_body_file
from engine.dlq.exceptions import CorrectedBodyError
from sakk.app import make_codec
from tests.factories import AMINA, KARIM, as_read, authorization, payment, step

CODEC = make_codec(Settings())
TOPIC = "payments.initiated"


def as_json(record: dict[str, Any]) -> bytes:
    return json.dumps({**record, "occurred_at": record["occurred_at"].isoformat()}).encode()


def test_json_fields_are_encoded_as_the_source_topics_event_and_decode_back() -> None:
    record = payment(AMINA, KARIM, 2_500)
    body = corrected_body(CODEC, TOPIC, as_json(record))
    assert body.event_type == "PaymentInitiated"
    assert body.record == as_read("PaymentInitiated", record)
    assert CODEC.decode(body.value).record == as_read("PaymentInitiated", record)


def test_avro_bytes_are_taken_as_they_are() -> None:
    record = payment(AMINA, KARIM, 2_500)
    value = CODEC.encode("PaymentInitiated", record)
    assert corrected_body(CODEC, TOPIC, value).value == value


def test_avro_of_another_event_type_than_the_topics_is_refused() -> None:
    validated = {**payment(), "causation_event_id": "c"}
    value = CODEC.encode("PaymentValidated", validated)
    with pytest.raises(CorrectedBodyError, match="is a PaymentValidated; payments.initiated"):
        corrected_body(CODEC, TOPIC, value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{not json", "neither Avro .* nor JSON"),
        (b"[1, 2]", "one JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        (
            b'{"event_id": "e"}',
            "not a valid PaymentInitiated: PaymentInitiated.amount_minor: missing",
        ),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "does not decode: writer schema fingerprint"),
    ],
)
def test_bodies_that_are_not_a_valid_event_are_refused_with_the_reason(
    data: bytes, problem: str
) -> None:
    with pytest.raises(CorrectedBodyError, match=problem):
        corrected_body(CODEC, TOPIC, data)


def test_a_time_without_its_utc_offset_is_refused() -> None:
    record = payment()
    fields = {**record, "occurred_at": "2026-11-26T09:30:15"}
    with pytest.raises(CorrectedBodyError, match="occurred_at: .* has no UTC offset"):
        corrected_body(CODEC, TOPIC, json.dumps(fields).encode())


def test_amounts_must_be_integers_of_minor_units() -> None:
    fields = {**json.loads(as_json(payment())), "amount_minor": 25.5}
    with pytest.raises(CorrectedBodyError, match="amount_minor"):
        corrected_body(CODEC, TOPIC, json.dumps(fields).encode())


def test_a_corrected_step_is_encoded_as_the_step_the_topic_also_carries() -> None:
    record = step(authorization(), "CAPTURE", "007", 1_000)
    body = corrected_body(CODEC, TOPIC, as_json(record))
    assert body.event_type == "PaymentStepRequested"
    assert body.record == record


def test_the_event_type_comes_from_the_topic_name_after_its_prefix() -> None:
    assert event_types_of_topic("t1234.initiated")[0] == "PaymentInitiated"
    assert event_types_of_topic("payments.settled")[0] == "PaymentSettled"
    with pytest.raises(CorrectedBodyError, match="payments.other carries no Sakk event"):
        event_types_of_topic("payments.other")


def test_body_files_are_bounded_by_the_message_size(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 2_000)
    with pytest.raises(CorrectedBodyError, match="larger than 1,024 bytes"):
        read_body_file(big, max_bytes=1_024)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"\n")
    with pytest.raises(CorrectedBodyError, match="is empty"):
        read_body_file(empty, max_bytes=1_024)
    assert read_body_file(big, max_bytes=2_000) == b"x" * 2_000
