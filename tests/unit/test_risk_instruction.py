"""The pacs.009 settlement instruction: its content, its exact amounts, its XSD."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from engine.iso.amounts import to_minor
from engine.iso.safe_xml import parse
from engine.iso.schemas import XSD_DIR, assert_valid
from engine.risk.instruction import (
    MAX_BANKS,
    PACS_009,
    NetLine,
    Parties,
    SettlementBatch,
    build_instruction,
)

EXAMPLES = 60  # random windows built and validated against the XSD (about 5 ms each)
NOW = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
DAY = date(2026, 12, 6)
PARTIES = Parties("SAKK", "BAM", {"007": "BCMAMAMC", "BAM": "BKAMMAMR"})
NS = {"p": PACS_009.namespace}
# SHA-256 of xsd/pacs.009.001.08.xsd in teghnet/iso20022 (commit 2c0e796f), as published.
OFFICIAL_XSD_SHA256 = "b4b01e4af3f47152c84edb04a7e61d33c6929d82ef9ed05e9525177ae74dcb52"


def built(batch: SettlementBatch, parties: Parties = PARTIES) -> etree._Element:
    """The instruction's root, parsed back safely and validated again from its bytes."""
    tree = parse(build_instruction(batch, parties, NOW, DAY))
    assert_valid(tree, PACS_009)
    return tree.getroot()


def text(node: etree._Element, path: str) -> str:
    found = node.xpath(path, namespaces=NS)
    assert isinstance(found, list) and found, path
    value = found[0]
    return value if isinstance(value, str) else str(value.text)


def agent(node: etree._Element, side: str) -> str:
    bic = node.xpath(f"p:{side}/p:FinInstnId/p:BICFI/text()", namespaces=NS)
    member = node.xpath(f"p:{side}/p:FinInstnId/p:ClrSysMmbId/p:MmbId/text()", namespaces=NS)
    return str((bic or member)[0])  # type: ignore[index]


def signed_lines(root: etree._Element, currency: str) -> dict[str, int]:
    """Each bank's net as the instruction moves it: + when it is the debtor."""
    lines = {}
    for tx in root.xpath("p:FICdtTrf/p:CdtTrfTxInf", namespaces=NS):  # type: ignore[union-attr]
        amount = to_minor(text(tx, "p:IntrBkSttlmAmt"), currency)
        debtor, creditor = agent(tx, "Dbtr"), agent(tx, "Cdtr")
        assert "SAKK" in (debtor, creditor) and debtor != creditor
        lines[creditor if debtor == "SAKK" else debtor] = amount if creditor == "SAKK" else -amount
    return lines


BATCH = SettlementBatch.of("2026-12-06/1", 1, "MAD", {"007": 15_000, "011": -10_001, "022": -4_999})


def test_the_xsd_is_the_official_one_unchanged_but_for_where_it_came_from() -> None:
    lines = (XSD_DIR / "pacs.009.001.08.xsd").read_bytes().splitlines(keepends=True)

    assert b"official ISO 20022 message definition pacs.009.001.08" in lines[1]
    assert b"teghnet/iso20022" in lines[1]
    original = b"".join(lines[:1] + lines[2:])
    assert hashlib.sha256(original).hexdigest() == OFFICIAL_XSD_SHA256
    schema = etree.fromstring(original)
    assert schema.get("targetNamespace") == PACS_009.namespace


def test_the_group_header_names_the_window_and_totals_what_moves() -> None:
    root = built(BATCH)

    assert text(root, "p:FICdtTrf/p:GrpHdr/p:MsgId") == BATCH.message_id
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:NbOfTxs") == "3"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:CtrlSum") == "300.00"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:TtlIntrBkSttlmAmt") == "300.00"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:TtlIntrBkSttlmAmt/@Ccy") == "MAD"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:IntrBkSttlmDt") == "2026-12-06"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:SttlmInf/p:SttlmMtd") == "CLRG"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:SttlmInf/p:ClrSys/p:Prtry") == "SRBM"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:InstdAgt/p:FinInstnId/p:BICFI") == "BKAMMAMR"
    assert text(root, "p:FICdtTrf/p:GrpHdr/p:InstgAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId") == "SAKK"


def test_a_bank_that_owes_is_debited_and_one_owed_is_credited_exactly() -> None:
    root = built(BATCH)

    assert signed_lines(root, "MAD") == {"BCMAMAMC": 15_000, "011": -10_001, "022": -4_999}
    amounts = root.xpath("//p:CdtTrfTxInf/p:IntrBkSttlmAmt/text()", namespaces=NS)
    assert amounts == ["150.00", "100.01", "49.99"]


