"""ISO 20022 files through the real flow: import, settle, report (pacs.002) and state (camt.053)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.iso.directory import BankDirectory
from engine.iso.pacs002 import build_pacs002
from engine.iso.safe_xml import parse
from engine.iso.schemas import CAMT_053, PACS_002, assert_valid
from engine.iso.statement import read_statement, statement_document
from engine.ledger.balances import balance_of
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.models import Payment, PaymentIso
from engine.ledger.reference import load_reference_data, read_file
from producers.iso_import import ImportReport, import_file
from sakk.app import TOPOLOGY
from tests.conftest import Flow
from tests.factories import AMINA, KARIM, REFERENCE_FILE, SIGNERS, YOUSSEF
from tests.fixtures.iso.messages import Tx, now_text, pacs008, pain001

pytestmark = pytest.mark.integration

EMPLOYER = ("007", "007780000000000000007777")  # loaded with 100,000.00 MAD for the bulk file
BULK_SIZE = 1_000
BULK_TIMEOUT_S = 240.0


def drained(flow: Flow, published: int) -> bool:
    with flow.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        expected, finished = expected_notifications(conn)
    return counts.terminal + counts.dead_lettered >= published and finished >= expected


def outcomes(flow: Flow) -> dict[str, tuple[str, str | None]]:
    with flow.engine.connect() as conn:
        rows = conn.execute(select(Payment.bank_reference, Payment.state, Payment.reason_code))
        return {r.bank_reference: (r.state, r.reason_code) for r in rows}


def import_bytes(flow: Flow, tmp_path: Path, data: bytes, **options: Any) -> ImportReport:
    path = tmp_path / f"file-{time.monotonic_ns()}.xml"
    path.write_bytes(data)
    directory = BankDirectory.from_ledger(flow.engine)
    return import_file(flow.settings, directory, path, signers=SIGNERS, codec=flow.codec, **options)


def notifications(flow: Flow) -> list[dict[str, Any]]:
    lines = flow.settings.notify_log_path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_pacs008_file_with_good_and_bad_transactions_goes_through_the_flow(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url)
    txs = [
        Tx("ISO-GOOD-1", AMINA, KARIM, "100.00", remittance=["Invoice 7"]),
        Tx("ISO-CENT", AMINA, KARIM, "0.01", iban=True),
        Tx("ISO-TOO-PRECISE", AMINA, KARIM, "1.005"),
        Tx("ISO-UNKNOWN-BIC", AMINA, KARIM, payee_bic="ZZZZMAMC"),
        Tx("ISO-NO-FUNDS", KARIM, AMINA, "500.00"),  # Karim has 200.00
        Tx("ISO-NO-ACCOUNT", AMINA, ("011", "011000000000000000000000"), "1.00"),
    ]
    report = import_bytes(flow, tmp_path, pacs008(txs, msg_id="PACS-MIXED-1"))
    assert len(report.published) == 4 and report.refused == 2
    assert {i.reference: i.element for i in report.issues} == {
        "ISO-TOO-PRECISE": "IntrBkSttlmAmt", "ISO-UNKNOWN-BIC": "CdtrAgt/FinInstnId",
    }  # fmt: skip
    assert report.published[0].remittance == ("Invoice 7",)
    flow.wait_until(lambda: drained(flow, 4))

    assert outcomes(flow) == {
        "ISO-GOOD-1": ("SETTLED", None), "ISO-CENT": ("SETTLED", None),
        "ISO-NO-FUNDS": ("FAILED", "AM04"), "ISO-NO-ACCOUNT": ("REJECTED", "AC01"),
    }  # fmt: skip
    with flow.engine.connect() as conn:
        assert balance_of(conn, KARIM[1]) == 20_000 + 10_000 + 1
        assert check_ledger(conn).ok
        bics = BankDirectory.load(conn).bic_of
    # Round trip: every notification the banks got, as a pacs.002, matches its transaction.
    expected_status = {"ISO-GOOD-1": "ACSC", "ISO-CENT": "ACSC", "ISO-NO-FUNDS": "RJCT",
                       "ISO-NO-ACCOUNT": "RJCT"}  # fmt: skip
    told = notifications(flow)
    assert {n["data"]["bank_reference"] for n in told} == set(expected_status)
    for n in told:
        document = build_pacs002(n["outcome"], n["data"], datetime.now(UTC),
                                 n["recipient_bank"], bics)  # fmt: skip
        root = parse(document).getroot()
        assert_valid(root, PACS_002)
        ns = {"d": PACS_002.namespace}
        reference = n["data"]["bank_reference"]
        assert root.findtext(".//d:OrgnlEndToEndId", namespaces=ns) == reference
        assert root.findtext(".//d:TxSts", namespaces=ns) == expected_status[reference]
        assert (
            root.findtext(".//d:StsRsnInf/d:Rsn/d:Cd", namespaces=ns)
            == (outcomes(flow)[reference][1])
        )


def test_atomic_refuses_the_whole_file_for_one_bad_transaction(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url, consumers=())
    txs = [Tx("ATOM-1", AMINA, KARIM), Tx("ATOM-2", AMINA, KARIM, "1.005")]
    report = import_bytes(flow, tmp_path, pacs008(txs, msg_id="PACS-ATOMIC"), atomic=True)
    assert report.published == [] and report.refused == 1
    assert "nothing published" in report.summary()


def test_a_pain001_bulk_file_of_a_thousand_transactions_is_settled(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url)
    reference = read_file(REFERENCE_FILE)
    reference["accounts"].append({"number": EMPLOYER[1], "bank": "007", "kind": "CUSTOMER",
                                  "holder": "Employer", "currency": "MAD",
                                  "opening_balance_minor": 10_000_000})  # fmt: skip
    load_reference_data(flow.engine, reference)
    payees = [KARIM, AMINA, YOUSSEF]
    txs = [
        Tx(f"SAL-{n:04d}", EMPLOYER, payees[n % 3], f"{1 + n % 50}.25", category="SALA")
        for n in range(BULK_SIZE)
    ]
    data = pain001(txs, msg_id="PAIN-BULK-1000")
    started = time.monotonic()
    report = import_bytes(flow, tmp_path, data)
    imported = time.monotonic() - started
    assert report.ok and len(report.published) == BULK_SIZE
    flow.wait_until(lambda: drained(flow, BULK_SIZE), timeout_s=BULK_TIMEOUT_S)
    settled = time.monotonic() - started
    states = outcomes(flow)
    assert sum(1 for state, _ in states.values() if state == "SETTLED") == BULK_SIZE
    print(
        f"\npain.001 bulk of {BULK_SIZE} on {database_url.split(':')[0]}: parsed, validated, "
        f"signed and published in {imported:.2f}s ({BULK_SIZE / imported:.0f} tx/s); "
        f"all settled and notified in {settled:.2f}s ({BULK_SIZE / settled:.0f} tx/s)"
    )
    total_out = sum(int(t.amount.split(".")[0]) * 100 + 25 for t in txs) + 500 * BULK_SIZE
    with flow.engine.connect() as conn:
        assert balance_of(conn, EMPLOYER[1]) == 10_000_000 - total_out
        assert check_ledger(conn).ok


def test_a_camt053_statement_adds_up_to_the_ledger_balance(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url)
    txs = [Tx("ST-1", AMINA, KARIM, "100.00"), Tx("ST-2", KARIM, AMINA, "20.00"),
           Tx("ST-3", AMINA, YOUSSEF, "1.50")]  # fmt: skip
    report = import_bytes(flow, tmp_path, pacs008(txs, msg_id="PACS-STATEMENT"))
    assert report.ok
    flow.wait_until(lambda: drained(flow, 3))
    day = datetime.now(UTC).date()
    with flow.engine.connect() as conn:
        [day] = {p.date() for p in conn.execute(select(Payment.occurred_at)).scalars()}
        ledger = balance_of(conn, AMINA[1])
    statement = read_statement(flow.engine, AMINA[1], day)
    assert statement.opening_minor == 100_000  # the opening balance, posted in 2000
    assert statement.closing_minor == statement.opening_minor + sum(
        e.amount_minor for e in statement.entries
    )
    assert statement.closing_minor == ledger == 100_000 - 10_500 + 2_000 - 650
    assert {e.bank_reference for e in statement.entries} == {"ST-1", "ST-2", "ST-3"}

    root = parse(statement_document(flow.engine, AMINA[1], day, datetime.now(UTC))).getroot()
    assert_valid(root, CAMT_053)
    ns = {"d": CAMT_053.namespace}
    balances = [b.text for b in root.iterfind(".//d:Bal/d:Amt", ns)]
    assert balances == ["1000.00", f"{ledger // 100}.{ledger % 100:02d}"]
    assert len(root.findall(".//d:Ntry", ns)) == 3


PUBLIC_SAMPLES = sorted((Path(__file__).parents[1] / "fixtures" / "iso" / "public").glob("*.xml"))


def test_public_sample_messages_settle_and_their_answers_carry_the_banks_ids(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path
) -> None:
    """Real pacs.008 samples (fixtures' README): imported as their payer bank, settled, and
    answered with a pacs.002 whose original ids are the bank's own."""
    flow = flow_factory(database_url)
    sent: dict[str, dict[str, Any]] = {}  # by EndToEndId
    for path in PUBLIC_SAMPLES:
        data = re.sub(rb"<CreDtTm>[^<]*</CreDtTm>", f"<CreDtTm>{now_text()}</CreDtTm>".encode(),
                      path.read_bytes(), count=1)  # fmt: skip
        report = import_bytes(flow, tmp_path, data)
        assert report.ok and len(report.published) == 1, report.summary()
        root = parse(data).getroot()
        ns = {"d": root.nsmap[None]}
        sent[root.findtext(".//d:PmtId/d:EndToEndId", None, ns)] = {
            "msg_id": root.findtext(".//d:GrpHdr/d:MsgId", None, ns),
            "tx_id": root.findtext(".//d:PmtId/d:TxId", None, ns),
            "uetr": root.findtext(".//d:PmtId/d:UETR", None, ns),
            "instr_id": root.findtext(".//d:PmtId/d:InstrId", None, ns),
        }
    flow.wait_until(lambda: drained(flow, len(PUBLIC_SAMPLES)))
    assert outcomes(flow) == {e2e: ("SETTLED", None) for e2e in sent}
    with flow.engine.connect() as conn:
        bics = BankDirectory.load(conn).bic_of
        kept = conn.execute(select(PaymentIso.end_to_end_id, PaymentIso.extras)).all()
    assert {row.end_to_end_id for row in kept} == set(sent)
    extras = {row.end_to_end_id: json.loads(row.extras) for row in kept}
    assert extras["Scenario02EtoEId001"]["Dbtr"]["PstlAdr"]["TwnNm"] == "Fountain Hills"
    assert extras["Scenario02EtoEId001"]["RmtInf"]["Strd"]["RfrdDocInf"]["Nb"] == "INV34563"
    ns = {"d": PACS_002.namespace}
    to_payer = [n for n in notifications(flow) if n["recipient_bank"] == "007"]
    assert len(to_payer) == len(sent)
    for n in to_payer:
        root = parse(build_pacs002(n["outcome"], n["data"], datetime.now(UTC), "007", bics))
        assert_valid(root, PACS_002)
        e2e = root.findtext(".//d:TxInfAndSts/d:OrgnlEndToEndId", None, ns)
        ids = sent[e2e]
        assert root.findtext(".//d:OrgnlGrpInfAndSts/d:OrgnlMsgId", None, ns) == ids["msg_id"]
        assert root.findtext(".//d:OrgnlGrpInfAndSts/d:OrgnlMsgNmId", None, ns) == (
            "pacs.008.001.08"
        )
        assert root.findtext(".//d:TxInfAndSts/d:OrgnlInstrId", None, ns) == ids["instr_id"]
        assert root.findtext(".//d:TxInfAndSts/d:OrgnlTxId", None, ns) == ids["tx_id"]
        assert root.findtext(".//d:TxInfAndSts/d:OrgnlUETR", None, ns) == ids["uetr"]
        assert n["data"]["iso"]["end_to_end_id"] == e2e  # and in the JSON notification
