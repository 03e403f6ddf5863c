"""Single-object Avro encoding: byte layout, round trips, errors, schema evolution."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from engine.config import Settings
from engine.serialization import (
    EVENT_TYPES,
    ApprovedSchema,
    AvroCodec,
    DecodeError,
    IncompatibleSchemaError,
    NotSingleObjectError,
    SchemaConflictError,
    SchemaNotApprovedError,
    SchemaRegistry,
    SchemaValidationError,
    UndecodableBodyError,
    UnknownEventTypeError,
    UnknownSchemaError,
    schema_fingerprint,
    schema_identity,
    schema_text,
)
from tests.factories import as_read  # noqa: E402

SCHEMAS_DIR = Settings().schemas_dir
OCCURRED_AT = datetime(2026, 11, 26, 9, 30, 15, 123000, tzinfo=UTC)

COMMON: dict[str, Any] = {
    "event_id": "5b0f3c1e-7d2a-4c8e-9f10-2a6b8c4d1e01",
    "payment_id": "9e4d2b7a-1c3f-4a5b-8d6e-0f1a2b3c4d5e",
    "bank_reference": "BCP-20261126-000417",
    "occurred_at": OCCURRED_AT,
    "payer_bank": "190",
    "payer_account": "190780211234567890123456",
    "payee_bank": "011",
    "payee_account": "011780000098765432109876",
}
STEP: dict[str, Any] = {
    "event_id": "6c1f3c1e-7d2a-4c8e-9f10-2a6b8c4d1e02",
    "payment_id": COMMON["payment_id"],
    "bank_reference": "BMCE-CAP-000418",
    "occurred_at": OCCURRED_AT,
    "sender_bank": "011",
    "payer_account": COMMON["payer_account"],
}
MONEY: dict[str, Any] = {"amount_minor": 125_000, "currency": "MAD", "channel": "WEB"}
RECORDS: dict[str, dict[str, Any]] = {
    "PaymentInitiated": {
        **COMMON,
        **MONEY,
        "payment_type": "PURCHASE",
        "merchant_category_code": "4511",
        "egov_service": None,
        "intent": "AUTHORIZATION",
        "remittance_info": "Billet CMN-CDG, dossier 4511-0042",
    },
    "PaymentValidated": {
        **COMMON,
        **MONEY,
        "channel": "EGOV",
        "payment_type": "EGOV",
        "merchant_category_code": None,
        "egov_service": "VIGNETTE",
        "intent": "SALE",
        "remittance_info": None,
        "causation_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
    },
    "PaymentRejected": {
        **COMMON,
        **MONEY,
        "channel": "ATM",
        "reason_code": "AM04",
        "reason_message": "insufficient funds: balance 12000 MAD centimes, asked 125000",
        "remittance_info": None,
        "causation_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
    },
    "PaymentSettled": {
        **COMMON,
        **MONEY,
        "fee_minor": 250,
        "posting_id": "p-000000017",
        "settlement_window": "2026-11-26",
        "remittance_info": None,
        "causation_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
    },
    "PaymentFailed": {
        **COMMON,
        **MONEY,
        "channel": "POS",
        "reason_code": "AC04",
        "reason_message": "payee account closed",
        "remittance_info": None,
        "causation_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
    },
    "PaymentNotified": {
        **COMMON,
        "outcome": "SETTLED",
        "notification_id": "n-9e4d2b7a-payer",
        "recipient_bank": "190",
        "sender": "webhook",
        "delivery_status": "DELIVERED",
        "attempts": 2,
        "causation_event_id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    },
    "PaymentStepRequested": {
        **STEP,
        "step": "CAPTURE",
        "amount_minor": 60_000,
        "currency": "MAD",
        "final": False,
        "reason_code": None,
    },
    "PaymentStepValidated": {
        **STEP,
        "step": "RETURN",
        "amount_minor": None,
        "currency": None,
        "final": False,
        "reason_code": "AC04",
        "causation_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
    },
    "PaymentStepCompleted": {
        **COMMON,
        **MONEY,
        "step_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
        "step": "CAPTURE",
        "sender_bank": "011",
        "fee_minor": 150,
        "posting_id": "p-000000018",
        "settlement_window": "2026-11-26",
        "held_minor": 0,
        "captured_minor": 125_000,
        "refunded_minor": 0,
        "payment_state": "CAPTURED",
        "hold_expires_at": None,
        "reason_code": None,
        "causation_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
    },
    "PaymentStepRefused": {
        **STEP,
        "step": "REFUND",
        "payer_bank": "190",
        "payee_bank": "011",
        "amount_minor": 200_000,
        "currency": "MAD",
        "reason_code": "AM09",
        "reason_message": "refund of 2,000.00 MAD above the 1,250.00 MAD refundable",
        "causation_event_id": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
    },
    **{
        name: {
            "event_id": COMMON["event_id"],
            "payment_id": COMMON["event_id"],
            "bank_code": "190",
            "currency": "MAD",
            "amount_minor": 1_000_000_00,
            "occurred_at": OCCURRED_AT,
            "issued_by": "ops-amal",
            "causation_event_id": None,
        }  # fmt: skip
        for name in ("FundsIn", "FundsOut")
    },
}
RECORDS = {event_type: as_read(event_type, r) for event_type, r in RECORDS.items()}


def initiated_schema(version: int) -> dict[str, Any]:
    """PaymentInitiated as on disk (v1), or v2 with an added optional ``device_id``."""
    schema = json.loads((SCHEMAS_DIR / EVENT_TYPES["PaymentInitiated"]).read_text())
    if version == 2:
        schema = copy.deepcopy(schema)
        schema["fields"].append({"name": "device_id", "type": ["null", "string"], "default": None})
    return schema


def registry_with_initiated(version_or_schema: int | dict[str, Any]) -> SchemaRegistry:
    """The on-disk schemas, but PaymentInitiated in the given version (or schema)."""
    sources: dict[str, Any] = {
        et: (SCHEMAS_DIR / name).read_text() for et, name in EVENT_TYPES.items()
    }
    if isinstance(version_or_schema, int):
        version_or_schema = initiated_schema(version_or_schema)
    sources["PaymentInitiated"] = version_or_schema
    return SchemaRegistry(sources)


class FakeApproved:
    """An approved set in memory that counts its queries (unit test of the codec alone)."""

    def __init__(self, *schemas: dict[str, Any] | str) -> None:
        self.rows: list[ApprovedSchema] = []
        self.newest_queries = 0
        self.loads = 0
        for schema in schemas:
            self.approve(schema)

    def approve(self, schema: dict[str, Any] | str, text: str | None = None) -> None:
        self.rows.append(
            ApprovedSchema(
                len(self.rows) + 1, schema_fingerprint(schema), schema_identity(schema),
                "PaymentInitiated", text if text is not None else schema_text(schema),
            )
        )  # fmt: skip

    def newest_id(self) -> int:
        self.newest_queries += 1
        return len(self.rows)

    def since(self, after_id: int) -> list[ApprovedSchema]:
        self.loads += 1
        return self.rows[after_id:]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.from_dir(SCHEMAS_DIR)


@pytest.fixture
def codec(registry: SchemaRegistry) -> AvroCodec:
    return AvroCodec(registry)


def test_registry_loads_a_schema_for_every_event_type(registry: SchemaRegistry) -> None:
    assert set(registry.event_types) == set(EVENT_TYPES) == set(RECORDS)
    for event_type in EVENT_TYPES:
        assert registry.reader_schema(event_type)["name"] == f"ma.sakk.payments.{event_type}"


@pytest.mark.parametrize("event_type", sorted(RECORDS))
def test_encode_then_decode_returns_the_same_record(codec: AvroCodec, event_type: str) -> None:
    data = codec.encode(event_type, RECORDS[event_type], validate=True)

    decoded = codec.decode(data)

    assert decoded.event_type == event_type
    assert decoded.record == RECORDS[event_type]
    assert decoded.fingerprint == codec.registry.fingerprint_of(event_type)


def test_decoded_timestamps_are_timezone_aware_utc(codec: AvroCodec) -> None:
    decoded = codec.decode(codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"]))

    assert decoded.record["occurred_at"] == OCCURRED_AT
    assert decoded.record["occurred_at"].utcoffset().total_seconds() == 0


def test_encoded_bytes_are_marker_then_little_endian_fingerprint_then_avro_body(
    codec: AvroCodec, registry: SchemaRegistry
) -> None:
    record = RECORDS["PaymentInitiated"]
    schema = initiated_schema(1)
    canonical = to_parsing_canonical_form(schema)
    body = io.BytesIO()
    schemaless_writer(body, registry.reader_schema("PaymentInitiated"), record)

    data = codec.encode("PaymentInitiated", record)

    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    assert int.from_bytes(data[2:10], "little") == crc64_avro(canonical.encode())
    assert data[10:] == body.getvalue()


@pytest.mark.parametrize(
    ("schema", "signed_fingerprint"),
    [('"null"', 7195948357588979594), ('"boolean"', -6970731678124411036)],
)
def test_schema_fingerprint_matches_avro_test_vectors_little_endian(
    schema: str, signed_fingerprint: int
) -> None:
    # Vectors from apache/avro share/test/data/schema-tests.txt (Java's signed long).
    expected = signed_fingerprint.to_bytes(8, "little", signed=True)
    assert bytes.fromhex(fingerprint(schema, "CRC-64-AVRO")) == expected
    assert crc64_avro(schema.encode()).to_bytes(8, "little") == expected


def crc64_avro(data: bytes) -> int:
    """The Avro spec's reference Rabin fingerprint, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_schema_fingerprint_ignores_docs_and_defaults(registry: SchemaRegistry) -> None:
    schema = initiated_schema(1)
    schema["doc"] = "reworded"
    assert schema_fingerprint(schema) == registry.fingerprint_of("PaymentInitiated")


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3", b"\xc3\x01\x00\x01", b'{"event_id": "not avro at all"}', None],
    ids=["empty", "marker-only", "short-header", "json", "tombstone"],
)
def test_decode_when_not_single_object_raises_undecodable(codec: AvroCodec, data: Any) -> None:
    with pytest.raises(NotSingleObjectError) as caught:
        codec.decode(data)
    assert caught.value.kind == "undecodable"
    assert isinstance(caught.value, DecodeError)


