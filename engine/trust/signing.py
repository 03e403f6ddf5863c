"""Signed bank events: what a bank signs, how the switch checks it.

A bank signs, with its Ed25519 private key, the SHA-256 digest of::

    "sakk.event.v1" | topic | message key | value | signer bank | key id

each part prefixed by its length (8 bytes, big-endian), so no field can be moved into
another, no byte of the value changed and no message re-sent to another topic without
breaking the signature. The Avro value is left as it is; the signature travels in three
Kafka headers beside it (:data:`SIGNER_HEADER`, :data:`KEY_ID_HEADER`,
:data:`SIGNATURE_HEADER`).

Signing the digest rather than the message lets the ledger keep proof of what a bank
sent (digest and signature, 96 bytes) without the message itself: an auditor checks the
signature against the digest with the bank's public key, and the digest against the
message wherever the topic still holds it.

Key validity is judged at a time the publisher cannot choose: the broker's
LogAppendTime when the topic is configured for it (Apache Kafka here), else the time the
switch received the message (see :func:`judged_at`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine.trust.keys import SIGNATURE_BYTES, KeyPair, decode_public, verifies

DOMAIN = b"sakk.event.v1"
SIGNER_HEADER = "sakk.signer"
KEY_ID_HEADER = "sakk.key_id"
SIGNATURE_HEADER = "sakk.signature"
SIGNATURE_HEADERS = (SIGNER_HEADER, KEY_ID_HEADER, SIGNATURE_HEADER)
HEADER_VALUE_MAX_BYTES = 256  # any header larger than this is refused unread
HEADERS_MAX = 32
BANK_CODE_MAX_CHARS = 8
KEY_ID_MAX_CHARS = 64
LOG_APPEND_TIME = 1  # Kafka's timestamp type of a record stamped by the broker


class Refusal(StrEnum):
    """Why the switch refused a message as a security matter (a dead-letter ``kind``)."""

    SIGNATURE_MISSING = "signature_missing"
    SIGNATURE_MALFORMED = "signature_malformed"
    HEADER_TOO_LARGE = "header_too_large"
    KEY_UNKNOWN = "key_unknown"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    KEY_EXPIRED = "key_expired"
    KEY_REVOKED = "key_revoked"
    SIGNATURE_INVALID = "signature_invalid"
    SIGNER_NOT_PAYER_BANK = "signer_not_payer_bank"
    SIGNER_NOT_SENDER = "signer_not_sender_bank"  # a step signed by another bank than its sender
    KEY_NOT_DECLARED = "key_mismatch"  # the message key is not the one its event type declares


def signed_digest(topic: str, key: bytes | None, value: bytes, signer: str, key_id: str) -> bytes:
    """The 32 bytes a bank signs for one message."""
    h = hashlib.sha256()
    for part in (DOMAIN, topic.encode(), key or b"", value, signer.encode(), key_id.encode()):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


@dataclass(frozen=True)
class EventSigner:
    """A bank's signing key: turns a message into its signature headers."""

    bank: str
    key: KeyPair

    @property
    def key_id(self) -> str:
        return self.key.key_id

    def headers(self, topic: str, key: bytes | None, value: bytes) -> tuple[tuple[str, bytes], ...]:
        digest = signed_digest(topic, key, value, self.bank, self.key_id)
        return (
            (SIGNER_HEADER, self.bank.encode()),
            (KEY_ID_HEADER, self.key_id.encode()),
            (SIGNATURE_HEADER, self.key.sign(digest)),
        )


@dataclass(frozen=True)
class BankKey:
    """A bank's public key in the reference data, with its validity window."""

    bank: str
    key_id: str
    public: Ed25519PublicKey
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None

    def refusal_at(self, moment: datetime) -> Refusal | None:
        """None when the key may sign at ``moment``; else why not."""
        if moment < self.valid_from:
            return Refusal.KEY_NOT_YET_VALID
        if self.revoked_at is not None and moment >= self.revoked_at:
            return Refusal.KEY_REVOKED
        if self.valid_until is not None and moment >= self.valid_until:
            return Refusal.KEY_EXPIRED
        return None


