"""camt.054 per-entry notifications and settlement windows as camt.053, against their XSDs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from engine.audit.windows import Close, PositionLine, Window, WindowReport
from engine.iso.camt054 import build_camt054
from engine.iso.entries import Entry
from engine.iso.safe_xml import parse
from engine.iso.schemas import CAMT_053, CAMT_054, Definition, assert_valid
from engine.iso.window import build_window_camt053, parse_window

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
AT = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
BICS = {"007": "BCMAMAMC", "011": "BMCEMAMC"}
PAYER, PAYEE = "007780000000000000000111", "011780000000000000000222"
PAYMENT_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
DAY = Window(datetime(2026, 11, 26, tzinfo=UTC))


def valid(document: bytes, definition: Definition) -> etree._Element:
    root = parse(document).getroot()
    assert_valid(root, definition)
    return root


def texts(root: etree._Element, path: str, definition: Definition) -> list[str | None]:
    return [e.text for e in root.iterfind(path, {"d": definition.namespace})]


def test_a_posting_becomes_one_notification_per_entry() -> None:
    entries = [
        Entry(1, PAYER, -10_000, "MAD", AT, "PAYMENT", "p", "E2E-1", PAYMENT_ID, "Invoice 7"),
        Entry(2, PAYEE, 10_000, "MAD", AT, "PAYMENT", "p", "E2E-1", PAYMENT_ID, "Invoice 7"),
        Entry(3, PAYEE, -10_000, "MAD", AT, "RETURN", "r", "E2E-1", PAYMENT_ID, None),
    ]
    bank_of = {PAYER: "007", PAYEE: "011"}
    root = valid(build_camt054(entries, NOW, bank_of, BICS), CAMT_054)
    assert texts(root, ".//d:Ntfctn/d:Acct/d:Id/d:Othr/d:Id", CAMT_054) == [PAYER, PAYEE, PAYEE]
    assert texts(root, ".//d:Ntfctn/d:Acct/d:Svcr/d:FinInstnId/d:BICFI", CAMT_054) == [
        "BCMAMAMC", "BMCEMAMC", "BMCEMAMC",
    ]  # fmt: skip
    assert texts(root, ".//d:Ntry/d:CdtDbtInd", CAMT_054) == ["DBIT", "CRDT", "DBIT"]
    assert texts(root, ".//d:Ntry/d:BkTxCd/d:Domn/d:Fmly/d:SubFmlyCd", CAMT_054) == [
        "DMCT", "DMCT", "RRTN",
    ]  # fmt: skip
    assert texts(root, ".//d:Ntry//d:RmtInf/d:Ustrd", CAMT_054) == ["Invoice 7", "Invoice 7"]
    with pytest.raises(ValueError, match="at least one"):
        build_camt054([], NOW, bank_of)


def lines() -> list[PositionLine]:
    return [
        PositionLine("007", "Attijariwafa bank", "MAD", gross_debits_minor=15_000,
                     gross_credits_minor=5_000, postings=3),
        PositionLine("011", "BMCE", "MAD", gross_debits_minor=5_000, gross_credits_minor=15_000,
                     postings=3, carried_in_postings=1),
    ]  # fmt: skip


def test_an_open_window_is_a_provisional_position_statement_per_bank() -> None:
    report = WindowReport(DAY, lines())
    root = valid(build_window_camt053(report, report.lines, NOW, BICS), CAMT_053)
    ns = CAMT_053
    assert texts(root, ".//d:Stmt/d:Acct/d:Id/d:Othr/d:Id", ns) == [
        "007-SETTLEMENT-MAD", "011-SETTLEMENT-MAD",
    ]  # fmt: skip
    assert texts(root, ".//d:Stmt/d:Bal/d:Tp/d:CdOrPrtry/d:Cd", ns) == ["OPBD", "ITBD"] * 2
    assert texts(root, ".//d:Stmt/d:Bal/d:Amt", ns) == ["0.00", "100.00"] * 2
    assert texts(root, ".//d:Stmt/d:Bal/d:CdtDbtInd", ns) == ["CRDT", "DBIT", "CRDT", "CRDT"]
    assert texts(root, ".//d:TtlCdtNtries/d:Sum", ns) == ["50.00", "150.00"]
    assert texts(root, ".//d:TtlDbtNtries/d:Sum", ns) == ["150.00", "50.00"]
    [info] = texts(root, ".//d:Stmt[2]/d:AddtlStmtInf", ns)
    assert info is not None and "OPEN (provisional)" in info and "1 carried in" in info


def test_a_closed_window_reports_closing_booked_balances() -> None:
    close = Close(DAY, NOW, {}, 3, "e-1")
    report = WindowReport(DAY, lines(), close=close)
    root = valid(build_window_camt053(report, report.lines[1:], NOW, BICS), CAMT_053)
    assert texts(root, ".//d:Stmt/d:Bal/d:Tp/d:CdOrPrtry/d:Cd", CAMT_053) == ["OPBD", "CLBD"]
    assert texts(root, ".//d:Stmt/d:Bal/d:Dt/d:DtTm", CAMT_053)[-1] == "2026-11-26T23:59:59.999Z"


def test_window_labels_name_their_length() -> None:
    assert parse_window("2026-11-26") == DAY
    assert parse_window("2026-11-26T06:00Z/6h") == Window(datetime(2026, 11, 26, 6, tzinfo=UTC), 6)
