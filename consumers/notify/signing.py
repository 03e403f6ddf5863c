"""Signing: the switch's Ed25519 signature over a webhook's timestamp and body.

The switch signs with its own key, which no bank holds, so no bank can forge what the
switch tells another. Whatever the format (JSON or ISO 20022), the body is signed the
same way. Receivers check with :func:`verify_signature`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from email.message import Message

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine.trust.keys import KeyPair, verifies

MAX_SIGNATURES = 4  # signatures read from one header (two during a key rotation)
SIGNATURE_HEADER_MAX = 1_024
TIMESTAMP_HEADER = "X-Sakk-Timestamp"
SIGNATURE_HEADER = "X-Sakk-Signature"


def sign(keys: Sequence[KeyPair], timestamp_s: int, body: bytes) -> str:
    """``<key id>=<base64 Ed25519 signature of "<timestamp>.<body>">``, one per key, by commas.

    While the switch rotates keys it signs with both, and a bank that knows either public
    key verifies: no gap. The timestamp is signed so a captured request cannot be
    replayed later with a fresh one.
    """
    if not keys:
        raise ValueError("a webhook is signed with at least one key")
    message = f"{timestamp_s}.".encode() + body
    return ",".join(
        f"{key.key_id}={base64.b64encode(key.sign(message)).decode('ascii')}" for key in keys
    )


def signed_headers(keys: Sequence[KeyPair], timestamp_s: int, body: bytes) -> dict[str, str]:
    """The two headers that carry the signature: the signed timestamp and the signatures."""
    return {TIMESTAMP_HEADER: str(timestamp_s), SIGNATURE_HEADER: sign(keys, timestamp_s, body)}


def verify_signature(
    public_keys: Mapping[str, Ed25519PublicKey],
    headers: Mapping[str, str] | Message,
    body: bytes,
    now_s: int,
    tolerance_s: int = 300,
) -> bool:
    """For receivers: True when one signature is by a switch key the bank trusts, in time.

    ``public_keys`` maps key id to the switch's public key (``sakk keys generate switch``
    prints it). Header names are matched case-insensitively. A receiver also checks that
    the body's ``recipient_bank`` (an ISO 20022 document's ``GrpHdr/InstdAgt``) is itself,
    and deduplicates on ``notification_id`` (the document's ``MsgId``: the same id without
    dashes).
    """
    if not public_keys:
        raise ValueError("verify_signature needs at least one trusted public key")
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    received = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(received) > SIGNATURE_HEADER_MAX:
        return False
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False  # stale, or from a clock too far ahead: a replay window we refuse
    message = f"{int(timestamp)}.".encode() + body
    return any(
        _verifies_one(public_keys, part, message) for part in received.split(",")[:MAX_SIGNATURES]
    )


def _verifies_one(public_keys: Mapping[str, Ed25519PublicKey], part: str, message: bytes) -> bool:
    key_id, _, encoded = part.strip().partition("=")
    public = public_keys.get(key_id)
    if public is None:
        return False
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError:
        return False
    return verifies(public, signature, message)
