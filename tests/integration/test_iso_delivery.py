"""ISO 20022 out, through the real flow: pacs.002 and pacs.004 over HTTP, camt.054, windows.

A pacs.008 file with good and bad transactions is imported; bank 011 chose ``pacs.002``
notifications in reference data, bank 007 kept JSON. Both webhooks are an HTTP server on
127.0.0.1 that checks every signature. Waits are bounded, on the ledger's state.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

from consumers.notify.signing import verify_signature
from engine.iso.build import compact_id
from engine.iso.camt054 import notification_document
from engine.iso.directory import BankDirectory
from engine.iso.safe_xml import parse
from engine.iso.schemas import CAMT_053, CAMT_054, PACS_002, PACS_004, Definition, assert_valid
from engine.iso.statement import statement_document
from engine.iso.window import window_document
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.models import Payment
from engine.ledger.reference import load_reference_data, read_file
from engine.trust.keys import KeyPair
from producers.iso_import import ImportReport, import_file
from sakk.app import TOPOLOGY
from tests.conftest import Flow
from tests.factories import AMINA, KARIM, REFERENCE_FILE, SIGNERS, step
from tests.fixtures.iso.messages import Tx, pacs008

pytestmark = pytest.mark.integration

SWITCH_KEY = KeyPair.from_seed(b"tests/switch/iso")
TRUSTED = {SWITCH_KEY.key_id: SWITCH_KEY.public}
ISO_BANK, JSON_BANK = KARIM[0], AMINA[0]  # 011 chose pacs.002; 007 kept JSON
NO_ACCOUNT = ("011", "011000000000000000000000")


@dataclass
class Received:
    bank: str
    notification_id: str
    content_type: str
    body: bytes
    signed: bool


@dataclass
class Receiver:
    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, bank: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.bank == bank]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            signed = verify_signature(TRUSTED, self.headers, body, now_s=int(time.time()))
            received = Received(self.path.rsplit("/", 1)[-1],
                                self.headers["X-Sakk-Notification-Id"],
                                self.headers["Content-Type"], body, signed)  # fmt: skip
            with receiver.lock:
                receiver.requests.append(received)
            self.send_response(200 if signed else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/bank"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def iso_flow(flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path,
             receiver: Receiver) -> Flow:  # fmt: skip
    key_file = tmp_path / "switch.pem"
    SWITCH_KEY.write(key_file)
    flow = flow_factory(database_url, notify_sender="webhook",
                        webhook_signing_key_files=str(key_file))  # fmt: skip
    reference = read_file(REFERENCE_FILE)
    for bank in reference["banks"]:
        bank["webhook_url"] = f"{receiver.base_url}/{bank['code']}"
        bank["notification_format"] = "pacs.002" if bank["code"] == ISO_BANK else "json"
    load_reference_data(flow.engine, reference)
    return flow


def import_bytes(flow: Flow, tmp_path: Path, data: bytes) -> ImportReport:
    path = tmp_path / f"file-{time.monotonic_ns()}.xml"
    path.write_bytes(data)
    return import_file(
        flow.settings,
        BankDirectory.from_ledger(flow.engine),
        path,
        signers=SIGNERS,
        codec=flow.codec,
    )


def all_delivered(flow: Flow, published: int) -> bool:
    with flow.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        expected, finished = expected_notifications(conn)
        statuses = set(conn.execute(select(NotificationRow.status)).scalars())
    return counts.terminal >= published and finished >= expected and statuses == {"DELIVERED"}


def xml(received: Received, definition: Definition) -> etree._Element:
    assert received.signed and received.content_type == "application/xml"
    root = parse(received.body).getroot()
    assert_valid(root, definition)
    return root


def find(root: etree._Element, path: str, definition: Definition) -> str | None:
    return root.findtext(path, namespaces={"d": definition.namespace})


def test_status_reports_and_a_return_reach_a_bank_that_chose_iso_20022(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    flow = iso_flow(flow_factory, database_url, tmp_path, receiver)
    txs = [
        Tx("ISO-GOOD-1", AMINA, KARIM, "100.00", remittance=["Invoice 7", "June"]),
        Tx("ISO-CENT", AMINA, KARIM, "0.01", iban=True),
        Tx("ISO-TOO-PRECISE", AMINA, KARIM, "1.005"),
        Tx("ISO-NO-FUNDS", KARIM, AMINA, "500.00"),  # Karim has 200.00
        Tx("ISO-NO-ACCOUNT", KARIM, NO_ACCOUNT, "1.00"),
    ]
    report = import_bytes(flow, tmp_path, pacs008(txs, msg_id="PACS-ISO-OUT"))
    assert len(report.published) == 4 and report.refused == 1
    ids = {p.bank_reference: p.payment_id for p in report.published}
    flow.wait_until(lambda: all_delivered(flow, 4))

    # 011 is told of both credits (payee) and of its own two refused payments (payer).
    expected = {"ISO-GOOD-1": ("ACSC", None), "ISO-CENT": ("ACSC", None),
                "ISO-NO-FUNDS": ("RJCT", "AM04"), "ISO-NO-ACCOUNT": ("RJCT", "AC01")}  # fmt: skip
    told: dict[str, tuple[str | None, str | None]] = {}
    for received in receiver.of(ISO_BANK):
        root = xml(received, PACS_002)
        reference = find(root, ".//d:OrgnlEndToEndId", PACS_002)
        assert reference is not None
        assert find(root, ".//d:OrgnlTxId", PACS_002) is None  # the file sent no TxId
        as_payer = reference in ("ISO-NO-FUNDS", "ISO-NO-ACCOUNT")  # else 011 is the payee
        original = (find(root, ".//d:OrgnlGrpInfAndSts/d:OrgnlMsgId", PACS_002),
                    find(root, ".//d:OrgnlGrpInfAndSts/d:OrgnlMsgNmId", PACS_002),
                    find(root, ".//d:TxInfAndSts/d:OrgnlInstrId", PACS_002))  # fmt: skip
        mine = ("PACS-ISO-OUT", "pacs.008.001.08", f"I-{reference}")
        assert original == (mine if as_payer else (None, None, None))
        assert find(root, ".//d:GrpHdr/d:MsgId", PACS_002) == compact_id(received.notification_id)
        assert find(root, ".//d:GrpHdr/d:InstdAgt/d:FinInstnId/d:BICFI", PACS_002) == "BMCEMAMC"
        told[reference] = (find(root, ".//d:TxSts", PACS_002),
                           find(root, ".//d:StsRsnInf/d:Rsn/d:Cd", PACS_002))  # fmt: skip
    assert told == expected
    # 007 kept JSON: told of its two settled payments, signed the same way.
    json_told = [json.loads(r.body) for r in receiver.of(JSON_BANK)]
    assert all(r.signed and r.content_type == "application/json" for r in receiver.of(JSON_BANK))
    assert {(n["data"]["bank_reference"], n["outcome"]) for n in json_told} == {
        ("ISO-GOOD-1", "SETTLED"), ("ISO-CENT", "SETTLED"),
    }  # fmt: skip

    # 011 returns the first credit: a pacs.004 to itself and JSON to 007.
    before = len(receiver.of(ISO_BANK))
    paid = {"payment_id": ids["ISO-GOOD-1"], "payer_bank": AMINA[0], "payer_account": AMINA[1],
            "occurred_at": datetime.now(UTC).replace(microsecond=0)}  # fmt: skip
    flow.publish_steps([step(paid, "RETURN", ISO_BANK, reason_code="AC04", reference="RET-1")])
    flow.wait_until(lambda: len(receiver.of(ISO_BANK)) > before and all_delivered(flow, 4))
    [returned] = receiver.of(ISO_BANK)[before:]
    root = xml(returned, PACS_004)
    assert find(root, ".//d:TxInf/d:RtrId", PACS_004) == "RET-1"
    assert find(root, ".//d:TxInf/d:OrgnlEndToEndId", PACS_004) == "ISO-GOOD-1"
    assert find(root, ".//d:TxInf/d:OrgnlTxId", PACS_004) is None  # the file sent none
    assert find(root, ".//d:OrgnlGrpInf/d:OrgnlMsgId", PACS_004) is None  # 011 is the payee
    assert find(root, ".//d:TxInf/d:RtrdIntrBkSttlmAmt", PACS_004) == "100.00"
    assert find(root, ".//d:TxInf/d:RtrRsnInf/d:Rsn/d:Cd", PACS_004) == "AC04"
    assert {json.loads(r.body)["outcome"] for r in receiver.of(JSON_BANK)} >= {"RETURN"}
    with flow.engine.connect() as conn:
        assert check_ledger(conn).ok


def test_remittance_info_travels_from_the_file_to_the_ledger_and_the_iso_reports(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    flow = iso_flow(flow_factory, database_url, tmp_path, receiver)
    txs = [Tx("RMT-1", AMINA, KARIM, "42.00", remittance=["Facture 2026-118"]),
           Tx("RMT-2", KARIM, AMINA, "10.00")]  # fmt: skip
    report = import_bytes(flow, tmp_path, pacs008(txs, msg_id="PACS-RMT"))
    assert report.ok
    flow.wait_until(lambda: all_delivered(flow, 2))
    with flow.engine.connect() as conn:
        rows = {r.bank_reference: r for r in conn.execute(select(Payment.__table__))}
    assert rows["RMT-1"].remittance_info == "Facture 2026-118"
    assert rows["RMT-2"].remittance_info is None
    day = rows["RMT-1"].occurred_at.date()

    statement = parse(statement_document(flow.engine, KARIM[1], day, datetime.now(UTC)))
    assert_valid(statement, CAMT_053)
    ns = {"d": CAMT_053.namespace}
    assert statement.getroot().findtext(".//d:Ntry//d:RmtInf/d:Ustrd", namespaces=ns) == (
        "Facture 2026-118"
    )

    # camt.054: one notification per entry of the payment's posting, each valid.
    notified = parse(notification_document(flow.engine, datetime.now(UTC),
                                           posting_id=rows["RMT-1"].posting_id))  # fmt: skip
    assert_valid(notified, CAMT_054)
    ns54 = {"d": CAMT_054.namespace}
    by_account = {
        n.findtext("d:Acct/d:Id/d:Othr/d:Id", namespaces=ns54): n
        for n in notified.getroot().iterfind(".//d:Ntfctn", ns54)
    }
    karim = by_account[KARIM[1]]
    assert karim.findtext("d:Ntry/d:CdtDbtInd", namespaces=ns54) == "CRDT"
    assert karim.findtext("d:Ntry/d:Amt", namespaces=ns54) == "42.00"
    assert karim.findtext(".//d:RmtInf/d:Ustrd", namespaces=ns54) == "Facture 2026-118"
    assert by_account[AMINA[1]].findtext("d:Ntry/d:CdtDbtInd", namespaces=ns54) == "DBIT"

    # The window's positions, per bank, as camt.053: they net to zero across banks.
    window = parse(window_document(flow.engine, rows["RMT-1"].settlement_window,
                                   datetime.now(UTC)))  # fmt: skip
    assert_valid(window, CAMT_053)
    nets = {}
    for stmt in window.getroot().iterfind(".//d:Stmt", ns):
        account = stmt.findtext("d:Acct/d:Id/d:Othr/d:Id", namespaces=ns)
        [closing] = [b for b in stmt.iterfind("d:Bal", ns)
                     if b.findtext("d:Tp/d:CdOrPrtry/d:Cd", namespaces=ns) == "ITBD"]  # fmt: skip
        sign = -1 if closing.findtext("d:CdtDbtInd", namespaces=ns) == "DBIT" else 1
        nets[account] = sign * int(closing.findtext("d:Amt", namespaces=ns).replace(".", ""))
    assert nets == {"007-SETTLEMENT-MAD": 1_000 - 4_200, "011-SETTLEMENT-MAD": 4_200 - 1_000}
    only = parse(window_document(flow.engine, rows["RMT-1"].settlement_window,
                                 datetime.now(UTC), bank=ISO_BANK))  # fmt: skip
    accounts = [s.findtext("d:Acct/d:Id/d:Othr/d:Id", namespaces=ns)
                for s in only.getroot().iterfind(".//d:Stmt", ns)]  # fmt: skip
    assert accounts == ["011-SETTLEMENT-MAD"]
