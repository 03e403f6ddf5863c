"""Notifications as ISO 20022: which document each outcome becomes, and the webhook's body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lxml import etree
from sqlalchemy.exc import OperationalError

from consumers.notification import payload_of
from consumers.notify.channels import WebhookSender
from consumers.notify.formats import BodyByBank
from consumers.notify.message import Notification
from engine.iso.mapping import remittance_info
from engine.iso.notices import BankProfiles, iso_notification
from engine.iso.pacs002 import STEP_NAMESPACE, build_pacs002
from engine.iso.pacs004 import build_pacs004
from engine.iso.safe_xml import parse
from engine.iso.schemas import PACS_002, PACS_004, Definition, assert_valid
from engine.trust.keys import KeyPair

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
BICS = {"007": "BCMAMAMC", "011": "BMCEMAMC"}
NOTIFICATION_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
STEP: dict[str, Any] = {
    "payment_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "step_id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427", "bank_reference": "CAP-7",
    "sender_bank": "011", "payer_bank": "007", "payee_bank": "011", "amount_minor": 4_000,
    "fee_minor": 20, "currency": "MAD", "settlement_window": "2026-11-26",
    "held_minor": 0, "captured_minor": 4_000, "refunded_minor": 0, "payment_state": "CAPTURED",
    "remittance_info": "Order 77",
}  # fmt: skip


def valid(document: bytes, definition: Definition) -> etree._Element:
    root = parse(document).getroot()
    assert_valid(root, definition)
    return root


def find(root: etree._Element, path: str, definition: Definition) -> str | None:
    return root.findtext(path, namespaces={"d": definition.namespace, "s": STEP_NAMESPACE})


@pytest.mark.parametrize(
    ("step", "status"),
    [("AUTHORIZE", "ACSP"), ("CAPTURE", "ACSC"), ("VOID", "CANC"), ("EXPIRE", "CANC"),
     ("REFUND", "ACSC")],
)  # fmt: skip
def test_each_step_is_a_status_report_with_the_step_in_supplementary_data(
    step: str, status: str
) -> None:
    root = valid(build_pacs002(step, STEP | {"step": step}, NOW, "007", BICS), PACS_002)
    assert find(root, ".//d:TxSts", PACS_002) == status
    assert find(root, ".//d:StsId", PACS_002) == "1b4e28ba2fa141d2883f0016d3cca427"
    assert find(root, ".//d:OrgnlTxRef/d:RmtInf/d:Ustrd", PACS_002) == "Order 77"
    assert find(root, ".//d:OrgnlTxRef/d:IntrBkSttlmAmt", PACS_002) is None  # not the payment's
    envelope = ".//d:SplmtryData/d:Envlp/s:Step/s:"
    assert find(root, envelope + "Kind", PACS_002) == step
    assert find(root, envelope + "Outcome", PACS_002) == "APPLIED"
    assert find(root, envelope + "Amt", PACS_002) == "40.00"
    assert find(root, envelope + "Fee", PACS_002) == "0.20"
    assert find(root, envelope + "PaymentState", PACS_002) == "CAPTURED"


def test_a_refused_step_is_rejected_with_its_reason() -> None:
    refused = {
        "payment_id": STEP["payment_id"], "bank_reference": "CAP-8", "step": "CAPTURE",
        "sender_bank": "011", "reason_code": "AM09", "reason_message": "above the hold",
    }  # fmt: skip
    root = valid(build_pacs002("REFUSED", refused, NOW, "011", BICS), PACS_002)
    assert find(root, ".//d:TxSts", PACS_002) == "RJCT"
    assert find(root, ".//d:StsRsnInf/d:Rsn/d:Cd", PACS_002) == "AM09"
    assert find(root, ".//s:Step/s:Outcome", PACS_002) == "REFUSED"
    assert find(root, ".//s:Step/s:Kind", PACS_002) == "CAPTURE"


def test_a_return_is_a_pacs004_with_its_reason_and_the_original_ids() -> None:
    returned = STEP | {"step": "RETURN", "bank_reference": "RET-9", "reason_code": "MD07",
                       "fee_minor": 0, "payment_state": "RETURNED"}  # fmt: skip
    root = valid(build_pacs004(returned, NOW, "007", BICS), PACS_004)
    assert find(root, ".//d:GrpHdr/d:NbOfTxs", PACS_004) == "1"
    assert find(root, ".//d:GrpHdr/d:TtlRtrdIntrBkSttlmAmt", PACS_004) == "40.00"
    assert find(root, ".//d:GrpHdr/d:InstgAgt/d:FinInstnId/d:BICFI", PACS_004) == "BMCEMAMC"
    assert find(root, ".//d:TxInf/d:RtrId", PACS_004) == "RET-9"
    assert find(root, ".//d:TxInf/d:OrgnlTxId", PACS_004) == "0f8fad5bd9cb469fa16570867728950e"
    assert find(root, ".//d:TxInf/d:IntrBkSttlmDt", PACS_004) == "2026-11-26"
    assert find(root, ".//d:RtrRsnInf/d:Rsn/d:Cd", PACS_004) == "MD07"
    assert find(root, ".//d:OrgnlTxRef/d:RmtInf/d:Ustrd", PACS_004) == "Order 77"
    with pytest.raises(ValueError, match="RETURN only"):
        build_pacs004(STEP | {"step": "CAPTURE"}, NOW)


def test_the_document_follows_the_outcome_and_its_id_is_the_notification_id() -> None:
    returned = iso_notification(NOTIFICATION_ID, "RETURN", STEP | {"step": "RETURN"}, "007",
                                NOW, BICS)  # fmt: skip
    settled = iso_notification(NOTIFICATION_ID, "SETTLED", STEP, "007", NOW, BICS)
    assert find(valid(returned, PACS_004), ".//d:GrpHdr/d:MsgId", PACS_004) == (
        "3f2504e04f8941d39a0c0305e82c3301"
    )
    assert find(valid(settled, PACS_002), ".//d:GrpHdr/d:MsgId", PACS_002) == (
        "3f2504e04f8941d39a0c0305e82c3301"
    )


def notification(bank: str, outcome: str = "SETTLED") -> Notification:
    payload = {k: v for k, v in STEP.items() if k not in ("step_id",)}
    return Notification(NOTIFICATION_ID, STEP["payment_id"], outcome, bank, None, payload)


def test_the_body_is_json_by_default_and_iso_for_a_bank_that_chose_it() -> None:
    loads: list[int] = []
    clock = [0.0]

    def load() -> BankProfiles:
        loads.append(1)
        return BankProfiles({"007": "json", "011": "pacs.002"}, BICS)

    bodies = BodyByBank(load, refresh_s=30, clock_s=lambda: clock[0])
    assert bodies(notification("007")).content_type == "application/json"
    assert bodies(notification("999")).content_type == "application/json"  # unknown: default
    xml = bodies(notification("011"))
    assert xml.content_type == "application/xml"
    assert find(valid(xml.data, PACS_002), ".//d:TxSts", PACS_002) == "ACSC"
    assert len(loads) == 1  # read once, then every refresh_s
    clock[0] = 31.0
    bodies(notification("011"))
    assert len(loads) == 2


def test_formats_that_cannot_be_read_keep_the_last_ones_and_never_fall_back_to_json() -> None:
    state = {"fail": True}

    def load() -> BankProfiles:
        if state["fail"]:
            raise OperationalError("SELECT", {}, Exception("database is locked"))
        return BankProfiles({"011": "pacs.002"}, BICS)

    bodies = BodyByBank(load, refresh_s=0)
    sender = WebhookSender([KeyPair.from_seed(b"t")], 100, 1, 0, 0, bodies=bodies)
    wanted = Notification(NOTIFICATION_ID, STEP["payment_id"], "SETTLED", "011",
                          "http://127.0.0.1:9/never", dict(STEP))  # fmt: skip
    result = sender.deliver(wanted)
    assert not result.delivered and len(result.attempts) == 1  # an attempt, recorded as such
    assert result.attempts[0].status_code is None
    assert "not built" in (result.last_error or "")
    state["fail"] = False
    assert bodies(notification("011")).content_type == "application/xml"
    state["fail"] = True  # read again (refresh_s=0), fails: the last formats are kept
    assert bodies(notification("011")).content_type == "application/xml"


def test_remittance_info_is_one_max140_text_and_notifications_carry_it() -> None:
    assert remittance_info(("Invoice 7", "June")) == "Invoice 7 June"
    assert remittance_info(()) is None
    assert remittance_info(("x" * 100, "y" * 100)) == "x" * 100 + " " + "y" * 39
    record = {"payment_id": "p", "occurred_at": NOW, "remittance_info": "Invoice 7"}
    assert payload_of(record)["remittance_info"] == "Invoice 7"