def test_decode_when_marker_wrong_names_the_marker(codec: AvroCodec) -> None:
    data = codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"])
    with pytest.raises(NotSingleObjectError, match="marker c302"):
        codec.decode(b"\xc3\x02" + data[2:])


def test_decode_of_the_confluent_wire_format_is_undecodable_and_says_which_format(
    codec: AvroCodec,
) -> None:
    data = codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"])
    confluent = b"\x00" + (42).to_bytes(4, "big") + data[10:]  # magic byte 0, registry id 42
    with pytest.raises(NotSingleObjectError, match="Confluent wire format") as caught:
        codec.decode(confluent)
    assert caught.value.kind == "undecodable"


@pytest.mark.parametrize("keep", [11, 40, -1])
def test_decode_when_body_truncated_raises_undecodable_body(codec: AvroCodec, keep: int) -> None:
    data = codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"])

    with pytest.raises(UndecodableBodyError, match="truncated or corrupt") as caught:
        codec.decode(data[:keep])

    assert caught.value.kind == "undecodable"


def test_decode_when_body_corrupt_raises_undecodable_body(codec: AvroCodec) -> None:
    data = codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"])
    with pytest.raises(UndecodableBodyError) as caught:
        codec.decode(data[:10] + b"\xff" * 12)
    assert caught.value.kind == "undecodable"


