"""Migration 0005: a ledger of one chain becomes chain 0 of many, verifies, and can go back.

The ledger of revision 0004 is written here as the code of that revision wrote it:
one chain, its head in ``ledger_chain_head`` row 1, a close recording that head.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, func, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from consumers.settlement import build_legs
from engine.audit.chain import verify
from engine.audit.runs import FinishedRun, record_run
from engine.audit.windows import Window, close_window, window_report
from engine.ids import SWITCH_ID_MAX_CHARS
from engine.ledger.database import alembic_config, make_engine, upgrade
from engine.ledger.models import HandledEvent, Posting, SettlementWindow, SettlementWindowPosition
from engine.ledger.positions import read_banks
from engine.ledger.postings import entry_hash, write_postings
from engine.ledger.reference import load_reference_data, read_file
from tests.factories import AMINA, KARIM, REFERENCE_FILE, YOUSSEF, authorization, payment
from tests.integration.test_audit_tamper import build_ledger
from tests.unit.test_postings import draft, heads, write_with_positions

pytestmark = pytest.mark.integration

DAY1 = Window(datetime(2026, 11, 24, tzinfo=UTC))
OLD_HEAD = text("SELECT seq, head_hash FROM ledger_chain_head WHERE id = 1")
AMOUNTS = (1_000, 2_000, 4_000)  # the third one is settled after day 1 closed


def old_posting(conn: Connection, number: int, amount_minor: int, occurred_at: datetime) -> None:
    """A payment's posting as revision 0004 appended it to its single chain."""
    seq, prev = conn.execute(OLD_HEAD).one()
    pid, window = f"old-{number}", occurred_at.date().isoformat()
    posting = {"posting_id": pid, "payment_id": pid, "kind": "PAYMENT",
               "occurred_at": occurred_at, "settlement_window": window}  # fmt: skip
    conn.execute(insert(Posting), [posting])
    for leg in build_legs(AMINA[1], KARIM[1], "007", "011", amount_minor, 0, "MAD"):
        seq += 1
        digest = entry_hash(prev, seq, pid, pid, "PAYMENT", occurred_at, window,
                            leg.account_number, leg.amount_minor, "MAD")  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO ledger_entries (posting_id, account_number, amount_minor, currency,"
                " chain_seq, prev_hash, entry_hash) VALUES (:p, :a, :m, 'MAD', :s, :prev, :h)"
            ),
            {"p": pid, "a": leg.account_number, "m": leg.amount_minor, "s": seq, "prev": prev,
             "h": digest},
        )  # fmt: skip
        conn.execute(
            text("UPDATE accounts SET balance_minor = balance_minor + :m WHERE number = :a"),
            {"m": leg.amount_minor, "a": leg.account_number},
        )
        prev = digest
    conn.execute(
        text("UPDATE ledger_chain_head SET seq = :s, head_hash = :h WHERE id = 1"),
        {"s": seq, "h": prev},
    )


def old_close(conn: Connection, window: Window, debits_007: int) -> None:
    """Day 1 closed as revision 0004 closed it: chain head and positions in the window row."""
    seq, head = conn.execute(OLD_HEAD).one()
    conn.execute(insert(SettlementWindow), [{
        "label": window.label, "window_start": window.start, "window_end": window.end,
        "window_hours": 24, "closed_at": window.end, "chain_seq": seq, "chain_hash": head,
        "postings": 2, "event_id": "e-day1", "published_at": None,
    }])  # fmt: skip
    conn.execute(insert(SettlementWindowPosition), [
        {"label": window.label, "bank_code": "007", "currency": "MAD",
         "gross_debits_minor": debits_007, "gross_credits_minor": 0, "net_minor": -debits_007},
        {"label": window.label, "bank_code": "011", "currency": "MAD",
         "gross_debits_minor": 0, "gross_credits_minor": debits_007, "net_minor": debits_007},
    ])  # fmt: skip


@pytest.fixture
def ledger_0004(database_url: str) -> Any:
    """A ledger at 0004: two payments, day 1 closed, then a late payment of day 1."""
    data = copy.deepcopy(read_file(REFERENCE_FILE))
    for account in data["accounts"]:
        account["opening_balance_minor"] = 0  # 0004's code would post them: none here
        if account["number"] == AMINA[1]:  # the payer of every payment here: never overdrawn
            account["overdraft_limit_minor"] = 10_000_000
    # Today's loader writes today's columns: load at the head, then go back to 0004.
    upgrade(database_url)
    engine = make_engine(database_url)
    load_reference_data(engine, data)
    engine.dispose()
    command.downgrade(alembic_config(database_url), "0004")
    engine = make_engine(database_url)
    at = DAY1.start + timedelta(hours=10)
    with engine.begin() as conn:
        old_posting(conn, 1, AMOUNTS[0], at)
        old_posting(conn, 2, AMOUNTS[1], at + timedelta(minutes=1))
        old_close(conn, DAY1, AMOUNTS[0] + AMOUNTS[1])
        old_posting(conn, 3, AMOUNTS[2], at + timedelta(hours=1))
    yield database_url, engine
    engine.dispose()


