"""The bank's publishing API without a broker: schema validation, defaults, JSON Lines parsing."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings, load_settings
from engine.serialization import AvroCodec, SchemaRegistry
from engine.trust.keys import KeyPair
from producers.exceptions import (
    InvalidPaymentError,
    PublisherError,
    PublisherNotStartedError,
)
from producers.jsonl import PublishReport, _numbered_lines, parse_line
from producers.publisher import PaymentPublisher, new_payment, utc_now_ms
from tests.factories import as_read

UNREACHABLE = Settings(kafka_bootstrap_servers="127.0.0.1:1")  # never dialled by these tests


def good_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "bank_reference": "BCP-20261126-000417",
        "payer_bank": "190",
        "payer_account": "190810184345595703123430",
        "payee_bank": "007",
        "payee_account": "007780962775851085546976",
        "amount_minor": 284_900,
        "currency": "MAD",
        "channel": "WEB",
        "payment_type": "PURCHASE",
        "merchant_category_code": "4511",
    }
    fields.update(changes)
    return fields


@pytest.fixture(scope="module")
def publisher() -> PaymentPublisher:
    codec = AvroCodec(SchemaRegistry.from_dir(UNREACHABLE.schemas_dir))
    return PaymentPublisher(UNREACHABLE, codec)  # not started: nothing can be sent


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_minor": 2849.00}, "amount_minor"),
        ({"amount_minor": "284900"}, "amount_minor"),
        ({"channel": "FAX"}, "channel"),
        ({"payment_type": "LOAN"}, "payment_type"),
        ({"payer_account": None}, "payer_account"),
        ({"egov_service": 7}, "egov_service"),
        ({"occurred_at": datetime(2026, 11, 26, 9, 30)}, "occurred_at"),
        ({"occurred_at": "2026-11-26T09:30:00Z"}, "occurred_at"),
        ({"iban": "MA64..."}, "iban"),
    ],
)
def test_invalid_payment_error_names_the_field_at_fault(
    publisher: PaymentPublisher, change: dict[str, Any], field: str
) -> None:
    payment = new_payment(**good_fields())
    payment.update(change)
    with pytest.raises(InvalidPaymentError) as caught:
        publisher.publish(payment)  # validation comes first: the unstarted publisher never sends
    assert caught.value.field == field
    assert field in str(caught.value)


def test_missing_required_field_is_named(publisher: PaymentPublisher) -> None:
    payment = new_payment(**good_fields())
    del payment["bank_reference"]
    with pytest.raises(InvalidPaymentError, match="bank_reference: missing"):
        publisher.encode(payment)


def test_invalid_payment_error_is_a_value_error_and_keeps_values_out(
    publisher: PaymentPublisher,
) -> None:
    payment = new_payment(**good_fields(amount_minor=12.5))
    with pytest.raises(ValueError) as caught:
        publisher.encode(payment)
    assert "12.5" not in str(caught.value)


def test_a_valid_payment_encodes_as_single_object_avro(publisher: PaymentPublisher) -> None:
    payment = new_payment(**good_fields())
    data = publisher.encode(payment)
    decoded = publisher.codec.decode(data)
    assert decoded.event_type == "PaymentInitiated"
    assert decoded.record == as_read("PaymentInitiated", payment)


def test_publishing_a_valid_payment_outside_the_with_block_is_refused(
    publisher: PaymentPublisher,
) -> None:
    with pytest.raises(PublisherNotStartedError):
        publisher.publish(new_payment(**good_fields()))
    with pytest.raises(PublisherNotStartedError):
        publisher.publish_raw(b"\x00")


def test_publish_raw_takes_bytes_only(publisher: PaymentPublisher) -> None:
    with pytest.raises(TypeError):
        publisher.publish_raw("not bytes")  # type: ignore[arg-type]


def test_publisher_needs_a_broker_address() -> None:
    with pytest.raises(PublisherError, match="SAKK_KAFKA_BOOTSTRAP_SERVERS"):
        PaymentPublisher(Settings())


# --- the signing key --------------------------------------------------------------------


def test_starting_without_a_signing_key_is_refused_before_kafka_is_dialled() -> None:
    with pytest.raises(PublisherError, match="no signing key: set SAKK_SIGNING_KEY_FILE"):
        PaymentPublisher(UNREACHABLE).start()


def test_a_signing_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bank.key"
    KeyPair.generate().write(path)
    path.chmod(0o644)
    settings = UNREACHABLE.replace(signing_key_file=path)
    with pytest.raises(PublisherError, match="SAKK_SIGNING_KEY_FILE: .*readable by others"):
        PaymentPublisher(settings).start()


def test_sakk_publish_without_a_signing_key_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    import sakk.cli.publish  # noqa: F401  (registers the command)
    from sakk.cli import cli

    path = tmp_path / "p.jsonl"
    path.write_text("{}\n")
    env = {"SAKK_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "SAKK_SIGNING_KEY_FILE": ""}
    result = CliRunner().invoke(cli, ["publish", str(path)], env=env)
    assert result.exit_code == 2
    assert "no signing key: pass --signing-key FILE or set SAKK_SIGNING_KEY_FILE" in result.output


def test_signing_key_file_comes_from_its_variable(tmp_path: Path) -> None:
    settings = load_settings(environ={"SAKK_SIGNING_KEY_FILE": str(tmp_path / "b.key")})
    assert settings.signing_key_file == tmp_path / "b.key"
    assert load_settings(environ={"SAKK_SIGNING_KEY_FILE": ""}).signing_key_file is None


# --- new_payment ------------------------------------------------------------------------


def test_new_payment_fills_fresh_ids_and_the_time() -> None:
    before = utc_now_ms()
    one, two = new_payment(**good_fields()), new_payment(**good_fields())
    assert uuid.UUID(one["event_id"]).version == 4
    assert uuid.UUID(one["payment_id"]).version == 4
    assert one["event_id"] != two["event_id"] and one["payment_id"] != two["payment_id"]
    assert one["event_id"] != one["payment_id"]
    assert before <= one["occurred_at"] <= utc_now_ms()
    assert one["occurred_at"].tzinfo is UTC
    assert one["occurred_at"].microsecond % 1000 == 0  # timestamp-millis carries no more
    assert one["merchant_category_code"] == "4511" and one["egov_service"] is None


def test_new_payment_keeps_what_it_is_given() -> None:
    at = datetime(2026, 11, 26, 9, 30, 15, 123000, tzinfo=UTC)
    payment = new_payment(**good_fields(payment_id="p-1", event_id="e-1", occurred_at=at))
    kept = (payment["payment_id"], payment["event_id"], payment["occurred_at"])
    assert kept == ("p-1", "e-1", at)


def test_new_payment_treats_none_as_use_the_default() -> None:
    payment = new_payment(**good_fields(payment_id=None))
    assert uuid.UUID(payment["payment_id"]).version == 4


# --- JSON Lines -------------------------------------------------------------------------


def test_a_jsonl_line_becomes_a_payment_with_defaults() -> None:
    p = parse_line('{"bank_reference": "X-1", "amount_minor": 5000, "payer_account": "A"}')
    assert p["amount_minor"] == 5000 and p["bank_reference"] == "X-1"
    assert uuid.UUID(p["event_id"]) and uuid.UUID(p["payment_id"])


def test_jsonl_occurred_at_is_read_as_iso_8601_and_converted_to_utc() -> None:
    p = parse_line('{"occurred_at": "2026-11-26T10:30:15.123+01:00"}')
    assert p["occurred_at"] == datetime(2026, 11, 26, 9, 30, 15, 123000, tzinfo=UTC)
    assert p["occurred_at"].utcoffset() == timedelta(0)
    z = parse_line('{"occurred_at": "2026-11-26T09:30:15Z"}')["occurred_at"]
    assert z == datetime(2026, 11, 26, 9, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("{not json", "(line)", "not JSON"),
        ("[1, 2]", "(line)", "JSON object"),
        ('{"occurred_at": "2026-11-26T09:30:15"}', "occurred_at", "no UTC offset"),
        ('{"occurred_at": "yesterday"}', "occurred_at", "not ISO 8601"),
        ('{"occurred_at": 1764149415000}', "occurred_at", "ISO 8601 string"),
    ],
)
def test_a_bad_jsonl_line_says_what_is_wrong(line: str, field: str, words: str) -> None:
    with pytest.raises(InvalidPaymentError) as caught:
        parse_line(line)
    assert caught.value.field == field and words in caught.value.problem


@pytest.mark.parametrize("amount", ["2849.5", "2849.0", "2.8495e3"])
def test_a_float_amount_in_jsonl_is_refused_at_the_line(amount: str) -> None:
    with pytest.raises(InvalidPaymentError, match="not an integer: give minor units") as caught:
        parse_line(f'{{"amount_minor": {amount}}}')
    assert caught.value.field == "amount_minor"


def test_line_numbers_count_every_line_and_overlong_lines_are_flagged() -> None:
    data = b"a\n\n" + b"x" * 50 + b"\nb\nlast-without-newline"
    lines = list(_numbered_lines(io.BytesIO(data), max_line_bytes=20))
    assert lines == [(1, b"a\n"), (2, b"\n"), (3, None), (4, b"b\n"), (5, b"last-without-newline")]


def test_publish_report_lists_bad_lines_with_their_numbers() -> None:
    report = PublishReport("payments.jsonl", lines=3, published=2)
    report.add_bad_line(2, "amount_minor: got float, expected long")
    text = report.summary()
    assert "2 messages published, 1 lines skipped" in text
    assert "line 2: amount_minor" in text