def test_a_bank_with_a_zero_net_is_left_out() -> None:
    batch = SettlementBatch.of("w", 1, "MAD", {"007": 5, "011": -5, "030": 0})

    assert signed_lines(built(batch), "MAD") == {"BCMAMAMC": 5, "011": -5}
    assert [line.bank for line in batch.lines] == ["007", "011"]


@pytest.mark.parametrize(("currency", "text_of_7"), [("XOF", "7"), ("TND", "0.007")])
def test_amounts_use_the_currency_exponent(currency: str, text_of_7: str) -> None:
    root = built(SettlementBatch.of("w", 1, currency, {"007": 7, "011": -7}))

    assert root.xpath("//p:CdtTrfTxInf/p:IntrBkSttlmAmt/text()", namespaces=NS) == [text_of_7] * 2


def test_each_window_currency_and_attempt_has_its_own_message_id() -> None:
    ids = {
        SettlementBatch.of(w, a, c, {"007": 1, "011": -1}).message_id
        for w in ("w1", "w2")
        for a in (1, 2)
        for c in ("MAD", "EUR")
    }

    assert len(ids) == 8
    assert all(len(i) <= 35 for i in ids)
    assert SettlementBatch.of("w1", 1, "MAD", {"007": 2, "011": -2}).message_id == (
        SettlementBatch.of("w1", 1, "MAD", {"007": 1, "011": -1}).message_id
    )


def test_each_line_has_its_own_end_to_end_id() -> None:
    root = built(BATCH)

    ids = root.xpath("//p:PmtId/p:EndToEndId/text()", namespaces=NS)
    assert ids == [BATCH.end_to_end_id(b) for b in ("007", "011", "022")]
    assert len(set(ids)) == 3  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("w", 1, "MAD", (NetLine("007", 5), NetLine("011", -4))), "sum to 1"),
        (("w", 1, "MAD", (NetLine("007", 5), NetLine("007", -5))), "appears twice"),
        (("w", 1, "XXX", (NetLine("007", 5), NetLine("011", -5))), "currency"),
        (("w", 0, "MAD", (NetLine("007", 5), NetLine("011", -5))), "attempt"),
        (("w", 1, "MAD", (NetLine("007", 10**18), NetLine("011", -(10**18)))), "18 digits"),
    ],
)
def test_a_batch_that_breaks_an_invariant_is_refused(args: tuple, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        SettlementBatch(*args)


def test_too_many_banks_are_refused() -> None:
    nets = {f"B{i}": 0 for i in range(MAX_BANKS + 1)}

    with pytest.raises(ValueError, match="banks"):
        SettlementBatch.of("w", 1, "MAD", nets)


def test_a_window_where_every_net_is_zero_needs_no_instruction() -> None:
    with pytest.raises(ValueError, match="nothing to instruct"):
        build_instruction(SettlementBatch.of("w", 1, "MAD", {"007": 0}), PARTIES, NOW, DAY)


def test_the_switch_cannot_also_be_a_bank_of_the_window() -> None:
    batch = SettlementBatch.of("w", 1, "MAD", {"SAKK": 5, "011": -5})

    with pytest.raises(ValueError, match="switch"):
        build_instruction(batch, PARTIES, NOW, DAY)


def test_a_clearing_system_name_must_fit_max35() -> None:
    with pytest.raises(ValueError, match="clearing system"):
        Parties("SAKK", "BAM", {}, clearing_system="X" * 36)


@st.composite
def windows(draw: st.DrawFn) -> dict[str, int]:
    """Random nets of 2..12 banks that sum to zero, some of them zero."""
    count = draw(st.integers(2, 12))
    nets = draw(st.lists(st.integers(-(10**12), 10**12), min_size=count - 1, max_size=count - 1))
    nets.append(-sum(nets))
    return {f"B{i:02d}": net for i, net in enumerate(nets)}


@settings(max_examples=EXAMPLES, deadline=None)
@given(nets=windows(), currency=st.sampled_from(["MAD", "XOF", "TND"]))
def test_any_window_becomes_a_valid_instruction_moving_exactly_its_nets(
    nets: dict[str, int], currency: str
) -> None:
    batch = SettlementBatch.of("w", 1, currency, nets)
    if not batch.lines:
        return

    root = built(batch)

    assert signed_lines(root, currency) == {b: n for b, n in nets.items() if n != 0}
    total = sum(abs(n) for n in nets.values())
    assert to_minor(text(root, "p:FICdtTrf/p:GrpHdr/p:TtlIntrBkSttlmAmt"), currency) == total