def chain0_head(conn: Connection) -> tuple[int, str]:
    return heads(conn)[0]


def test_a_ledger_of_one_chain_upgrades_to_chain_0_and_verifies_as_before(ledger_0004):
    url, engine = ledger_0004
    with engine.connect() as conn:
        old_head = tuple(conn.execute(text("SELECT seq, head_hash FROM ledger_chain_head")).one())

    upgrade(url)

    with engine.connect() as conn:
        assert heads(conn) == {0: old_head}
        assert conn.execute(text("SELECT DISTINCT chain_id FROM ledger_entries")).all() == [(0,)]
        recorded = conn.execute(
            text("SELECT label, chain_id, seq FROM settlement_window_chain_heads")
        ).all()
        assert [tuple(r) for r in recorded] == [(DAY1.label, 0, 8)]
        report = verify(conn)
        assert report.ok, report.sections()
        assert (report.walk.entries, report.anchors_checked, report.windows_checked) == (12, 1, 1)
        day1 = window_report(conn, DAY1)
        assert day1.carried_out_postings == 1 and not day1.mismatches()
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET amount_minor = 0"))


def test_after_the_upgrade_chain_0_goes_on_and_other_chains_start(ledger_0004):
    url, engine = ledger_0004
    upgrade(url)
    day2 = DAY1.next()
    at = day2.start + timedelta(hours=9)
    with engine.begin() as conn:
        write_with_positions(conn, [draft(0, occurred_at=at), draft(1, occurred_at=at)])
    close_window(engine, day2, day2.end)
    with engine.connect() as conn:
        assert heads(conn)[0][0] == 12 + 4 and heads(conn)[1][0] == 4
        report = verify(conn)
        assert report.ok, report.sections()
        assert report.anchors_checked == 1 + 2  # day 1: chain 0; day 2: chains 0 and 1
        carried = window_report(conn, day2).lines
        assert sum(x.carried_in_postings for x in carried) == 2  # the late payment of day 1
    with pytest.raises(RuntimeError, match="chains other than 0"):
        command.downgrade(alembic_config(url), "0004")
    # Refused at 0005: nothing of it was undone. (Alembic commits each step on SQLite, so
    # later revisions may be undone there: upgrading again brings them back.)
    upgrade(url)
    with engine.connect() as conn:
        assert heads(conn)[1][0] == 4
        assert verify(conn).ok


def test_a_ledger_still_on_chain_0_alone_downgrades_and_upgrades_again(ledger_0004):
    url, engine = ledger_0004
    upgrade(url)
    with engine.begin() as conn:
        write_postings(conn, [draft(0, occurred_at=DAY1.next().start)])
        head = chain0_head(conn)

    command.downgrade(alembic_config(url), "0004")

    engine.dispose()
    schema = inspect(engine)
    assert "chain_id" not in {c["name"] for c in schema.get_columns("ledger_entries")}
    assert "settlement_window_chain_heads" not in schema.get_table_names()
    with engine.connect() as conn:
        old = conn.execute(text("SELECT id, seq, head_hash FROM ledger_chain_head")).one()
        assert tuple(old) == (1, *head)
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries"))

    upgrade(url)

    engine.dispose()
    with engine.connect() as conn:
        assert chain0_head(conn) == head
        assert verify(conn).ok
        entries = conn.execute(select(func.count()).select_from(text("ledger_entries")))
        assert entries.scalar_one() == 12 + 4


# -- 0009: ids per bank ---------------------------------------------------------------------


def id_length(engine: Any, table: str, column: str) -> int | None:
    engine.dispose()
    (found,) = [c for c in inspect(engine).get_columns(table) if c["name"] == column]
    return getattr(found["type"], "length", None)


def handled(event_id: str) -> dict[str, Any]:
    return {"consumer": "validator", "event_id": event_id, "event_type": "PaymentInitiated",
            "payment_id": event_id, "topic": "t", "partition": 0, "offset": 0,
            "outcome": "validated", "handled_at": datetime.now(UTC)}  # fmt: skip