def test_decode_when_bytes_follow_the_record_raises_undecodable_body(codec: AvroCodec) -> None:
    data = codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"])
    with pytest.raises(UndecodableBodyError, match="3 stray bytes"):
        codec.decode(data + b"xyz")


def test_decode_when_fingerprint_unknown_raises_schema_not_approved(codec: AvroCodec) -> None:
    data = codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"])
    unknown = bytes.fromhex("0123456789abcdef")

    with pytest.raises(SchemaNotApprovedError, match="0123456789abcdef") as caught:
        codec.decode(data[:2] + unknown + data[10:])

    assert caught.value.kind == "schema_not_approved"
    assert caught.value.fingerprint == unknown


def test_decode_when_writer_schema_is_not_an_event_raises_unknown_schema() -> None:
    other = {"type": "record", "name": "Other", "namespace": "x", "fields": []}
    registry_copy = registry_with_initiated(1)
    fp = registry_copy.add_approved(other)

    with pytest.raises(UnknownSchemaError, match="not an event read here"):
        AvroCodec(registry_copy).decode(b"\xc3\x01" + fp)


def test_encode_when_event_type_unknown_raises(codec: AvroCodec) -> None:
    with pytest.raises(UnknownEventTypeError, match="PaymentRefunded"):
        codec.encode("PaymentRefunded", RECORDS["PaymentInitiated"])


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("amount_minor", "125000", "got str, expected long"),
        ("channel", "FAX", "expected one of WEB, MOBILE"),
        ("merchant_category_code", 4511, "got int, expected null or string"),
        ("event_id", None, "got NoneType, expected string"),
    ],
)
def test_encode_with_validation_names_the_bad_field(
    codec: AvroCodec, field: str, value: Any, problem: str
) -> None:
    record = {**RECORDS["PaymentInitiated"], field: value}

    with pytest.raises(SchemaValidationError, match=problem) as caught:
        codec.encode("PaymentInitiated", record, validate=True)

    assert caught.value.field == field
    assert str(caught.value).startswith(f"PaymentInitiated.{field}:")
    if value is not None:
        assert str(value) not in str(caught.value)  # values stay out: they may be account numbers


