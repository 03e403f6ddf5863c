"""pacs.002.001.10 payment status reports, from a notification's payload.

A notification (``consumers.notification.payload_of``) carries the payment's ids, amount,
banks and, when refused, its ISO 20022 reason code: all a status report needs.

A payment's answer: SETTLED is ``ACSC`` (settlement completed, with the settlement date);
REJECTED and FAILED are ``RJCT`` with the reason code and its readable message.

A step of its lifecycle (``docs/iso20022.md`` has the table): AUTHORIZE is ``ACSP`` (accepted,
settlement in process: the funds are held), CAPTURE and REFUND ``ACSC``, VOID and EXPIRE
``CANC``, a REFUSED step ``RJCT`` with its reason. What ISO 20022 has no element for (which
step, its amount and fee, the hold and the payment's state after it) travels in
``SplmtryData`` as a ``Step`` element of Sakk's own namespace (:data:`STEP_NAMESPACE`).
A RETURN is not a status: it is a pacs.004 (:mod:`engine.iso.pacs004`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from engine.domain.notifications import REFUSED
from engine.domain.outcomes import StepOutcome
from engine.domain.states import TOLD_ANSWERS
from engine.domain.steps import STEPS
from engine.iso.amounts import to_decimal_text
from engine.iso.build import (
    MAX35,
    compact_id,
    financial_institution,
    iso_datetime,
    maker,
    message_id,
    serialize,
)
from engine.iso.schemas import PACS_002

PAYMENT_STATUS = {a.state.value: a.iso_status for a in TOLD_ANSWERS}
# Each step's status (the catalog's; a RETURN has none: it is a pacs.004), and a refusal's.
STEP_STATUS = {
    **{k.value: s.iso_status for k, s in STEPS.items() if s.iso_status is not None},
    REFUSED: "RJCT",
}
STATUS_OF = PAYMENT_STATUS | STEP_STATUS
MAX_ADDITIONAL_INFO = 105  # Max105Text
MAX_REMITTANCE = 140  # Max140Text
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
UETR = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}")
STEP_NAMESPACE = "urn:sakk:xsd:step.001"
_STEP = ElementMaker(namespace=STEP_NAMESPACE, nsmap={None: STEP_NAMESPACE})
# Amounts of a step, in the Step element: (payload field, element name).
_STEP_AMOUNTS = (
    ("amount_minor", "Amt"), ("fee_minor", "Fee"), ("held_minor", "Held"),
    ("captured_minor", "Captured"), ("refunded_minor", "Refunded"),
)  # fmt: skip


def build_pacs002(
    outcome: str,
    payload: Mapping[str, Any],
    created_at: datetime,
    recipient_bank: str | None = None,
    bics: Mapping[str, str] | None = None,
    msg_id: str | None = None,
) -> bytes:
    """The status report of one payment's ``outcome`` (or step), validated against its XSD.

    ``payload``: a notification's payload (``payment_id``, ``bank_reference``,
    ``payer_bank``, ``payee_bank``, ``amount_minor``, ``currency``, and ``reason_code``,
    ``reason_message``, ``settlement_window``, ``remittance_info`` when known; a step's
    fields too). ``created_at``: the report's creation time (the caller's clock: a report
    records, never decides). ``bics``: bank code to BIC, from reference data (a bank without
    one is named by its member id). ``msg_id``: the report's ``MsgId``, by default derived
    from the payment, outcome and recipient, so the same answer gets the same id.
    """
    if outcome not in STATUS_OF:
        raise ValueError(f"outcome {outcome!r}: expected one of {sorted(STATUS_OF)}")
    e, bics = maker(PACS_002), bics or {}
    ident = msg_id or message_id("P2", payload["payment_id"], outcome, recipient_bank or "")
    header = [e.MsgId(ident), e.CreDtTm(iso_datetime(created_at))]
    if recipient_bank:
        header.append(e.InstdAgt(financial_institution(e, recipient_bank, bics)))
    report = [e.GrpHdr(*header), *original_group(e, payload, "OrgnlGrpInfAndSts")]
    root = e.Document(e.FIToFIPmtStsRpt(*report, _transaction(e, outcome, payload, bics)))
    return serialize(root, PACS_002)


def original_group(e: ElementMaker, payload: Mapping[str, Any], name: str) -> list[Any]:
    """The bank's message the payment came in (``OrgnlMsgId``, ``OrgnlMsgNmId``), as element
    ``name``, when the payload has it (``iso``: the ids told to this bank)."""
    iso = payload.get("iso") or {}
    msg_id, msg_name = max35(iso.get("msg_id")), max35(iso.get("msg_name"))
    if msg_id is None or msg_name is None:
        return []
    return [e(name, e.OrgnlMsgId(msg_id), e.OrgnlMsgNmId(msg_name))]


def max35(value: Any) -> str | None:
    """``value`` as a Max35Text when it can be one: a bank's claim never stops a document.

    Cut at 35 characters; None when empty or holding a character XML cannot carry (a
    control character), so that a payer's bad id leaves the element out of the payee's
    report instead of making the report impossible to build.
    """
    text = str(value or "").strip()[:MAX35]
    return text if text and not _NOT_XML.search(text) else None


def original_ids(e: ElementMaker, payload: Mapping[str, Any], end_to_end: str | None) -> list[Any]:
    """``OrgnlInstrId``, ``OrgnlEndToEndId``, ``OrgnlTxId``, ``OrgnlUETR``: the bank's own.

    A payment that came in as ISO 20022 echoes the ids of its transaction as the bank sent
    them (``iso``: those told to this bank; an id it did not send is left out). Any other
    is named by ``end_to_end`` (its bank reference, when given) and the bank's own part of
    its payment id (``compact_id``).
    """
    iso = payload.get("iso")
    if not iso:
        text = max35(end_to_end)
        parts = [e.OrgnlEndToEndId(text)] if text is not None else []
        return [*parts, e.OrgnlTxId(compact_id(str(payload["payment_id"])))]
    parts = []
    instr, e2e, tx = (max35(iso.get(k)) for k in ("instr_id", "end_to_end_id", "tx_id"))
    e2e = e2e or (max35(end_to_end) if end_to_end else None)  # mandatory in a pacs.008
    for element, text in (("OrgnlInstrId", instr), ("OrgnlEndToEndId", e2e), ("OrgnlTxId", tx)):
        if text is not None:
            parts.append(e(element, text))
    uetr = str(iso.get("uetr") or "").lower()
    if UETR.fullmatch(uetr):
        parts.append(e.OrgnlUETR(uetr))
    return parts


def _transaction(
    e: ElementMaker, outcome: str, payload: Mapping[str, Any], bics: Mapping[str, str]
) -> etree._Element:
    status = STATUS_OF[outcome]
    step = outcome in STEP_STATUS
    parts = []
    if payload.get("step_id"):
        parts.append(e.StsId(compact_id(str(payload["step_id"]))))
    parts += [*original_ids(e, payload, str(payload["bank_reference"])), e.TxSts(status)]
    if status == "RJCT":
        parts.append(_reason(e, payload))
    window = payload.get("settlement_window")
    if status == "ACSC" and window:
        parts.append(e.FctvIntrBkSttlmDt(e.Dt(str(window)[:10])))
    reference = original_reference(e, payload, bics, with_amount=not step)
    if len(reference):
        parts.append(reference)
    if step:
        parts.append(_supplementary(e, outcome, payload))
    return e.TxInfAndSts(*parts)


def original_reference(
    e: ElementMaker, payload: Mapping[str, Any], bics: Mapping[str, str], with_amount: bool
) -> etree._Element:
    """``OrgnlTxRef``: the payment's amount (when ``with_amount``), remittance and agents.

    The same type in pacs.002.001.10 and pacs.004.001.09; the amount is left to the caller
    because a step's amount is not the payment's (it goes in the step's own element).
    """
    parts = []
    if with_amount and payload.get("amount_minor") is not None:
        amount = to_decimal_text(int(payload["amount_minor"]), str(payload["currency"]))
        parts.append(e.IntrBkSttlmAmt(amount, Ccy=str(payload["currency"])))
    remittance = _NOT_XML.sub("", str(payload.get("remittance_info") or ""))[:MAX_REMITTANCE]
    if remittance.strip():  # the payer's words: what XML cannot carry is dropped, not fatal
        parts.append(e.RmtInf(e.Ustrd(remittance)))
    for element, field in (("DbtrAgt", "payer_bank"), ("CdtrAgt", "payee_bank")):
        if payload.get(field):
            parts.append(e(element, financial_institution(e, str(payload[field]), bics)))
    return e.OrgnlTxRef(*parts)


def _reason(e: ElementMaker, payload: Mapping[str, Any]) -> etree._Element:
    """``StsRsnInf``: the ISO 20022 reason code, and its message as additional information."""
    parts = [e.Rsn(e.Cd(str(payload.get("reason_code") or "NARR")))]
    message = payload.get("reason_message")
    if message:
        parts.append(e.AddtlInf(str(message)[:MAX_ADDITIONAL_INFO]))
    return e.StsRsnInf(*parts)


def _supplementary(e: ElementMaker, outcome: str, payload: Mapping[str, Any]) -> etree._Element:
    """``SplmtryData``: the step, its amounts and the payment's state after it."""
    kind = str(payload.get("step") or outcome)
    recorded = StepOutcome.REFUSED if outcome == REFUSED else StepOutcome.APPLIED
    parts = [_STEP.Kind(kind), _STEP.Outcome(recorded.value)]
    if payload.get("sender_bank"):
        parts.append(_STEP.SenderBank(str(payload["sender_bank"])))
    currency = payload.get("currency")
    for field, name in _STEP_AMOUNTS:
        if payload.get(field) is not None and currency:
            amount = to_decimal_text(int(payload[field]), str(currency))
            parts.append(_STEP(name, amount, Ccy=str(currency)))
    if payload.get("payment_state"):
        parts.append(_STEP.PaymentState(str(payload["payment_state"])))
    if payload.get("hold_expires_at"):
        expires = datetime.fromisoformat(str(payload["hold_expires_at"]))
        parts.append(_STEP.HoldExpiresAt(iso_datetime(expires)))
    return e.SplmtryData(e.PlcAndNm("TxInfAndSts"), e.Envlp(_STEP.Step(*parts)))