def test_ids_widen_to_a_banks_namespace_and_narrow_again_once_none_is_longer(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    bare, longest = "e" * 64, "ABCDEFGH:" + "e" * 64  # from before 0009, and since
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        conn.execute(insert(HandledEvent), [handled(bare), handled(longest)])
    if postgres:
        assert id_length(engine, "payments", "payment_id") == SWITCH_ID_MAX_CHARS == 73
        assert id_length(engine, "holds", "payment_id") == 73
        with pytest.raises(RuntimeError, match="cannot downgrade below 0009"):
            command.downgrade(alembic_config(database_url), "0008")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM handled_events WHERE event_id = :e"), {"e": longest})

    command.downgrade(alembic_config(database_url), "0008")

    if postgres:
        assert id_length(engine, "payments", "payment_id") == 64
        assert id_length(engine, "handled_events", "event_id") == 64
    with engine.connect() as conn:  # existing ids are never rewritten, either way
        assert bare in set(conn.execute(text("SELECT event_id FROM handled_events")).scalars())
    upgrade(database_url)
    if postgres:
        assert id_length(engine, "payment_steps", "step_id") == 73
    with engine.begin() as conn:
        conn.execute(insert(HandledEvent), [handled("011:" + "e" * 64)])
        ids = set(conn.execute(text("SELECT event_id FROM handled_events")).scalars())
    assert bare in ids and "011:" + "e" * 64 in ids
    engine.dispose()


def test_payment_iso_comes_with_0012_and_goes_with_its_downgrade(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    columns = {c["name"] for c in inspect(engine).get_columns("payment_iso")}
    assert columns == {
        "payment_id", "msg_id", "msg_name", "instr_id", "end_to_end_id", "tx_id", "uetr", "extras",
    }  # fmt: skip
    command.downgrade(alembic_config(database_url), "0011")
    assert "payment_iso" not in inspect(engine).get_table_names()
    assert "payments" in inspect(engine).get_table_names()
    upgrade(database_url)
    assert "payment_iso" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_read_side_indexes_come_with_0013_and_go_with_its_downgrade(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)

    def names() -> set[str]:
        found = inspect(engine)
        return {
            i["name"] for t in ("payments", "notifications") for i in found.get_indexes(t)
        }  # fmt: skip

    wanted = {
        "ix_payments_payer_bank_occurred", "ix_payments_payee_bank_occurred",
        "ix_notifications_created",
    }  # fmt: skip
    assert wanted <= names()
    command.downgrade(alembic_config(database_url), "0012")
    assert not wanted & names()
    upgrade(database_url)
    assert wanted <= names()
    engine.dispose()


def test_the_position_tables_come_with_0017_and_go_with_its_downgrade(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    tables = {"bank_limits", "bank_positions", "liquidity_movements"}
    assert tables <= set(inspect(engine).get_table_names())
    columns = {c["name"] for c in inspect(engine).get_columns("bank_positions")}
    assert columns == {
        "bank_code", "currency", "posted_minor", "holds_minor", "liquidity_minor", "version",
        "updated_at",
    }  # fmt: skip
    command.downgrade(alembic_config(database_url), "0016_window_lifecycle")
    assert not tables & set(inspect(engine).get_table_names())
    upgrade(database_url)
    assert tables <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_a_ledger_with_payments_upgrades_to_0017_with_its_positions(database_url):
    engine = build_ledger(database_url, [
        payment(AMINA, KARIM, 10_000), payment(KARIM, AMINA, 2_500),
        authorization(AMINA, KARIM, 4_000), payment(AMINA, YOUSSEF, 700),
    ])  # fmt: skip
    with engine.connect() as conn:
        before = {k: (r.posted_minor, r.holds_minor) for k, r in read_banks(conn).items()}
    assert before[("007", "MAD")] == (7_500, 4_000) and before[("011", "MAD")] == (-7_500, 0)

    command.downgrade(alembic_config(database_url), "0016_window_lifecycle")
    upgrade(database_url)  # the rows are rebuilt from the settlement accounts and holds
    with engine.connect() as conn:
        after = {k: (r.posted_minor, r.holds_minor) for k, r in read_banks(conn).items()}
    engine.dispose()
    assert after == before


def test_operator_actions_and_reference_versions_come_with_0014_and_go_with_its_downgrade(
    database_url,
):
    upgrade(database_url)
    engine = make_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    assert {"operator_actions", "reference_versions"} <= tables
    command.downgrade(alembic_config(database_url), "0013_read")
    tables = set(inspect(engine).get_table_names())
    assert not {"operator_actions", "reference_versions"} & tables and "payment_iso" in tables
    upgrade(database_url)
    with engine.begin() as conn:  # the append-only guard is back with the tables
        conn.execute(
            text(
                "INSERT INTO reference_versions (version, kind, item, announced_at, "
                "effective_from, action_seq) VALUES (1, 'fee', 'WEB/TRANSFER/MAD', :t, :t, 1)"
            ),
            {"t": datetime.now(UTC)},
        )
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM reference_versions"))
    engine.dispose()


def test_audit_runs_come_with_0022_and_go_with_its_downgrade(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    assert "audit_runs" in inspect(engine).get_table_names()
    command.downgrade(alembic_config(database_url), "0021_read_indexes")
    assert "audit_runs" not in inspect(engine).get_table_names()
    upgrade(database_url)  # the triggers come back with the table
    at = datetime(2026, 11, 24, tzinfo=UTC)
    record_run(engine, FinishedRun("verify", "auditor", "cli", at, at, {}, "OK"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_runs"))
    engine.dispose()
