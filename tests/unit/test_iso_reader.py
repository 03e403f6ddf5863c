"""Reading pacs.008 and pain.001: versions, XSD first, per-transaction reports, the mapping."""

from __future__ import annotations

import pytest

from engine.iso.directory import BankDirectory
from engine.iso.errors import InvalidMessageError, UnsupportedMessageError
from engine.iso.mapping import classify
from engine.iso.reader import read_message
from tests.factories import AMINA, KARIM, VIGNETTE_DGI, YOUSSEF
from tests.fixtures.iso.messages import Tx, pacs008, pain001

DIRECTORY = BankDirectory.from_rows([("007", "BCMAMAMC"), ("011", "BMCEMAMC"), ("310", None)])


def test_a_pacs008_transaction_becomes_a_payment_initiated() -> None:
    tx = Tx("E2E-1", AMINA, KARIM, "1234.56", remittance=["Invoice 42", "March"])
    parsed = read_message(pacs008([tx], created="2026-11-26T09:30:15.123Z"), DIRECTORY)
    assert parsed.definition.identifier == "pacs.008.001.08"
    assert parsed.issues == []
    [mapped] = parsed.transactions
    p = mapped.payment
    assert (p["bank_reference"], p["amount_minor"], p["currency"]) == ("E2E-1", 123_456, "MAD")
    assert (p["payer_bank"], p["payer_account"]) == AMINA
    assert (p["payee_bank"], p["payee_account"]) == KARIM
    assert (p["channel"], p["payment_type"], p["egov_service"]) == ("WEB", "TRANSFER", None)
    assert p["occurred_at"].isoformat() == "2026-11-26T09:30:15.123000+00:00"
    assert mapped.remittance == ("Invoice 42", "March")


def test_ids_are_derived_so_the_same_file_publishes_the_same_events() -> None:
    data = pacs008([Tx("E2E-1", AMINA, KARIM)])
    first, again = (read_message(data, DIRECTORY).transactions[0].payment for _ in range(2))
    assert (first["event_id"], first["payment_id"]) == (again["event_id"], again["payment_id"])


def test_iban_member_id_and_vignette_purpose_are_mapped() -> None:
    tx = Tx("TAX-1", AMINA, VIGNETTE_DGI, "700", category="TAXS",
            purpose_proprietary="VIGNETTE", iban=True)  # fmt: skip
    p = read_message(pacs008([tx]), DIRECTORY).transactions[0].payment
    assert (p["payer_account"], p["payee_bank"]) == (AMINA[1], "310")
    assert (p["channel"], p["payment_type"], p["egov_service"]) == ("EGOV", "EGOV", "VIGNETTE")


def test_bad_transactions_are_reported_one_by_one_and_the_good_ones_kept() -> None:
    txs = [
        Tx("GOOD-1", AMINA, KARIM, "0.01"),
        Tx("TOO-PRECISE", AMINA, KARIM, "1.005"),
        Tx("UNKNOWN-BIC", AMINA, KARIM, payee_bic="XXXXMAMC"),
        Tx("BAD-XSD", AMINA, KARIM, "12,50"),
        Tx("GOOD-2", YOUSSEF, KARIM, "9999999999999.99"),
    ]
    parsed = read_message(pacs008(txs), DIRECTORY)
    assert [t.payment["bank_reference"] for t in parsed.transactions] == ["GOOD-1", "GOOD-2"]
    assert [t.payment["amount_minor"] for t in parsed.transactions] == [1, 999_999_999_999_999]
    issues = {i.reference: i for i in parsed.issues}
    assert issues["TOO-PRECISE"].element == "IntrBkSttlmAmt"
    assert "3 decimals; MAD allows 2" in issues["TOO-PRECISE"].reason
    assert issues["TOO-PRECISE"].label == "CdtTrfTxInf[2]"
    assert issues["UNKNOWN-BIC"].element == "CdtrAgt/FinInstnId"
    assert "not a bank of this switch" in issues["UNKNOWN-BIC"].reason
    assert issues["BAD-XSD"].element == "IntrBkSttlmAmt"  # refused by the XSD, first
    assert issues["BAD-XSD"].index == 4
    assert "transaction 4 CdtTrfTxInf[4] (BAD-XSD): IntrBkSttlmAmt:" in str(issues["BAD-XSD"])


