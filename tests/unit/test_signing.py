"""Signing and verifying bank events: the digest, the key ring, validity windows, rotation."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.trust.exceptions import KeyFileError
from engine.trust.keys import KeyPair, decode_public, encode_public, fingerprint
from engine.trust.signing import (
    KEY_ID_HEADER,
    LOG_APPEND_TIME,
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    BankKey,
    EventSigner,
    KeyRing,
    Refusal,
    judged_at,
    signed_digest,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TOPIC = "payments.initiated"
KEY = b"007780000000000000000111"
VALUE = b"\xc3\x01avro-body"
BANK_A = EventSigner("007", KeyPair.from_seed(b"unit/007"))
BANK_B = EventSigner("011", KeyPair.from_seed(b"unit/011"))


def key_of(signer: EventSigner, **window: datetime | None) -> BankKey:
    valid_from = window.pop("valid_from", None) or T0 - timedelta(days=30)
    return BankKey(signer.bank, signer.key_id, signer.key.public, valid_from, **window)  # type: ignore[arg-type]


RING = KeyRing([key_of(BANK_A), key_of(BANK_B)])


def verify(headers, topic: str = TOPIC, key: bytes = KEY, value: bytes = VALUE, at=T0):  # type: ignore[no-untyped-def]
    return RING.verify(topic, key, value, list(headers), at)


def test_a_message_signed_by_its_bank_verifies_and_yields_its_evidence():
    verdict = verify(BANK_A.headers(TOPIC, KEY, VALUE))
    assert verdict.ok and verdict.evidence is not None
    assert (verdict.evidence.signer, verdict.evidence.key_id) == ("007", BANK_A.key_id)
    assert verdict.evidence.digest == signed_digest(TOPIC, KEY, VALUE, "007", BANK_A.key_id)
    assert len(verdict.evidence.signature) == 64


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (dict(value=VALUE[:-1] + b"\x00"), Refusal.SIGNATURE_INVALID),  # one byte of the body
        (dict(key=b"007780000000000000000222"), Refusal.SIGNATURE_INVALID),  # another payer key
        (dict(topic="payments.validated"), Refusal.SIGNATURE_INVALID),  # moved to another topic
    ],
)
def test_any_change_to_topic_key_or_value_breaks_the_signature(change, reason):
    assert verify(BANK_A.headers(TOPIC, KEY, VALUE), **change).refusal is reason


def test_the_length_prefixes_keep_fields_from_sliding_into_each_other():
    assert signed_digest("ab", b"c", b"", "007", "k") != signed_digest("a", b"bc", b"", "007", "k")


def headers_with(**replace: bytes | None) -> list[tuple[str, bytes | None]]:
    found = dict(BANK_A.headers(TOPIC, KEY, VALUE))
    for name, value in replace.items():
        header = {"signer": SIGNER_HEADER, "key_id": KEY_ID_HEADER, "signature": SIGNATURE_HEADER}[
            name
        ]
        if value is None:
            found.pop(header)
        else:
            found[header] = value
    return list(found.items())


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], Refusal.SIGNATURE_MISSING),
        (headers_with(signature=None), Refusal.SIGNATURE_MISSING),
        (headers_with(signature=b"\x01" * 63), Refusal.SIGNATURE_MALFORMED),
        (headers_with(signature=b"\x01" * 65), Refusal.SIGNATURE_MALFORMED),
        (headers_with(signer=b"00 7"), Refusal.SIGNATURE_MALFORMED),
        (headers_with(key_id=b"0123456789abcdef"), Refusal.KEY_UNKNOWN),
        (headers_with(signer=b"011"), Refusal.KEY_UNKNOWN),  # bank A's key id, claiming bank B
        (headers_with(signer=b"x" * 300), Refusal.HEADER_TOO_LARGE),
        ([("trace", b"x" * 10_000), *headers_with()], Refusal.HEADER_TOO_LARGE),
        ([("h", b"")] * 40, Refusal.HEADER_TOO_LARGE),
        ([*headers_with(), (SIGNER_HEADER, b"011")], Refusal.SIGNATURE_MALFORMED),
    ],
    ids=[
        "no headers", "no signature", "63 bytes", "65 bytes", "signer not a token",
        "unknown key id", "key of another bank", "huge signer", "huge other header",
        "too many headers", "signer twice",
    ],
)  # fmt: skip
def test_bad_signature_headers_are_refused_with_their_reason(headers, reason):
    verdict = verify(headers)
    assert verdict.refusal is reason and verdict.evidence is None and verdict.detail


def test_a_bank_key_signing_as_another_bank_is_refused_even_with_a_valid_signature():
    forged = EventSigner("011", BANK_A.key)  # bank A's private key, bank B's name
    assert verify(forged.headers(TOPIC, KEY, VALUE)).refusal is Refusal.KEY_UNKNOWN


def test_validity_window_and_revocation_are_judged_at_the_given_time():
    key = key_of(BANK_A, valid_from=T0, valid_until=T0 + timedelta(days=90))
    assert key.refusal_at(T0 - timedelta(seconds=1)) is Refusal.KEY_NOT_YET_VALID
    assert key.refusal_at(T0) is None
    assert key.refusal_at(T0 + timedelta(days=90)) is Refusal.KEY_EXPIRED
    revoked = key_of(BANK_A, valid_from=T0, revoked_at=T0 + timedelta(hours=1))
    assert revoked.refusal_at(T0 + timedelta(minutes=59)) is None
    assert revoked.refusal_at(T0 + timedelta(hours=1)) is Refusal.KEY_REVOKED


def test_two_keys_of_one_bank_are_valid_at_once_during_a_rotation():
    new = EventSigner("007", KeyPair.from_seed(b"unit/007/2027"))
    ring = KeyRing([key_of(BANK_A, revoked_at=T0 + timedelta(days=7)), key_of(new, valid_from=T0)])
    during = T0 + timedelta(days=1)
    for signer in (BANK_A, new):
        assert ring.verify(TOPIC, KEY, VALUE, list(signer.headers(TOPIC, KEY, VALUE)), during).ok
    after = T0 + timedelta(days=8)
    assert (
        ring.verify(TOPIC, KEY, VALUE, list(BANK_A.headers(TOPIC, KEY, VALUE)), after).refusal
        is Refusal.KEY_REVOKED
    )
    assert ring.verify(TOPIC, KEY, VALUE, list(new.headers(TOPIC, KEY, VALUE)), after).ok


def test_key_validity_is_judged_at_log_append_time_else_at_receipt_never_at_create_time():
    received = T0 + timedelta(hours=2)
    backdated_ms = int((T0 - timedelta(days=365)).timestamp() * 1000)
    assert judged_at(backdated_ms, 0, received) == received  # CreateTime: the producer's
    appended_ms = int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    assert judged_at(appended_ms, LOG_APPEND_TIME, received) == T0 + timedelta(minutes=5)


def test_public_keys_round_trip_and_key_ids_are_their_fingerprints():
    text = encode_public(BANK_A.key.public)
    assert fingerprint(decode_public(text)) == BANK_A.key_id
    with pytest.raises(ValueError, match="32"):
        decode_public("AAAA")
    with pytest.raises(ValueError, match="base64"):
        decode_public("not base64!")


def test_a_private_key_file_is_owner_only_and_an_open_one_is_refused(tmp_path: Path):
    path = tmp_path / "007.pem"
    pair = KeyPair.generate()
    pair.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyPair.read(path).key_id == pair.key_id
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        KeyPair.read(path)
    with pytest.raises(FileExistsError):
        pair.write(path)  # never overwrites a key
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match="PEM"):
        KeyPair.read(junk)