def test_encode_with_validation_when_field_missing_names_it(codec: AvroCodec) -> None:
    record = {k: v for k, v in RECORDS["PaymentInitiated"].items() if k != "currency"}
    with pytest.raises(SchemaValidationError, match="currency: missing") as caught:
        codec.encode("PaymentInitiated", record, validate=True)
    assert caught.value.field == "currency"


def test_encode_with_validation_when_field_unknown_names_it(codec: AvroCodec) -> None:
    record = {**RECORDS["PaymentInitiated"], "amount_minr": 5}
    with pytest.raises(SchemaValidationError, match="not a field") as caught:
        codec.encode("PaymentInitiated", record, validate=True)
    assert caught.value.field == "amount_minr"


def test_encode_without_validation_still_names_a_bad_field(codec: AvroCodec) -> None:
    record = {**RECORDS["PaymentInitiated"], "channel": "FAX"}
    with pytest.raises(SchemaValidationError) as caught:
        codec.encode("PaymentInitiated", record)
    assert caught.value.field == "channel"


@pytest.mark.parametrize("amount", [1250.5, 1250.0, True])
def test_encode_when_amount_not_an_int_refuses_instead_of_truncating(
    codec: AvroCodec, amount: Any
) -> None:
    # fastavro alone would write 1250.5 as 1250 and True as 1.
    record = {**RECORDS["PaymentSettled"], "amount_minor": amount}
    with pytest.raises(SchemaValidationError) as caught:
        codec.encode("PaymentSettled", record)
    assert caught.value.field == "amount_minor"


def test_encode_when_timestamp_naive_refuses(codec: AvroCodec) -> None:
    # fastavro alone would read a naive datetime in the host's local time zone.
    record = {**RECORDS["PaymentInitiated"], "occurred_at": datetime(2026, 11, 26, 9, 30)}
    with pytest.raises(SchemaValidationError, match="naive datetime") as caught:
        codec.encode("PaymentInitiated", record)
    assert caught.value.field == "occurred_at"


def test_decode_of_v2_message_by_v1_reader_drops_the_new_field() -> None:
    v2_codec = AvroCodec(registry_with_initiated(2))
    v1_registry = registry_with_initiated(1)
    record_v2 = {**RECORDS["PaymentInitiated"], "device_id": "android-7f3a"}
    data = v2_codec.encode("PaymentInitiated", record_v2, validate=True)

    v2_fingerprint = v1_registry.add_approved(initiated_schema(2))
    decoded = AvroCodec(v1_registry).decode(data)

    assert data[2:10] == v2_fingerprint != v1_registry.fingerprint_of("PaymentInitiated")
    assert decoded.event_type == "PaymentInitiated"
    assert decoded.record == RECORDS["PaymentInitiated"]
    assert decoded.fingerprint == v2_fingerprint


