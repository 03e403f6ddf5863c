"""pacs.004.001.09 payment returns, from the notification of a RETURN step.

The payee's bank returned a settled credit (``consumers.lifecycle``): the payload of its
``PaymentStepCompleted`` has what a return needs. ``RtrId`` = the returning bank's
reference of the return; the original ids as the payment's own pacs.002 carried them
(``engine.iso.pacs002.original_ids``: the bank's ISO 20022 ids when the payment came in
as ISO 20022, else ``OrgnlTxId`` = the bank's own part of the payment id);
``RtrdIntrBkSttlmAmt`` = what went back, settled in the window of the return's business
day; ``RtrRsnInf/Rsn/Cd`` = the return reason (AC04, MD07, ...). The returning bank (the
payee's) is the instructing agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.domain.steps import StepKind
from engine.iso.amounts import to_decimal_text
from engine.iso.build import (
    financial_institution,
    iso_datetime,
    maker,
    message_id,
    serialize,
)
from engine.iso.pacs002 import max35, original_group, original_ids, original_reference
from engine.iso.schemas import PACS_004

CLEARING = "CLRG"  # settled through the switch's clearing, in a settlement window


def build_pacs004(
    payload: Mapping[str, Any],
    created_at: datetime,
    recipient_bank: str | None = None,
    bics: Mapping[str, str] | None = None,
    msg_id: str | None = None,
) -> bytes:
    """The return told by ``payload`` (a RETURN step's notification), validated against its XSD."""
    if payload.get("step") not in (None, StepKind.RETURN):
        raise ValueError(f"step {payload.get('step')!r}: a pacs.004 tells a RETURN only")
    e, bics = maker(PACS_004), bics or {}
    currency = str(payload["currency"])
    amount = e.RtrdIntrBkSttlmAmt(
        to_decimal_text(int(payload["amount_minor"]), currency), Ccy=currency
    )
    window = payload.get("settlement_window")

    def settled_on() -> list[Any]:  # the window's day, in the header and the transaction
        return [e.IntrBkSttlmDt(str(window)[:10])] if window else []

    ident = msg_id or message_id("P4", str(payload.get("step_id") or payload["payment_id"]),
                                 recipient_bank or "")  # fmt: skip
    header = [
        e.MsgId(ident),
        e.CreDtTm(iso_datetime(created_at)),
        e.NbOfTxs("1"),
        e.TtlRtrdIntrBkSttlmAmt(amount.text, Ccy=currency),
        *settled_on(),
        e.SttlmInf(e.SttlmMtd(CLEARING)),
    ]
    if payload.get("payee_bank"):
        header.append(e.InstgAgt(financial_institution(e, str(payload["payee_bank"]), bics)))
    if recipient_bank:
        header.append(e.InstdAgt(financial_institution(e, recipient_bank, bics)))
    reason = [e.Rsn(e.Cd(str(payload.get("reason_code") or "NARR")))]
    transaction = e.TxInf(
        *([e.RtrId(rtr_id)] if (rtr_id := max35(payload["bank_reference"])) else []),
        *original_ids(e, payload, None),
        amount,
        *settled_on(),
        e.RtrRsnInf(*reason),
        original_reference(e, payload, bics, with_amount=False),
    )
    group = original_group(e, payload, "OrgnlGrpInf")
    return serialize(e.Document(e.PmtRtr(e.GrpHdr(*header), *group, transaction)), PACS_004)
