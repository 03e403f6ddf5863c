"""Real pacs.008.001.08 sample messages (tests/fixtures/iso/public) read against the official
XSD, every problem of a bad transaction reported, and the bank's ids echoed in the answer."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from consumers.notification import payload_of
from engine.iso.directory import BankDirectory
from engine.iso.pacs002 import build_pacs002
from engine.iso.pacs004 import build_pacs004
from engine.iso.reader import read_message
from engine.iso.safe_xml import parse
from engine.iso.schemas import PACS_002, PACS_004, assert_valid
from tests.factories import AMINA, KARIM

PUBLIC = Path(__file__).parents[1] / "fixtures" / "iso" / "public"
SAMPLES = sorted(PUBLIC.glob("*.xml"))
DIRECTORY = BankDirectory.from_rows([("007", "BCMAMAMC"), ("011", "BMCEMAMC"), ("310", None)])
NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
_CREATED = re.compile(rb"<CreDtTm>[^<]*</CreDtTm>")


def sample(path: Path, created: str = "2026-11-26T09:00:00Z") -> bytes:
    """The published file, its CreDtTm set to ``created`` (see the fixtures' README)."""
    return _CREATED.sub(f"<CreDtTm>{created}</CreDtTm>".encode(), path.read_bytes(), count=1)


def test_there_are_public_samples_from_several_sources() -> None:
    assert len(SAMPLES) >= 3
    readme = (PUBLIC / "README.md").read_text()
    for path in SAMPLES:
        assert f"`{path.name}`" in readme


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_each_public_sample_is_accepted_with_its_ids_and_extras(path: Path) -> None:
    parsed = read_message(sample(path), DIRECTORY)
    assert parsed.issues == []
    [mapped] = parsed.transactions
    p = mapped.payment
    assert (p["payer_bank"], p["payer_account"]) == AMINA
    assert (p["payee_bank"], p["payee_account"]) == KARIM
    assert p["iso"]["msg_name"] == "pacs.008.001.08"
    assert p["iso"]["msg_id"] == parsed.message_id
    assert p["iso"]["end_to_end_id"] == p["bank_reference"]
    assert re.fullmatch(r"[0-9a-f-]{36}", p["iso"]["uetr"])
    extras = json.loads(p["iso_extras"])
    assert "Dbtr" in extras and "Cdtr" in extras


def test_postal_addresses_and_structured_remittance_are_kept_as_extras() -> None:
    parsed = read_message(sample(PUBLIC / "fedwire_scenario2_step1.xml"), DIRECTORY)
    p = parsed.transactions[0].payment
    assert p["iso"] == {
        "msg_id": "20250310B1QDRCQR000002", "msg_name": "pacs.008.001.08",
        "instr_id": "Scenario02InstrId001", "end_to_end_id": "Scenario02EtoEId001",
        "tx_id": None, "uetr": "8a562c67-ca16-48ba-b074-65581be6f011",
    }  # fmt: skip
    extras = json.loads(p["iso_extras"])
    assert extras["Dbtr"]["PstlAdr"]["TwnNm"] == "Fountain Hills"
    assert extras["Cdtr"]["PstlAdr"]["Flr"] == "33"
    assert extras["RmtInf"]["Strd"]["RfrdDocInf"]["Nb"] == "INV34563"
    assert extras["InstdAmt"] == {"@Ccy": "MAD", "#": "51.74"}
    assert p["remittance_info"] is None  # no Ustrd: the structured one is an extra


def test_every_problem_of_a_transaction_is_reported_with_its_element_path() -> None:
    data = sample(PUBLIC / "fedwire_scenario2_step1.xml")
    data = data.replace(b"<Ctry>US</Ctry>", b"<Ctry>usa</Ctry>", 1)  # Dbtr/PstlAdr/Ctry
    data = data.replace(b"<ChrgBr>SLEV</ChrgBr>", b"<ChrgBr>XXXX</ChrgBr>")
    data = data.replace(b"<UETR>8a562c67", b"<UETR>NOT-A-UUID8a562c67")
    parsed = read_message(data, DIRECTORY)
    assert parsed.transactions == [] and parsed.refused == 1
    where = sorted(i.element for i in parsed.issues)
    assert where == ["ChrgBr", "Dbtr/PstlAdr/Ctry", "PmtId/UETR"], parsed.issues
    assert all(i.index == 1 and i.reference == "Scenario02EtoEId001" for i in parsed.issues)


def test_the_status_report_echoes_the_banks_ids_where_iso_20022_puts_them() -> None:
    parsed = read_message(sample(PUBLIC / "pacs008_package_core.xml"), DIRECTORY)
    record = parsed.transactions[0].payment | {"payment_id": "007:" + "a" * 36}
    payload = payload_of(record, "007")
    root = parse(build_pacs002("SETTLED", payload, NOW, "007", {"007": "BCMAMAMC"})).getroot()
    assert_valid(root, PACS_002)
    ns = {"d": PACS_002.namespace}
    assert root.findtext("d:FIToFIPmtStsRpt/d:OrgnlGrpInfAndSts/d:OrgnlMsgId", None, ns) == (
        "MSG-CORE-TEST"
    )
    assert root.findtext(".//d:OrgnlGrpInfAndSts/d:OrgnlMsgNmId", None, ns) == "pacs.008.001.08"
    tx = root.find(".//d:TxInfAndSts", ns)
    assert tx.findtext("d:OrgnlEndToEndId", None, ns) == "E2E-CORE"
    assert tx.findtext("d:OrgnlTxId", None, ns) == "TX-CORE"
    assert tx.findtext("d:OrgnlUETR", None, ns) == "86d7da8e-6e41-4466-b9bb-9b41d5814d5a"


def test_the_payee_bank_is_told_only_the_ids_that_travel_end_to_end() -> None:
    parsed = read_message(sample(PUBLIC / "fedwire_scenario2_step1.xml"), DIRECTORY)
    record = parsed.transactions[0].payment
    assert set(payload_of(record, "007")["iso"]) == {
        "msg_id", "msg_name", "instr_id", "end_to_end_id", "uetr",
    }  # fmt: skip
    assert set(payload_of(record, "011")["iso"]) == {"end_to_end_id", "uetr"}


def test_a_return_echoes_the_original_ids_too() -> None:
    parsed = read_message(sample(PUBLIC / "pacs008_package_core.xml"), DIRECTORY)
    p = parsed.transactions[0].payment
    payload = payload_of(p | {"payment_id": "007:x"}, "007") | {
        "step": "RETURN", "bank_reference": "RET-1", "amount_minor": 1_000,
        "reason_code": "AC04", "settlement_window": "2026-11-26",
    }  # fmt: skip
    root = parse(build_pacs004(payload, NOW, "007", {})).getroot()
    assert_valid(root, PACS_004)
    ns = {"d": PACS_004.namespace}
    assert root.findtext("d:PmtRtr/d:OrgnlGrpInf/d:OrgnlMsgId", None, ns) == "MSG-CORE-TEST"
    tx = root.find(".//d:TxInf", ns)
    assert [tx.findtext(f"d:{n}", None, ns) for n in ("RtrId", "OrgnlEndToEndId", "OrgnlTxId")] == [
        "RET-1", "E2E-CORE", "TX-CORE",
    ]  # fmt: skip
    assert tx.findtext("d:OrgnlUETR", None, ns) == "86d7da8e-6e41-4466-b9bb-9b41d5814d5a"


def test_a_payers_id_that_xml_cannot_carry_is_left_out_of_the_payees_report() -> None:
    parsed = read_message(sample(PUBLIC / "pacs008_package_core.xml"), DIRECTORY)
    p = parsed.transactions[0].payment | {"payment_id": "007:x"}
    p["iso"] = p["iso"] | {"tx_id": "TX\x01CORE", "end_to_end_id": " ", "uetr": "not-a-uuid"}
    root = parse(build_pacs002("SETTLED", payload_of(p, "011"), NOW, "011", {})).getroot()
    assert_valid(root, PACS_002)
    tx = root.find(".//{*}TxInfAndSts")
    assert [etree.QName(c).localname for c in tx][:2] == ["OrgnlEndToEndId", "TxSts"]
    assert tx.findtext("{*}OrgnlEndToEndId") == "E2E-CORE"  # the bank reference instead


def test_a_reference_or_remittance_xml_cannot_carry_never_stops_a_report() -> None:
    payload = {
        "payment_id": "007:0f8fad5b-d9cb-469f-a165-70867728950e", "bank_reference": "REF\x02",
        "payer_bank": "007", "payee_bank": "011", "amount_minor": 100, "currency": "MAD",
        "remittance_info": "Invoice\x0b 7",
    }  # fmt: skip
    root = parse(build_pacs002("SETTLED", payload, NOW, "011", {})).getroot()
    assert_valid(root, PACS_002)
    assert root.findtext(".//{*}OrgnlEndToEndId") is None
    assert root.findtext(".//{*}RmtInf/{*}Ustrd") == "Invoice 7"
    returned = build_pacs004(payload | {"step": "RETURN", "reason_code": "AC04"}, NOW, "007", {})
    assert_valid(parse(returned).getroot(), PACS_004)