def test_decode_of_v2_message_by_v1_reader_without_the_v2_schema_raises_unknown_schema() -> None:
    data = AvroCodec(registry_with_initiated(2)).encode(
        "PaymentInitiated", {**RECORDS["PaymentInitiated"], "device_id": "android-7f3a"}
    )
    with pytest.raises(UnknownSchemaError, match=data[2:10].hex()):
        AvroCodec(registry_with_initiated(1)).decode(data)


def test_decode_of_v1_message_by_v2_reader_fills_the_default() -> None:
    data = AvroCodec(registry_with_initiated(1)).encode(
        "PaymentInitiated", RECORDS["PaymentInitiated"]
    )
    v2_registry = registry_with_initiated(2)
    v2_registry.add_approved(initiated_schema(1))

    decoded = AvroCodec(v2_registry).decode(data)

    assert decoded.record == {**RECORDS["PaymentInitiated"], "device_id": None}


def test_decode_when_writer_cannot_be_resolved_raises_incompatible_schema() -> None:
    data = AvroCodec(registry_with_initiated(1)).encode(
        "PaymentInitiated", RECORDS["PaymentInitiated"]
    )
    incompatible = initiated_schema(1)
    for field in incompatible["fields"]:
        if field["name"] == "currency":
            field["type"] = "int"  # a reader that cannot read the writer's string
    reader = registry_with_initiated(incompatible)
    reader.add_approved(initiated_schema(1))

    with pytest.raises(IncompatibleSchemaError, match="cannot be read as PaymentInitiated") as c:
        AvroCodec(reader).decode(data)

    assert c.value.kind == "unknown_schema"


def test_decode_of_a_v2_message_approved_at_start_drops_the_new_field() -> None:
    data = AvroCodec(registry_with_initiated(2)).encode(
        "PaymentInitiated", {**RECORDS["PaymentInitiated"], "device_id": "ios-0042"}
    )
    approved = FakeApproved(initiated_schema(2))
    codec = AvroCodec(registry_with_initiated(1), approved)

    assert codec.decode(data).record == RECORDS["PaymentInitiated"]
    assert codec.decode(data).record == RECORDS["PaymentInitiated"]
    assert (approved.loads, approved.newest_queries) == (1, 0)


def test_an_unapproved_fingerprint_asks_for_new_approvals_at_most_once_per_interval() -> None:
    data = AvroCodec(registry_with_initiated(2)).encode(
        "PaymentInitiated", {**RECORDS["PaymentInitiated"], "device_id": "ios-0042"}
    )
    approved, clock = FakeApproved(), FakeClock()
    codec = AvroCodec(
        registry_with_initiated(1), approved, approval_check_interval_s=5, clock=clock
    )

    for _ in range(1000):
        with pytest.raises(SchemaNotApprovedError, match="not an approved schema") as caught:
            codec.decode(data)
    assert caught.value.kind == "schema_not_approved"
    assert (approved.newest_queries, approved.loads) == (1, 1)  # the load at start

    clock.now += 5
    approved.approve(initiated_schema(2))
    assert codec.decode(data).event_type == "PaymentInitiated"
    assert (approved.newest_queries, approved.loads) == (2, 2)


def test_an_approved_row_whose_text_does_not_hash_to_its_identity_is_not_used() -> None:
    v2 = initiated_schema(2)
    data = AvroCodec(registry_with_initiated(2)).encode(
        "PaymentInitiated", {**RECORDS["PaymentInitiated"], "device_id": "ios-0042"}
    )
    swapped = copy.deepcopy(v2)
    names = [f["name"] for f in swapped["fields"]]
    i, j = names.index("payer_account"), names.index("payee_account")
    swapped["fields"][i]["name"], swapped["fields"][j]["name"] = "payee_account", "payer_account"
    approved = FakeApproved()
    approved.approve(v2, text=schema_text(swapped))  # the row claims v2's identity

    with pytest.raises(SchemaNotApprovedError):
        AvroCodec(registry_with_initiated(1), approved).decode(data)


def test_a_schema_of_another_identity_under_a_known_fingerprint_is_refused() -> None:
    registry = registry_with_initiated(1)
    same_fingerprint = initiated_schema(1)
    for field in same_fingerprint["fields"]:
        if field["name"] == "occurred_at":
            field["type"] = {"type": "long", "logicalType": "timestamp-micros"}

    with pytest.raises(SchemaConflictError, match="already names a schema"):
        registry.add_approved(same_fingerprint)
