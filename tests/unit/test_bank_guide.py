"""docs/banks.md cannot drift from the code: its worked example, its limits, its client.

- The worked example (a signed card authorization, byte by byte) is recomputed here with
  the switch's own encoder and signer, and with the bank client written from the page,
  and must appear in the page exactly. Print it with
  ``.venv/bin/python -m tests.unit.test_bank_guide`` after a deliberate change.
- Every limit in the page's limits table is read from the constant that sets it.
- The bank client of ``tests/integration/test_bank_guide_client.py`` imports nothing of
  Sakk.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from consumers.notification import PAYLOAD_FIELDS, notification_id
from consumers.notify.message import OUTCOMES
from consumers.validator import MAX_ACCOUNT_CHARS, MAX_REFERENCE_CHARS
from engine import schema_policy
from engine.config import MAX_HOLD_EXPIRY_S, MIN_HOLD_EXPIRY_S, Settings
from engine.events import PAYMENT_INITIATED
from engine.ids import MAX_ID_CHARS, SWITCH_ID_MAX_CHARS
from engine.ledger.models import Payment
from engine.money import MAX_AMOUNT_MINOR
from engine.pipeline.quarantine import MAX_DEATHS
from engine.serialization import HEADER_BYTES, MAX_COLLECTION_ITEMS, AvroCodec, SchemaRegistry
from engine.trust import signing
from engine.trust.keys import KEY_ID_HEX_CHARS, SIGNATURE_BYTES, KeyPair, public_bytes
from tests.bank_client import foreign_client

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "banks.md"
SCHEMAS = ROOT / "schemas"
CLIENT = ROOT / "tests" / "bank_client" / "foreign_client.py"
SAKK_PACKAGES = ("engine", "consumers", "producers", "sakk", "tooling")

EXAMPLE_SEED = b"docs/banks.md worked example"  # a published key: never a real bank's
EXAMPLE_TOPIC = "payments.initiated"
EXAMPLE_RECORD: dict[str, Any] = {
    "event_id": "E-20260601-0001",
    "payment_id": "P-20260601-0001",
    "bank_reference": "AUTH-0001",
    "occurred_at": datetime(2026, 6, 1, 10, 0, tzinfo=UTC),
    "payer_bank": "007",
    "payer_account": "007780000000000000000111",
    "payee_bank": "007",
    "payee_account": "007780000000000000000999",
    "amount_minor": 15_000,
    "currency": "MAD",
    "channel": "POS",
    "payment_type": "PURCHASE",
    "merchant_category_code": "4511",
    "egov_service": None,
    "intent": "AUTHORIZATION",
    "remittance_info": None,
    "iso": None,
    "iso_extras": None,
}
HEX_PER_LINE = 64


def _lines(data: bytes, indent: str) -> str:
    text = data.hex()
    return f"\n{indent}".join(text[i : i + HEX_PER_LINE] for i in range(0, len(text), HEX_PER_LINE))


def _field_bytes(field_type: Any, value: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(field_type), value)
    return out.getvalue()


def worked_example() -> str:
    """The page's worked example, computed with the switch's encoder and signer."""
    schema_text = (SCHEMAS / PAYMENT_INITIATED.schema_file).read_text(encoding="utf-8")
    schema = json.loads(schema_text)
    codec = AvroCodec(SchemaRegistry.from_dir(SCHEMAS))
    key_pair = KeyPair.from_seed(EXAMPLE_SEED)
    seed = hashlib.sha256(EXAMPLE_SEED).digest()
    canonical = to_parsing_canonical_form(schema)
    value = codec.encode(PAYMENT_INITIATED.name, EXAMPLE_RECORD, validate=True)
    key = PAYMENT_INITIATED.key(EXAMPLE_RECORD)
    signer = signing.EventSigner("007", key_pair)
    digest = signing.signed_digest(EXAMPLE_TOPIC, key, value, "007", key_pair.key_id)
    headers = dict(signer.headers(EXAMPLE_TOPIC, key, value))
    fields = []
    parsed = parse_schema(schema)
    for f in parsed["fields"]:
        v = EXAMPLE_RECORD[f["name"]]
        shown = int(v.timestamp() * 1000) if isinstance(v, datetime) else v
        encoded = _field_bytes(f["type"], shown)
        fields.append(f"  {f['name']:<24} {json.dumps(shown):<28} {encoded.hex()}")
    parts = []
    for name, part in (
        ("domain", signing.DOMAIN), ("topic", EXAMPLE_TOPIC.encode()), ("key", key),
        ("value", value), ("signer", b"007"), ("key id", key_pair.key_id.encode()),
    ):  # fmt: skip
        parts.append(f"  {name:<7} length {len(part).to_bytes(8, 'big').hex()} ({len(part)})")
    body = value[HEADER_BYTES:]
    return "\n".join(
        [
            "private key seed (32 bytes, Ed25519)",
            f"  {seed.hex()}",
            "public key (32 raw bytes)",
            f"  {public_bytes(key_pair.public).hex()}",
            "key id = first 16 hex digits of SHA-256(public key)",
            f"  {key_pair.key_id}",
            "Parsing Canonical Form of schemas/payment_initiated.avsc",
            f"  {canonical}",
            "CRC-64-AVRO of it, as 8 little-endian bytes (the fingerprint)",
            f"  {value[2:10].hex()}",
            "Avro binary body, field by field (occurred_at in epoch milliseconds)",
            *fields,
            "Kafka topic",
            f"  {EXAMPLE_TOPIC}",
            "Kafka key (payer_account, UTF-8)",
            f"  {key.hex()}",
            f"Kafka value ({len(value)} bytes) = c301 + fingerprint + body",
            f"  {value[:2].hex()} {value[2:10].hex()}",
            f"  {_lines(body, '  ')}",
            "signed parts, each after its length as 8 big-endian bytes",
            *parts,
            "digest = SHA-256 of those 6 (length, part) pairs",
            f"  {digest.hex()}",
            "headers",
            f"  sakk.signer     {headers[signing.SIGNER_HEADER].decode()} "
            f"({headers[signing.SIGNER_HEADER].hex()})",
            f"  sakk.key_id     {headers[signing.KEY_ID_HEADER].decode()} "
            f"({headers[signing.KEY_ID_HEADER].hex()})",
            "  sakk.signature  Ed25519 signature of the digest, 64 raw bytes",
            f"  {_lines(headers[signing.SIGNATURE_HEADER], '  ')}",
        ]
    )


def test_the_worked_example_in_the_guide_is_what_the_switch_computes() -> None:
    example = worked_example()
    assert f"```text\n{example}\n```" in GUIDE.read_text(encoding="utf-8"), (
        "docs/banks.md's worked example differs from the code; the current one is:\n" + example
    )


def test_the_bank_client_computes_the_worked_example_byte_for_byte() -> None:
    """The client's own CRC-64-AVRO, framing, digest and signature give the page's bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(EXAMPLE_SEED).digest())
    bank = foreign_client.BankPublisher("007", private, SCHEMAS)
    record = dict(EXAMPLE_RECORD, occurred_at=int(EXAMPLE_RECORD["occurred_at"].timestamp() * 1000))
    message = bank.payment(record)
    key_pair = KeyPair.from_seed(EXAMPLE_SEED)
    codec = AvroCodec(SchemaRegistry.from_dir(SCHEMAS))
    value = codec.encode(PAYMENT_INITIATED.name, EXAMPLE_RECORD)
    key = PAYMENT_INITIATED.key(EXAMPLE_RECORD)
    assert (message.topic, message.key, message.value) == (EXAMPLE_TOPIC, key, value)
    assert message.headers == signing.EventSigner("007", key_pair).headers(
        EXAMPLE_TOPIC, key, value
    )