@dataclass(frozen=True)
class Evidence:
    """What the ledger keeps of a verified signature, so an auditor can prove who sent what."""

    signer: str
    key_id: str
    signature: bytes
    digest: bytes
    judged_at: datetime


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one message: evidence, or a refusal with its reason."""

    evidence: Evidence | None
    refusal: Refusal | None = None
    detail: str = ""
    claimed_signer: str = ""

    @property
    def ok(self) -> bool:
        return self.refusal is None


class KeyRing:
    """The public keys of every bank, as the reference data holds them at one moment."""

    def __init__(self, keys: Iterable[BankKey]) -> None:
        self._keys = {(k.bank, k.key_id): k for k in keys}
        self.banks = frozenset(k.bank for k in self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, bank: str, key_id: str) -> BankKey | None:
        return self._keys.get((bank, key_id))

    def verify(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes | None]],
        at: datetime,
    ) -> Verdict:
        """Check the signature headers of one message against these keys at time ``at``."""
        found, refusal, detail = _signature_headers(headers)
        claimed = _printable(found.get(SIGNER_HEADER, b""))
        if refusal is not None:
            return Verdict(None, refusal, detail, claimed)
        signer, key_id = claimed, _printable(found[KEY_ID_HEADER])
        signature = found[SIGNATURE_HEADER]
        bank_key = self.get(signer, key_id)
        if bank_key is None:
            return Verdict(None, Refusal.KEY_UNKNOWN, f"no key {key_id} for bank {signer}", claimed)
        window = bank_key.refusal_at(at)
        if window is not None:
            when = f"{at:%Y-%m-%dT%H:%M:%SZ}"
            return Verdict(None, window, f"key {key_id} of bank {signer} at {when}", claimed)
        digest = signed_digest(topic, key, value, signer, key_id)
        if not verifies(bank_key.public, signature, digest):
            return Verdict(
                None, Refusal.SIGNATURE_INVALID, "signature does not match topic, key and value",
                claimed,
            )  # fmt: skip
        return Verdict(Evidence(signer, key_id, signature, digest, at), claimed_signer=claimed)


def _signature_headers(
    headers: Sequence[tuple[str, bytes | None]],
) -> tuple[dict[str, bytes], Refusal | None, str]:
    if len(headers) > HEADERS_MAX:
        return {}, Refusal.HEADER_TOO_LARGE, f"{len(headers)} headers, at most {HEADERS_MAX}"
    found: dict[str, bytes] = {}
    for name, raw in headers:
        value = raw or b""
        if len(value) > HEADER_VALUE_MAX_BYTES:
            return found, Refusal.HEADER_TOO_LARGE, f"header {name[:40]!r}: {len(value)} bytes"
        if name in SIGNATURE_HEADERS:
            if name in found:
                return found, Refusal.SIGNATURE_MALFORMED, f"header {name} given twice"
            found[name] = value
    missing = [h for h in SIGNATURE_HEADERS if h not in found]
    if missing:
        return found, Refusal.SIGNATURE_MISSING, f"no {', '.join(missing)} header"
    if len(found[SIGNATURE_HEADER]) != SIGNATURE_BYTES:
        return (
            found,
            Refusal.SIGNATURE_MALFORMED,
            (f"signature of {len(found[SIGNATURE_HEADER])} bytes, expected {SIGNATURE_BYTES}"),
        )
    signer, key_id = found[SIGNER_HEADER], found[KEY_ID_HEADER]
    if not (_is_token(signer, BANK_CODE_MAX_CHARS) and _is_token(key_id, KEY_ID_MAX_CHARS)):
        return found, Refusal.SIGNATURE_MALFORMED, "signer or key id is not a short ASCII token"
    return found, None, ""


def _is_token(value: bytes, max_chars: int) -> bool:
    return 0 < len(value) <= max_chars and value.isascii() and value.decode().isalnum()


def _printable(value: bytes) -> str:
    return value.decode("ascii", "replace")[: BANK_CODE_MAX_CHARS * 8] if value else ""


def judged_at(timestamp_ms: int, timestamp_type: int, received_at: datetime) -> datetime:
    """The time a key's validity is judged at: never one the publisher chose.

    The broker's LogAppendTime when the record carries one; otherwise (the broker keeps
    the producer's CreateTime, as the embedded broker always does) the moment the switch
    received the message. Its limit: a message that waited in the topic past its key's
    revocation is refused, though signed before it; the bank signs it again.
    """
    if timestamp_type == LOG_APPEND_TIME:
        return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return received_at


def key_rows_as_ring(rows: Iterable[Mapping[str, Any]]) -> KeyRing:
    """A key ring from ``bank_keys`` rows (see ``engine.ledger.keys``)."""
    keys = []
    for r in rows:
        keys.append(
            BankKey(
                str(r["bank_code"]),
                str(r["key_id"]),
                decode_public(str(r["public_key"])),
                _aware(r["valid_from"]),
                _aware_or_none(r["valid_until"]),
                _aware_or_none(r["revoked_at"]),
            )  # fmt: skip
        )
    return KeyRing(keys)


def _aware(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _aware_or_none(value: object) -> datetime | None:
    return None if value is None else _aware(value)
