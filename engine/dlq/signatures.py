"""A bank's signature goes with its redriven message: the switch cannot sign for a bank.

Banks sign what they publish to ``payments.initiated`` over topic, key and value, and
the validator refuses anything unsigned (``consumers.signature_gate``). So a copy of a
bank's message carries the bank's own signature headers: the original's, read back
from the source topic, or, for a corrected body, the ones the bank made for it (a
signature file: one JSON object of the three headers, the signature in base64). The
signature is checked here with the banks' public keys before anything is recorded, so
a copy the validator would refuse is never sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from engine.config import Settings
from engine.dlq.exceptions import RedriveSignatureError
from engine.ledger.keys import read_key_ring
from engine.trust.signing import SIGNATURE_HEADER, SIGNATURE_HEADERS, SIGNER_HEADER

BANK_SIGNED_TOPICS = ("initiated",)  # short names of the topics banks publish to
MAX_SIGNATURE_FILE_BYTES = 4_096

Headers = tuple[tuple[str, bytes], ...]


def is_bank_signed(settings: Settings, topic: str) -> bool:
    return topic in {settings.topic(name) for name in BANK_SIGNED_TOPICS}


def signature_headers_of(headers: Sequence[tuple[str, bytes | None]]) -> Headers:
    """Only the signature headers, in their canonical order; others stay behind."""
    found = {name: value or b"" for name, value in headers if name in SIGNATURE_HEADERS}
    return tuple((name, found[name]) for name in SIGNATURE_HEADERS if name in found)


def parse_signature_file(data: bytes) -> Headers:
    """``{"sakk.signer": "007", "sakk.key_id": "...", "sakk.signature": "<base64>"}``."""
    if len(data) > MAX_SIGNATURE_FILE_BYTES:
        raise RedriveSignatureError(
            f"the signature file is larger than {MAX_SIGNATURE_FILE_BYTES:,} bytes"
        )
    try:
        fields: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RedriveSignatureError(f"the signature file is not a JSON object: {exc}") from exc
    if not isinstance(fields, dict) or set(fields) != set(SIGNATURE_HEADERS):
        raise RedriveSignatureError(
            f"the signature file must hold exactly {', '.join(SIGNATURE_HEADERS)}"
        )
    try:
        signature = base64.b64decode(str(fields[SIGNATURE_HEADER]), validate=True)
    except binascii.Error as exc:
        raise RedriveSignatureError(f"{SIGNATURE_HEADER} is not base64: {exc}") from exc
    values = {name: str(fields[name]).encode() for name in SIGNATURE_HEADERS}
    values[SIGNATURE_HEADER] = signature
    return tuple((name, values[name]) for name in SIGNATURE_HEADERS)


def check_bank_signature(
    conn: Connection,
    topic: str,
    key: bytes,
    value: bytes,
    headers: Headers,
    payer_bank: str | None,
    at: datetime,
) -> None:
    """Refuse, with the validator's own reason, a copy whose signature it would refuse."""
    verdict = read_key_ring(conn).verify(topic, key, value, headers, at)
    if not verdict.ok:
        raise RedriveSignatureError(
            f"the validator would refuse this copy: {verdict.refusal}: {verdict.detail}"
        )
    signer = dict(headers).get(SIGNER_HEADER, b"").decode("ascii", "replace")
    if payer_bank is not None and signer != payer_bank:
        raise RedriveSignatureError(
            f"signed by bank {signer[:8]}, the payer's bank is {payer_bank[:8]}: "
            f"no bank acts for another"
        )
