"""A bank's publisher written from docs/banks.md alone, as a bank outside Python would.

It uses only what a bank has: the release's schema files, its Ed25519 private key, the
broker, and three libraries any language has an equivalent of (kafka-python, fastavro,
cryptography). It imports nothing of Sakk; ``tests/unit/test_bank_guide.py`` checks that.
Each step follows a section of the guide:

1. the fingerprint: CRC-64-AVRO (own implementation) of the Parsing Canonical Form;
2. the value: ``C3 01`` + the fingerprint, little-endian, + the Avro binary body;
3. the key: the payer account, UTF-8;
4. the digest: SHA-256 over length-prefixed parts, signed with Ed25519;
5. the headers ``sakk.signer``, ``sakk.key_id``, ``sakk.signature``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from kafka import KafkaProducer

CRC64_EMPTY = 0xC15D213AA4D7A795  # the Avro specification's seed and polynomial
MARKER = bytes([0xC3, 0x01])
DOMAIN = b"sakk.event.v1"
TOPIC_SUFFIX = "initiated"  # the topic is PREFIX + "." + this; the prefix is "payments"
SEND_TIMEOUT_S = 30


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """The Avro specification's 64-bit Rabin fingerprint (CRC-64-AVRO)."""
    fp = CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """The 8 bytes naming ``schema`` on the wire: CRC-64-AVRO of its canonical form, LE."""
    canonical = to_parsing_canonical_form(dict(schema))
    return crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")


def single_object(schema: Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    """The Kafka value: marker, fingerprint, then the Avro binary body of ``record``."""
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(dict(schema)), dict(record))
    return MARKER + schema_fingerprint(schema) + body.getvalue()


def signed_digest(topic: str, key: bytes, value: bytes, signer: str, key_id: str) -> bytes:
    """SHA-256 over the domain and the parts, each preceded by its length (8 bytes, BE)."""
    h = hashlib.sha256()
    for part in (DOMAIN, topic.encode("utf-8"), key, value, signer.encode(), key_id.encode()):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def key_id_of(private: Ed25519PrivateKey) -> str:
    """The first 16 hex digits of SHA-256 over the 32 raw bytes of the public key."""
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Message:
    """One Kafka record ready to send."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class BankPublisher:
    """One bank's publisher: its code, its key, the approved schemas it writes with."""

    def __init__(
        self,
        bank: str,
        private: Ed25519PrivateKey,
        schemas_dir: Path,
        topic_prefix: str = "payments",
    ) -> None:
        self.bank = bank
        self.private = private
        self.key_id = key_id_of(private)
        self.topic = f"{topic_prefix}.{TOPIC_SUFFIX}"
        self.schemas = {
            name: json.loads((schemas_dir / f"{name}.avsc").read_text(encoding="utf-8"))
            for name in ("payment_initiated", "payment_step_requested")
        }

    def message(self, schema_name: str, record: Mapping[str, Any]) -> Message:
        """A signed message: keyed by the payer account, value in single-object Avro."""
        key = str(record["payer_account"]).encode("utf-8")
        value = single_object(self.schemas[schema_name], record)
        return self.signed(key, value)

    def signed(self, key: bytes, value: bytes) -> Message:
        """``value`` under ``key`` with this bank's three signature headers."""
        digest = signed_digest(self.topic, key, value, self.bank, self.key_id)
        headers = (
            ("sakk.signer", self.bank.encode("ascii")),
            ("sakk.key_id", self.key_id.encode("ascii")),
            ("sakk.signature", self.private.sign(digest)),
        )
        return Message(self.topic, key, value, headers)

    def payment(self, record: Mapping[str, Any]) -> Message:
        return self.message("payment_initiated", record)

    def step(self, record: Mapping[str, Any]) -> Message:
        return self.message("payment_step_requested", record)


def send(bootstrap_servers: str, messages: Sequence[Message]) -> None:
    """Send in order and wait for every acknowledgement; raises if one is not delivered."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        compression_type=None,
        max_request_size=1024 * 1024,  # the switch's default SAKK_MAX_MESSAGE_BYTES
    )
    try:
        futures = [
            producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers))
            for m in messages
        ]
        producer.flush(SEND_TIMEOUT_S)
        for future in futures:
            future.get(SEND_TIMEOUT_S)
    finally:
        producer.close(SEND_TIMEOUT_S)