def test_the_clients_crc64_avro_is_the_specifications() -> None:
    """Known answer: the Avro specification's fingerprint of the schema "int"."""
    assert foreign_client.crc64_avro(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"


def test_the_bank_client_imports_nothing_of_sakk() -> None:
    tree = ast.parse(CLIENT.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import from {node.module!r}"
            imported.add(node.module or "")
    roots = {name.split(".")[0] for name in imported}
    assert not roots & {*SAKK_PACKAGES, "tests"}, sorted(imported)
    assert roots - {"__future__"} <= {
        "hashlib", "io", "json", "collections", "dataclasses", "pathlib", "typing",
        "cryptography", "fastavro", "kafka",
    }, sorted(roots)  # fmt: skip


SETTINGS = Settings()
# Every limit a bank meets: (the name the guide's limits table gives in its "set by"
# column, its value in the code).
LIMITS: tuple[tuple[str, int], ...] = (
    ("SAKK_MAX_MESSAGE_BYTES", SETTINGS.max_message_bytes),
    ("HEADERS_MAX", signing.HEADERS_MAX),
    ("HEADER_VALUE_MAX_BYTES", signing.HEADER_VALUE_MAX_BYTES),
    ("BANK_CODE_MAX_CHARS", signing.BANK_CODE_MAX_CHARS),
    ("KEY_ID_MAX_CHARS", signing.KEY_ID_MAX_CHARS),
    ("KEY_ID_HEX_CHARS", KEY_ID_HEX_CHARS),
    ("SIGNATURE_BYTES", SIGNATURE_BYTES),
    ("MAX_ID_CHARS", MAX_ID_CHARS),
    ("SWITCH_ID_MAX_CHARS", SWITCH_ID_MAX_CHARS),
    ("MAX_REFERENCE_CHARS", MAX_REFERENCE_CHARS),
    ("MAX_ACCOUNT_CHARS", MAX_ACCOUNT_CHARS),
    ("MAX_AMOUNT_MINOR", MAX_AMOUNT_MINOR),
    ("payments.remittance_info", Payment.__table__.c.remittance_info.type.length),
    ("payments.merchant_category_code", Payment.__table__.c.merchant_category_code.type.length),
    ("payments.egov_service", Payment.__table__.c.egov_service.type.length),
    ("SAKK_MAX_EVENT_SKEW_S", SETTINGS.max_event_skew_s),
    ("SAKK_MAX_EVENT_AGE_S", SETTINGS.max_event_age_s),
    ("SAKK_HOLD_EXPIRY_S", SETTINGS.hold_expiry_s),
    ("MIN_HOLD_EXPIRY_S", MIN_HOLD_EXPIRY_S),
    ("MAX_HOLD_EXPIRY_S", MAX_HOLD_EXPIRY_S),
    ("MAX_SCHEMA_TEXT_BYTES", schema_policy.MAX_SCHEMA_TEXT_BYTES),
    ("MAX_NESTING_DEPTH", schema_policy.MAX_NESTING_DEPTH),
    ("MAX_FIELDS", schema_policy.MAX_FIELDS),
    ("MAX_COLLECTION_ITEMS", MAX_COLLECTION_ITEMS),
    ("MAX_DEATHS", MAX_DEATHS),
    ("SAKK_WEBHOOK_TIMEOUT_MS", SETTINGS.webhook_timeout_ms),
    ("SAKK_NOTIFY_HORIZON_S", SETTINGS.notify_horizon_s),
)


def _table(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading`` in the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # after the header and its rule


def _leading_int(cell: str) -> int:
    found = re.match(r"\s*([\d,]+)", cell)
    if found is None:
        raise AssertionError(f"no number at the start of {cell!r}")
    return int(found.group(1).replace(",", ""))


@pytest.mark.parametrize(("name", "value"), LIMITS, ids=[n for n, _ in LIMITS])
def test_each_limit_in_the_guide_is_the_codes(name: str, value: int) -> None:
    rows = [r for r in _table("## Limits") if f"`{name}`" in r[2]]
    assert len(rows) == 1, f"docs/banks.md's limits table names `{name}` in {len(rows)} rows"
    assert _leading_int(rows[0][1]) == value, (rows[0], value)


def test_each_channel_limit_of_the_seed_is_in_the_guide() -> None:
    seed = json.loads((ROOT / "reference" / "morocco.json").read_text(encoding="utf-8"))
    rows = {r[0].strip("`"): r for r in _table("### Channel limits")}
    for limit in seed["channel_limits"]:
        row = rows[limit["channel"]]
        assert _leading_int(row[2]) == limit["max_amount_minor"], row
        expiry = limit.get("hold_expiry_s", SETTINGS.hold_expiry_s)
        assert _leading_int(row[3]) == expiry, row
    assert len(rows) == len(seed["channel_limits"])


if __name__ == "__main__":
    print(worked_example())


def _json_examples(heading: str, until: str) -> list[dict[str, Any]]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index(heading) : text.index(until)]
    found = []
    for block in re.findall(r"```json\n(.*?)```", section, re.S):
        if block.startswith('{"') and block.count("\n{") > 0:  # JSON Lines
            found += [json.loads(line) for line in block.splitlines()]
        else:
            found.append(json.loads(block))
    return found


def test_every_message_example_a_bank_sends_fits_its_release_schema() -> None:
    examples = _json_examples("## Every message a bank sends", "## Every message a bank receives")
    assert len(examples) >= 5
    for example in examples:
        name = "payment_step_requested" if "step" in example else "payment_initiated"
        schema = parse_schema(json.loads((SCHEMAS / f"{name}.avsc").read_text(encoding="utf-8")))
        assert validate(example, schema, raise_errors=False), example
        required = {f["name"] for f in schema["fields"] if "default" not in f}
        assert required <= set(example) <= {f["name"] for f in schema["fields"]}, example


def test_every_notification_example_is_one_the_switch_can_send() -> None:
    examples = _json_examples("### JSON notifications", "### ISO 20022 answers")
    assert len(examples) >= 4
    for example in examples:
        assert set(example) == {"data", "notification_id", "outcome", "payment_id",
                                "recipient_bank"}, example  # fmt: skip
        assert example["outcome"] in OUTCOMES
        assert set(example["data"]) <= {*PAYLOAD_FIELDS, "occurred_at", "hold_expires_at"}
        subject = example["data"].get("step_id", example["payment_id"])
        if example["outcome"] == "REFUSED":
            continue  # told of the refused request's own event id, which the page omits
        assert example["notification_id"] == notification_id(
            subject, example["outcome"], example["recipient_bank"]
        ), example