def test_a_pain001_bulk_file_maps_every_transaction_from_its_one_debtor() -> None:
    txs = [Tx(f"SAL-{n}", YOUSSEF, KARIM, f"{n}.00", category="SALA") for n in range(1, 4)]
    parsed = read_message(pain001(txs), DIRECTORY)
    assert parsed.definition.identifier == "pain.001.001.09"
    assert [t.label for t in parsed.transactions] == [
        "PmtInf[1]/CdtTrfTxInf[1]", "PmtInf[1]/CdtTrfTxInf[2]", "PmtInf[1]/CdtTrfTxInf[3]",
    ]  # fmt: skip
    assert {t.payment["payer_account"] for t in parsed.transactions} == {YOUSSEF[1]}
    assert [t.payment["amount_minor"] for t in parsed.transactions] == [100, 200, 300]
    assert {t.payment["payment_type"] for t in parsed.transactions} == {"TRANSFER"}


@pytest.mark.parametrize(
    ("namespace", "why"),
    [
        ("urn:iso:std:iso:20022:tech:xsd:pacs.008.001.09", "pacs.008.001.08 only"),
        ("urn:iso:std:iso:20022:tech:xsd:pacs.008.001.02", "pacs.008.001.08 only"),
        ("urn:iso:std:iso:20022:tech:xsd:camt.053.001.08", "not accepted here"),
        ("urn:example:payments", "not an ISO 20022 Document"),
    ],
)
def test_other_versions_and_namespaces_are_refused_by_name(namespace: str, why: str) -> None:
    data = pacs008([Tx("E2E-1", AMINA, KARIM)], namespace=namespace)
    with pytest.raises(UnsupportedMessageError, match=why):
        read_message(data, DIRECTORY)


def test_a_broken_group_header_refuses_the_whole_file() -> None:
    data = pacs008([Tx("E2E-1", AMINA, KARIM)]).replace(b"<MsgId>MSG-PACS-1</MsgId>", b"")
    with pytest.raises(InvalidMessageError, match="MsgId"):
        read_message(data, DIRECTORY)


def test_a_wrong_transaction_count_refuses_the_whole_file() -> None:
    data = pacs008([Tx("E2E-1", AMINA, KARIM)]).replace(b"<NbOfTxs>1<", b"<NbOfTxs>2<")
    with pytest.raises(InvalidMessageError, match="NbOfTxs says 2"):
        read_message(data, DIRECTORY)


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ((None, None, None, None), ("WEB", "TRANSFER", None)),
        (("SALA", None, None, "MOBILE"), ("MOBILE", "TRANSFER", None)),
        (("EPAY", None, None, None), ("WEB", "PURCHASE", None)),
        ((None, "GDDS", None, "POS"), ("POS", "PURCHASE", None)),
        (("TAXS", None, None, None), ("EGOV", "EGOV", "TAXS")),
        ((None, "GOVT", "VIGNETTE", "BRANCH"), ("EGOV", "EGOV", "VIGNETTE")),
        ((None, None, None, "EGOV"), ("WEB", "TRANSFER", None)),  # EGOV needs an e-gov code
        ((None, None, None, "TELEX"), ("WEB", "TRANSFER", None)),
    ],
)
def test_purpose_and_category_codes_choose_channel_type_and_service(codes, expected) -> None:  # type: ignore[no-untyped-def]
    category, purpose, proprietary, instrument = codes
    got = classify(category, purpose, proprietary, instrument, "WEB")
    assert (got.channel, got.payment_type, got.egov_service) == expected
