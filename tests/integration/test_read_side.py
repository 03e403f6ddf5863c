"""The read side on both databases: paging, masking per audience, what a bank may see,
read-only snapshots and the one net-position rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select, text

import sakk.cli.payments  # noqa: F401  (each module registers its command on ``cli``)
from engine.audit.windows import Window, close_window, window_report
from engine.config import load_settings
from engine.ledger.models import DeadLetter, Notification, Payment
from engine.ledger.notifications import NotificationFilter
from engine.ledger.schemas import approve_release_schemas
from engine.read.audience import Audience
from engine.read.dead_letters import DeadLetterFilter, count_dead_letters, list_dead_letters
from engine.read.exceptions import CursorError, PaymentNotFoundError, ReadError
from engine.read.notifications import list_notifications
from engine.read.paging import MAX_PAGE
from engine.read.payments import PaymentFilter, get_payment, search_payments
from engine.read.positions import net_positions
from engine.read.reference import approved_schemas, bank_keys
from engine.read.reports import net_positions as report_net_positions
from engine.read.snapshot import snapshot
from engine.read.trace import find_payment_ids, trace_payment
from engine.serialization import read_release_schemas
from sakk.app import TOPOLOGY
from sakk.cli import cli
from tests.factories import AMINA, KARIM, RAM, VIGNETTE_DGI, YOUSSEF, payment, switch_id
from tests.integration.test_audit_tamper import build_ledger
from tests.integration.test_audit_windows import _settle_more

pytestmark = pytest.mark.integration

DAY1 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
OPERATOR, AUDITOR = Audience.operator(), Audience.auditor()
BANK_007, BANK_011 = Audience.bank("007"), Audience.bank("011")


def _payments() -> list[dict[str, Any]]:
    """Twelve payments over a day: 007<->011, within 007, and 007 to the Treasury (310)."""
    out = []
    for i in range(12):
        at = DAY1 + timedelta(hours=i, minutes=5)
        payer, payee = [(AMINA, KARIM), (KARIM, AMINA), (YOUSSEF, RAM), (YOUSSEF, VIGNETTE_DGI)][
            i % 4
        ]
        extra = {"channel": "EGOV", "payment_type": "EGOV", "egov_service": "VIGNETTE"}
        out.append(
            payment(payer, payee, 100 + i, occurred_at=at, reference=f"REF-{i}",
                    **(extra if payee == VIGNETTE_DGI else {}))
        )  # fmt: skip
    return out


@pytest.fixture
def ledger(database_url: str):  # type: ignore[no-untyped-def]
    records = _payments()
    engine = build_ledger(database_url, records)
    yield engine, records
    engine.dispose()


def _involving(records: list[dict[str, Any]], bank: str) -> set[str]:
    return {switch_id(r) for r in records if bank in (r["payer_bank"], r["payee_bank"])}


def _all_pages(engine: Engine, audience: Audience, which: PaymentFilter, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):  # bounded: twelve payments
        with snapshot(engine) as conn:
            page = search_payments(conn, audience, which, cursor, limit)
        assert len(page) <= limit
        seen += [p.payment_id for p in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("paging never ended")


def test_search_pages_round_trip_newest_first_without_gaps_or_repeats(ledger):
    engine, records = ledger
    paged = _all_pages(engine, OPERATOR, PaymentFilter(), limit=5)
    newest_first = [switch_id(r) for r in sorted(records, key=lambda r: r["occurred_at"])][::-1]
    assert paged == newest_first
    assert _all_pages(engine, OPERATOR, PaymentFilter(), limit=MAX_PAGE) == newest_first


def test_a_page_longer_than_the_maximum_and_a_foreign_cursor_are_refused(ledger):
    engine, _ = ledger
    with snapshot(engine) as conn:
        with pytest.raises(ReadError, match=str(MAX_PAGE)):
            search_payments(conn, OPERATOR, PaymentFilter(), limit=MAX_PAGE + 1)
        with pytest.raises(ReadError):
            search_payments(conn, OPERATOR, PaymentFilter(), limit=0)
        page = list_notifications(conn, OPERATOR, NotificationFilter(), limit=1)
        assert page.next_cursor is None  # no notifications in this ledger
        first = search_payments(conn, OPERATOR, PaymentFilter(), limit=1)
        assert first.next_cursor is not None
        with pytest.raises(CursorError):
            list_notifications(conn, OPERATOR, NotificationFilter(), first.next_cursor)
        with pytest.raises(CursorError):
            search_payments(conn, OPERATOR, PaymentFilter(), "not-a-cursor")


def test_search_filters_narrow_by_each_field(ledger):
    engine, records = ledger
    karim_last4 = KARIM[1][-4:]
    with snapshot(engine) as conn:

        def ids(**fields: Any) -> set[str]:
            page = search_payments(conn, AUDITOR, PaymentFilter(**fields), limit=MAX_PAGE)
            return {p.payment_id for p in page.items}

        involving_011 = {
            switch_id(r) for r in records if "011" in (r["payer_bank"], r["payee_bank"])
        }
        assert ids(bank="011") == involving_011
        assert ids(account_last4=karim_last4) == involving_011  # KARIM is 011's only account here
        assert ids(channel="EGOV") == {switch_id(r) for r in records[3::4]}
        assert ids(bank_reference="REF-2") == {switch_id(records[2])}
        assert ids(payment_id=switch_id(records[5])) == {switch_id(records[5])}
        assert ids(state="SETTLED") == {switch_id(r) for r in records}
        assert ids(state="REJECTED", reason_code="AM04") == set()
        since, until = DAY1 + timedelta(hours=2), DAY1 + timedelta(hours=4)
        assert ids(since=since, until=until) == {switch_id(records[2]), switch_id(records[3])}
    with pytest.raises(ReadError):
        PaymentFilter(account_last4="12")


def test_account_numbers_are_masked_by_audience(ledger):
    engine, records = ledger
    pid = switch_id(records[0])  # AMINA (007) -> KARIM (011)
    with snapshot(engine) as conn:
        as_operator = get_payment(conn, OPERATOR, pid)
        as_auditor = get_payment(conn, AUDITOR, pid)
        as_payer_bank = get_payment(conn, BANK_007, pid)
        as_payee_bank = get_payment(conn, BANK_011, pid)
        traced = trace_payment(conn, OPERATOR, pid, TOPOLOGY)
        traced_by_payee = trace_payment(conn, BANK_011, pid, TOPOLOGY)
    assert (as_operator.payer_account, as_operator.payee_account) == ("****0111", "****0333")
    assert (as_auditor.payer_account, as_auditor.payee_account) == (AMINA[1], KARIM[1])
    assert (as_payer_bank.payer_account, as_payer_bank.payee_account) == (AMINA[1], "****0333")
    assert (as_payee_bank.payer_account, as_payee_bank.payee_account) == ("****0111", KARIM[1])
    shown = str(traced.payment) + str(traced.sections())
    assert AMINA[1] not in shown and KARIM[1] not in shown  # entries and keys masked too
    assert traced.entries and all(e["account_number"].startswith("****") for e in traced.entries)
    assert traced_by_payee.payment["payee_account"] == KARIM[1]
    assert not traced_by_payee.entries and not traced_by_payee.events  # no ledger, no topics


def test_a_bank_gets_the_same_answer_for_another_banks_payment_as_for_a_missing_one(ledger):
    engine, records = ledger
    others = switch_id(records[2])  # YOUSSEF -> RAM: within 007, nothing of 011's
    with snapshot(engine) as conn:
        answers = []
        for pid in (others, "007:no-such-payment"):
            for read in (get_payment, partial(trace_payment, topology=TOPOLOGY)):
                with pytest.raises(PaymentNotFoundError) as caught:
                    read(conn, BANK_011, pid)
                answers.append(str(caught.value).replace(pid, "ID"))
            with pytest.raises(PaymentNotFoundError) as caught:
                find_payment_ids(conn, BANK_011, pid)
            answers.append(str(caught.value).replace(pid, "ID"))
            found = search_payments(conn, BANK_011, PaymentFilter(payment_id=pid))
            assert found.items == () and found.next_cursor is None
        assert answers[:3] == answers[3:]
        assert get_payment(conn, BANK_007, others).payment_id == others
        references = []
        for reference in ("REF-2", "NO-SUCH-REF"):
            with pytest.raises(PaymentNotFoundError) as caught:
                find_payment_ids(conn, BANK_011, bank_reference=f"007:{reference}")
            references.append(str(caught.value).replace(reference, "REF"))
        assert references[0] == references[1]
    seen = _all_pages(engine, BANK_011, PaymentFilter(), limit=2)
    assert set(seen) == {
        switch_id(r) for r in records if "011" in (r["payer_bank"], r["payee_bank"])
    }


def test_notifications_page_by_cursor_and_a_bank_sees_its_own(ledger):
    engine, records = ledger
    rows = [
        {"notification_id": f"n-{i:02d}", "payment_id": switch_id(records[i // 2]),
         "outcome": "SETTLED", "recipient_bank": ("007", "011")[i % 2], "sender": "webhook",
         "status": "FAILED", "attempts": 3, "round": 1, "payload": "{}",
         "source_event_id": f"e-{i}", "created_at": DAY1 + timedelta(minutes=i // 3),
         "last_error": "refused for account 011810000000000000000333"}
        for i in range(10)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Notification), rows)
    listed, cursor = [], None
    for _ in range(10):
        with snapshot(engine) as conn:
            page = list_notifications(conn, OPERATOR, NotificationFilter(), cursor, limit=3)
        listed += list(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [n.notification_id for n in listed] == [r["notification_id"] for r in rows]
    assert all(n.last_error == "refused for account ****0333" for n in listed)
    with snapshot(engine) as conn:
        own = list_notifications(conn, BANK_011, NotificationFilter(), limit=MAX_PAGE)
    assert {n.recipient_bank for n in own.items} == {"011"} and len(own) == 5


def test_a_snapshot_never_writes(database_url, ledger):
    engine, records = ledger
    p = Payment.__table__
    with pytest.raises(Exception), snapshot(engine) as conn:  # noqa: B017, PT011
        conn.execute(p.update().values(state="FAILED"))
        if engine.dialect.name == "sqlite":
            raise RuntimeError("SQLite allowed it; the rollback undoes it")
    with engine.connect() as conn:
        assert set(conn.execute(select(p.c.state)).scalars()) == {"SETTLED"}
    if engine.dialect.name == "postgresql":
        with snapshot(engine, timeout_ms=1_234) as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"


def test_net_positions_follow_the_effective_window_once_a_late_posting_is_carried(
    database_url, ledger
):
    engine, _ = ledger
    day1, day2 = Window(DAY1), Window(DAY1 + timedelta(days=1))
    close_window(engine, day1, DAY1 + timedelta(days=1, hours=1))
    late = payment(AMINA, KARIM, 4_242, occurred_at=DAY1 + timedelta(hours=23))
    _settle_more(engine, database_url, [late])  # business day 1, counted in day 2
    with snapshot(engine) as conn:
        for window in (day1, day2):
            by_window = {x.bank_code: x.net_minor for x in window_report(conn, window).lines}
            by_rule = {x.bank_code: x.net_minor for x in net_positions(conn, window)}
            by_report = {x.bank_code: x.net_minor for x in report_net_positions(conn, window.label)}
            assert by_window == by_rule == by_report
        assert {x.bank_code: x.net_minor for x in net_positions(conn, day2)} == {
            "007": -4_242, "011": 4_242,
        }  # fmt: skip
        total = {x.bank_code: x.net_minor for x in net_positions(conn)}
        day1_net = {x.bank_code: x.net_minor for x in net_positions(conn, day1)}
        assert total == {b: day1_net.get(b, 0) + {"007": -4_242, "011": 4_242}.get(b, 0)
                         for b in total}  # fmt: skip
        only_011 = net_positions(conn, day2, bank_code="011")
        assert [(x.bank_code, x.net_minor) for x in only_011] == [("011", 4_242)]


def test_dead_letters_page_by_cursor_for_operators_and_a_bank_reads_its_own_only(ledger):
    engine, _ = ledger
    rows = [
        {"consumer": "validator", "source_topic": "t.payments.initiated", "source_partition": 0,
         "source_offset": i, "kind": ("undecodable", "poison")[i % 2],
         "reason": f"cannot read account 0077800000000000000001{i:02d}",
         "payment_id": (None, "007:P-1", "011:P-1", "0071:P-1")[i % 4],
         "recorded_at": DAY1 + timedelta(minutes=i)}
        for i in range(7)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(DeadLetter), rows)
    offsets, cursor = [], None
    for _ in range(10):
        with snapshot(engine) as conn:
            page = list_dead_letters(conn, OPERATOR, DeadLetterFilter(), cursor, limit=3)
        offsets += [d.source_offset for d in page.items]
        assert all("****01" in d.reason and "00778" not in d.reason for d in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert offsets == list(range(7))
    with snapshot(engine) as conn:
        poison = list_dead_letters(conn, AUDITOR, DeadLetterFilter(kind="poison"), limit=MAX_PAGE)
        assert [d.source_offset for d in poison.items] == [1, 3, 5]
        assert poison.items[0].reason == rows[1]["reason"]  # an auditor reads it whole
        assert count_dead_letters(conn, OPERATOR, DeadLetterFilter(kind="poison")) == 3
        own = list_dead_letters(conn, BANK_007, DeadLetterFilter(), limit=MAX_PAGE)
        assert [d.source_offset for d in own.items] == [1, 5]  # 007:..., never 0071: nor none
        assert all("00778" not in d.reason for d in own.items)
        assert count_dead_letters(conn, BANK_007, DeadLetterFilter()) == 2
        assert list_dead_letters(conn, Audience.bank("310"), DeadLetterFilter()).items == ()


def test_reference_listings_keys_per_audience_and_the_approved_schemas(ledger):
    engine, _ = ledger
    approve_release_schemas(engine, read_release_schemas(load_settings(environ={}).schemas_dir))
    with snapshot(engine) as conn:
        every = bank_keys(conn, OPERATOR)
        own = bank_keys(conn, BANK_011)
        asked_for_another = bank_keys(conn, BANK_011, "007")
        schemas = approved_schemas(conn)
    assert {"007", "011"} <= {k.bank_code for k in every}
    assert own and {k.bank_code for k in own} == {"011"}
    assert asked_for_another == []
    assert schemas and [s.id for s in schemas] == sorted(s.id for s in schemas)
    assert "PaymentInitiated" in {s.event_type for s in schemas}


def test_sakk_payments_search_renders_pages_and_the_audiences_view(ledger, database_url, tmp_path):
    engine, records = ledger
    env = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path)}

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["payments", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    first = run("search", "--limit", "5", "--format", "json")
    cursor = first.stderr.rsplit("--after ", 1)[1].strip()
    second = run("search", "--limit", "5", "--format", "json", "--after", cursor)
    shown = json.loads(first.stdout) + json.loads(second.stdout)
    newest = sorted(records, key=lambda r: r["occurred_at"], reverse=True)
    assert [p["payment_id"] for p in shown] == [switch_id(r) for r in newest[:10]]
    assert all(p["payer_account"].startswith("****") for p in shown)
    as_bank = json.loads(run("search", "--as", "bank:011", "--format", "json").stdout)
    assert {p["payment_id"] for p in as_bank} == _involving(records, "011")
    assert AMINA[1] not in run("search").stdout  # the table masks as the JSON does
    whole = json.loads(run("show", switch_id(records[0]), "--as", "auditor").stdout)
    assert whole["payer_account"] == AMINA[1]
    refused = CliRunner().invoke(cli, ["payments", "search", "--limit", str(MAX_PAGE + 1)], env=env)
    assert refused.exit_code == 2
