"""Generated pacs.002 and camt.053 messages: their content, and their XSDs accept them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from lxml import etree

from engine.iso.entries import Entry
from engine.iso.pacs002 import build_pacs002
from engine.iso.safe_xml import parse
from engine.iso.schemas import CAMT_053, PACS_002, PACS_004, XSD_DIR, Definition, assert_valid
from engine.iso.statement import Statement, build_camt053

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
BICS = {"007": "BCMAMAMC", "011": "BMCEMAMC"}
PAYMENT_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
ACCOUNT = "007780000000000000000111"
PAYLOAD: dict[str, object] = {
    "payment_id": PAYMENT_ID, "bank_reference": "E2E-1",
    "payer_bank": "007", "payee_bank": "011", "amount_minor": 123_456, "currency": "MAD",
    "settlement_window": "2026-11-26",
}  # fmt: skip


def valid(document: bytes, definition: Definition) -> etree._Element:
    """The document, once parsed safely and validated again from its bytes."""
    tree = parse(document)
    assert_valid(tree, definition)
    return tree.getroot()


def text(root: etree._Element, path: str, definition: Definition) -> list[str]:
    return [e.text for e in root.iterfind(path, {"d": definition.namespace})]


def test_a_settled_payment_is_reported_acsc_with_its_original_ids() -> None:
    root = valid(build_pacs002("SETTLED", PAYLOAD, NOW, "011", BICS), PACS_002)
    tx = ".//d:TxInfAndSts/d:"
    assert text(root, tx + "TxSts", PACS_002) == ["ACSC"]
    assert text(root, tx + "OrgnlEndToEndId", PACS_002) == ["E2E-1"]
    assert text(root, tx + "OrgnlTxId", PACS_002) == ["0f8fad5bd9cb469fa16570867728950e"]
    assert text(root, tx + "FctvIntrBkSttlmDt/d:Dt", PACS_002) == ["2026-11-26"]
    assert text(root, tx + "OrgnlTxRef/d:IntrBkSttlmAmt", PACS_002) == ["1234.56"]
    assert text(root, ".//d:GrpHdr/d:InstdAgt/d:FinInstnId/d:BICFI", PACS_002) == ["BMCEMAMC"]
    assert not text(root, tx + "StsRsnInf/d:Rsn/d:Cd", PACS_002)


@pytest.mark.parametrize("outcome", ["REJECTED", "FAILED"])
def test_a_refused_payment_is_reported_rjct_with_its_reason(outcome: str) -> None:
    payload = PAYLOAD | {"reason_code": "AM04", "reason_message": "insufficient funds " * 10}
    root = valid(build_pacs002(outcome, payload, NOW, "007", {}), PACS_002)
    assert text(root, ".//d:TxSts", PACS_002) == ["RJCT"]
    assert text(root, ".//d:StsRsnInf/d:Rsn/d:Cd", PACS_002) == ["AM04"]
    [info] = text(root, ".//d:StsRsnInf/d:AddtlInf", PACS_002)
    assert info.startswith("insufficient funds") and len(info) <= 105
    assert text(root, ".//d:GrpHdr/d:InstdAgt/d:FinInstnId/d:ClrSysMmbId/d:MmbId", PACS_002) == [
        "007"
    ]


def test_the_same_outcome_gets_the_same_message_id() -> None:
    first, again = (build_pacs002("SETTLED", PAYLOAD, NOW, "011") for _ in range(2))
    assert first == again


def test_an_unknown_outcome_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="outcome"):
        build_pacs002("PENDING", PAYLOAD, NOW)


def test_a_statement_has_opening_entries_and_a_closing_balance_that_add_up() -> None:
    at = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    other = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    entries = [
        Entry(10, ACCOUNT, -10_500, "MAD", at, "PAYMENT", "p-1", "E2E-1", PAYMENT_ID, None),
        Entry(11, ACCOUNT, 2_000, "MAD", at, "PAYMENT", "p-2", "E2E-2", other, "Invoice 7"),
        Entry(12, ACCOUNT, 500, "MAD", at, "OPENING", "p-3", None, None, None),
    ]
    statement = Statement(ACCOUNT, "007", "MAD", date(2026, 11, 26), 100_000, entries)
    assert statement.closing_minor == 100_000 - 10_500 + 2_000 + 500
    root = valid(build_camt053(statement, NOW, BICS), CAMT_053)
    amounts = text(root, ".//d:Bal/d:Amt", CAMT_053)
    assert amounts == ["1000.00", "920.00"]
    assert text(root, ".//d:Bal/d:Tp/d:CdOrPrtry/d:Cd", CAMT_053) == ["OPBD", "CLBD"]
    assert text(root, ".//d:Ntry/d:CdtDbtInd", CAMT_053) == ["DBIT", "CRDT", "CRDT"]
    assert text(root, ".//d:Ntry//d:Refs/d:EndToEndId", CAMT_053) == ["E2E-1", "E2E-2"]
    assert text(root, ".//d:Ntry//d:TxDtls/d:RmtInf/d:Ustrd", CAMT_053) == ["Invoice 7"]
    assert text(root, ".//d:TxsSummry/d:TtlNtries/d:TtlNetNtry/d:Amt", CAMT_053) == ["80.00"]


def test_a_negative_balance_is_a_debit_balance() -> None:
    statement = Statement("007-SETTLEMENT-MAD", "007", "MAD", date(2026, 11, 26), -5_000, [])
    root = valid(build_camt053(statement, NOW), CAMT_053)
    assert text(root, ".//d:Bal/d:CdtDbtInd", CAMT_053) == ["DBIT", "DBIT"]


@pytest.mark.parametrize("definition", [PACS_002, PACS_004], ids=lambda d: d.identifier)
def test_the_answers_are_checked_against_the_official_definitions(definition: Definition) -> None:
    """The XSD Sakk validates its answers with is the ISO 20022 one, not a hand-written subset.

    ``build_pacs002``/``build_pacs004`` validate every document before it leaves, so every
    test that builds one checks it against this file.
    """
    xsd = (XSD_DIR / f"{definition.identifier}.xsd").read_bytes()
    assert b"<!--Generated by Standards Editor (build:R1.6.15) on 2019 Feb 14" in xsd
    schema = etree.fromstring(xsd)
    assert schema.get("targetNamespace") == definition.namespace
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    defined = {e.get("name") for e in schema.iterfind("xs:complexType", ns)}
    assert len(defined) > 80  # the whole definition (90 and 93 types); the subsets had 17 and 18
