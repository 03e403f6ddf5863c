"""pacs.002.001.10 payment status reports, from a notification's payload.

A notification (``consumers.notification.payload_of``) carries the payment's ids, amount,
banks and, when refused, its ISO 20022 reason code: all a status report needs. SETTLED is
reported as ``ACSC`` (settlement completed, with the settlement date); REJECTED and
FAILED as ``RJCT`` with the reason code and its readable message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from engine.iso.amounts import to_decimal_text
from engine.iso.build import (
    compact_id,
    financial_institution,
    iso_datetime,
    maker,
    message_id,
    serialize,
)
from engine.iso.schemas import PACS_002

STATUS_OF = {"SETTLED": "ACSC", "REJECTED": "RJCT", "FAILED": "RJCT"}
MAX_ADDITIONAL_INFO = 105  # Max105Text


def build_pacs002(
    outcome: str,
    payload: Mapping[str, Any],
    created_at: datetime,
    recipient_bank: str | None = None,
    bics: Mapping[str, str] | None = None,
) -> bytes:
    """The status report of one payment's ``outcome``, validated against its XSD.

    ``payload``: a notification's payload (``payment_id``, ``bank_reference``,
    ``payer_bank``, ``payee_bank``, ``amount_minor``, ``currency``, and ``reason_code``,
    ``reason_message``, ``settlement_window`` when known). ``created_at``: the report's
    creation time (the caller's clock: a report records, never decides). ``bics``: bank
    code to BIC, from reference data (a bank without one is named by its member id).
    """
    if outcome not in STATUS_OF:
        raise ValueError(f"outcome {outcome!r}: expected one of {sorted(STATUS_OF)}")
    e, bics = maker(PACS_002), bics or {}
    header = [e.MsgId(message_id("P2", payload["payment_id"], outcome, recipient_bank or "")),
              e.CreDtTm(iso_datetime(created_at))]  # fmt: skip
    if recipient_bank:
        header.append(e.InstdAgt(financial_institution(e, recipient_bank, bics)))
    root = e.Document(e.FIToFIPmtStsRpt(e.GrpHdr(*header), _transaction(e, outcome, payload, bics)))
    return serialize(root, PACS_002)


def _transaction(
    e: ElementMaker, outcome: str, payload: Mapping[str, Any], bics: Mapping[str, str]
) -> etree._Element:
    status = STATUS_OF[outcome]
    parts = [
        e.OrgnlEndToEndId(str(payload["bank_reference"])),
        e.OrgnlTxId(compact_id(str(payload["payment_id"]))),
        e.TxSts(status),
    ]
    if status == "RJCT":
        parts.append(_reason(e, payload))
    window = payload.get("settlement_window")
    if status == "ACSC" and window:
        parts.append(e.FctvIntrBkSttlmDt(e.Dt(str(window)[:10])))
    amount = to_decimal_text(int(payload["amount_minor"]), str(payload["currency"]))
    parts.append(
        e.OrgnlTxRef(
            e.IntrBkSttlmAmt(amount, Ccy=str(payload["currency"])),
            e.DbtrAgt(financial_institution(e, str(payload["payer_bank"]), bics)),
            e.CdtrAgt(financial_institution(e, str(payload["payee_bank"]), bics)),
        )
    )
    return e.TxInfAndSts(*parts)


def _reason(e: ElementMaker, payload: Mapping[str, Any]) -> etree._Element:
    """``StsRsnInf``: the ISO 20022 reason code, and its message as additional information."""
    parts = [e.Rsn(e.Cd(str(payload.get("reason_code") or "NARR")))]
    message = payload.get("reason_message")
    if message:
        parts.append(e.AddtlInf(str(message)[:MAX_ADDITIONAL_INFO]))
    return e.StsRsnInf(*parts)
