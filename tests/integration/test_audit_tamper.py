"""Tampering with the live ledger, as an attacker with database access would, is detected.

The ledgers are built by the stages' own ``BatchProcessor``s without a broker;
the replayed side is a SQLite file whatever the live database is (the default
target of ``sakk replay``), so reconcile also crosses backends here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from engine.app import build_stage
from engine.audit.chain import parse_anchor, verify
from engine.audit.reconcile import reconcile
from engine.audit.windows import Window, close_window
from engine.config import Settings, load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import LedgerEntry, Payment
from engine.ledger.postings import entry_hash
from engine.ledger.reference import load_reference_data, read_file
from engine.runtime import BatchProcessor, RawMessage
from engine.serialization import AvroCodec, SchemaRegistry
from tests.factories import AMINA, KARIM, RAM, REFERENCE_FILE, YOUSSEF, payment, signed

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def build_ledger(url: str, records: list[dict[str, Any]]) -> Engine:
    """A ledger fed ``records`` through the validator and settlement stages, in one partition."""
    settings: Settings = load_settings(environ={}, database_url=url, topic_prefix="tamper")
    upgrade(url)
    engine = make_engine(url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    codec = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir))
    validator = BatchProcessor(build_stage("validator", settings), engine, codec, settings)
    settlement = BatchProcessor(build_stage("settlement", settings), engine, codec, settings)
    for start in range(0, len(records), 50):
        batch = records[start : start + 50]
        raw = [initiated(settings, codec, 0, start + i, r) for i, r in enumerate(batch)]
        result = validator.process(raw)
        validated = [
            RawMessage(m.topic, 0, start + i, m.key, m.value, raw[0].timestamp_ms)
            for i, m in enumerate(result.outgoing)
            if m.topic == settings.topic("validated")
        ]
        settlement.process(validated)
    return engine


def initiated(
    settings: Settings, codec: AvroCodec, partition: int, offset: int, record: dict[str, Any]
) -> RawMessage:
    """A PaymentInitiated record as the validator reads it, signed by its payer's bank."""
    topic = settings.topic("initiated")
    key, value = record["payer_account"].encode(), codec.encode("PaymentInitiated", record)
    return RawMessage(
        topic, partition, offset, key, value, int(record["occurred_at"].timestamp() * 1000),
        headers=signed(topic, key, value, record["payer_bank"]),
    )  # fmt: skip


def records() -> list[dict[str, Any]]:
    out = [
        payment(AMINA, KARIM, 1_000 + i, occurred_at=BASE + timedelta(minutes=i)) for i in range(40)
    ]
    out += [
        payment(
            YOUSSEF, RAM, 500 + i, payment_type="PURCHASE", occurred_at=BASE + timedelta(minutes=i)
        )
        for i in range(20)
    ]
    return out


@pytest.fixture
def ledgers(database_url: str, tmp_path: Any):  # type: ignore[no-untyped-def]
    data = records()
    live = build_ledger(database_url, data)
    replayed = build_ledger(f"sqlite:///{tmp_path / 'replayed.db'}", data)
    yield live, replayed
    live.dispose()
    replayed.dispose()


def drop_append_only_guard(conn: Any) -> None:
    """What an attacker with database access does first."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER ledger_entries_no_update"))
        conn.execute(text("DROP TRIGGER ledger_entries_no_delete"))
    else:
        conn.execute(text("DROP TRIGGER ledger_entries_append_only ON ledger_entries"))


def payee_entry(conn: Any, number: int = 7) -> Any:
    """The entry crediting Karim in the ``number``-th settled payment."""
    e, p = LedgerEntry.__table__, Payment.__table__
    posting = conn.execute(
        select(p.c.posting_id)
        .where(p.c.state == "SETTLED", p.c.payee_account == KARIM[1])
        .order_by(p.c.occurred_at)
        .offset(number)
        .limit(1)
    ).scalar_one()
    return conn.execute(
        select(e).where(e.c.posting_id == posting, e.c.account_number == KARIM[1])
    ).one()


def shift_balance(conn: Any, account: str, delta: int) -> None:
    """A careful attacker keeps the balance equal to the entries."""
    conn.execute(
        text("UPDATE accounts SET balance_minor = balance_minor + :d WHERE number = :n"),
        {"d": delta, "n": account},
    )


def test_an_honest_ledger_verifies_and_reconciles(ledgers):
    live, replayed = ledgers
    with live.connect() as conn:
        assert verify(conn).ok
    assert reconcile(live, replayed).ok


def test_altered_amount_is_named_by_verify_and_found_by_reconcile(ledgers):
    live, replayed = ledgers
    with live.begin() as conn:
        drop_append_only_guard(conn)
        target = payee_entry(conn)
        conn.execute(
            text("UPDATE ledger_entries SET amount_minor = amount_minor + 10000 WHERE id = :i"),
            {"i": target.id},
        )
        shift_balance(conn, KARIM[1], 10_000)

    with live.connect() as conn:
        report = verify(conn)
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.chain_seq == target.chain_seq
    assert "content altered" in report.first_break.problem
    assert len(report.walk.breaks) == 1  # the link to the next entry still holds: one entry named
    assert any(target.posting_id in v for v in report.ledger.violations)  # no longer sums to zero
    result = reconcile(live, replayed)
    assert {d["posting_id"] for d in result.postings} == {target.posting_id}
    assert any(b["account_number"] == KARIM[1] for b in result.balances)


def test_deleted_entry_is_named_by_verify_and_found_by_reconcile(ledgers):
    live, replayed = ledgers
    with live.begin() as conn:
        drop_append_only_guard(conn)
        target = payee_entry(conn)
        conn.execute(text("DELETE FROM ledger_entries WHERE id = :i"), {"i": target.id})
        shift_balance(conn, KARIM[1], -target.amount_minor)

    with live.connect() as conn:
        report = verify(conn)
    assert report.first_break is not None
    assert report.first_break.chain_seq == target.chain_seq + 1
    assert (
        f"#{target.chain_seq}" in report.first_break.problem
        and "missing" in report.first_break.problem
    )
    result = reconcile(live, replayed)
    assert [(d["side"], d["account_number"]) for d in result.postings] == [
        ("replay only", KARIM[1])
    ]


def test_inserted_entry_is_named_by_verify_and_found_by_reconcile(ledgers):
    live, replayed = ledgers
    with live.begin() as conn:
        target = payee_entry(conn)
        top = conn.execute(select(func.max(LedgerEntry.chain_seq))).scalar_one()
        # Two legs, so the posting still sums to zero; balances follow; no hash can be right.
        for seq, (account, amount) in enumerate(((KARIM[1], 5_000), (AMINA[1], -5_000)), top + 1):
            conn.execute(
                text(
                    "INSERT INTO ledger_entries (posting_id, account_number, amount_minor, "
                    "currency, chain_seq, prev_hash, entry_hash) "
                    "VALUES (:p, :a, :m, 'MAD', :s, :h, :h)"
                ),
                {"p": target.posting_id, "a": account, "m": amount, "s": seq, "h": "f" * 64},
            )
            shift_balance(conn, account, amount)

    with live.connect() as conn:
        report = verify(conn)
    assert report.first_break is not None and report.first_break.chain_seq == top + 1
    assert not report.ledger.violations  # double entry alone would not have seen it
    result = reconcile(live, replayed)
    assert {(d["side"], d["account_number"]) for d in result.postings} == {
        ("live only", KARIM[1]),
        ("live only", AMINA[1]),
    }


def test_forged_posting_with_a_correct_chain_is_found_by_reconcile(ledgers):
    """Correctly chained appends are what the engine itself writes: only a replay can tell."""
    live, replayed = ledgers
    with live.begin() as conn:
        seq, prev = conn.execute(text("SELECT seq, head_hash FROM ledger_chain_head")).one()
        at = BASE + timedelta(hours=1)
        conn.execute(
            text("INSERT INTO postings VALUES ('forged', 'forged', 'PAYMENT', :t, '2026-11-25')"),
            {"t": at},
        )
        for account, amount in ((KARIM[1], 9_999), (AMINA[1], -9_999)):
            seq += 1
            digest = entry_hash(
                prev, seq, "forged", "forged", "PAYMENT", at, "2026-11-25", account, amount, "MAD"
            )
            conn.execute(
                text(
                    "INSERT INTO ledger_entries (posting_id, account_number, amount_minor, "
                    "currency, chain_seq, prev_hash, entry_hash) "
                    "VALUES ('forged', :a, :m, 'MAD', :s, :p, :h)"
                ),
                {"a": account, "m": amount, "s": seq, "p": prev, "h": digest},
            )
            shift_balance(conn, account, amount)
            prev = digest
        conn.execute(
            text("UPDATE ledger_chain_head SET seq = :s, head_hash = :h"), {"s": seq, "h": prev}
        )

    with live.connect() as conn:
        assert verify(conn).ok
    result = reconcile(live, replayed)
    assert [o["posting_id"] for o in result.orphan_postings] == ["forged"]
    assert {b["account_number"] for b in result.balances} == {KARIM[1], AMINA[1]}


def test_rewritten_chain_is_caught_by_an_anchor_taken_before(ledgers):
    live, replayed = ledgers
    close_window(live, Window.containing(BASE), datetime.now(UTC), early=True)
    with live.connect() as conn:
        head = verify(conn).walk
    anchor = parse_anchor(f"{head.last_seq}:{head.last_hash}")
    with live.begin() as conn:
        drop_append_only_guard(conn)
        target = payee_entry(conn)
        conn.execute(
            text("UPDATE ledger_entries SET amount_minor = amount_minor + 1 WHERE id = :i"),
            {"i": target.id},
        )
        conn.execute(
            text(
                "UPDATE ledger_entries SET amount_minor = amount_minor - 1 "
                "WHERE posting_id = :p AND account_number = :a"
            ),
            {"p": target.posting_id, "a": AMINA[1]},
        )
        shift_balance(conn, KARIM[1], 1)
        shift_balance(conn, AMINA[1], -1)
        first = conn.execute(
            select(func.min(LedgerEntry.chain_seq)).where(
                LedgerEntry.posting_id == target.posting_id
            )
        ).scalar_one()
        _rechain_from(conn, first)  # every hash from the change on recomputed, the head moved
        conn.execute(text("DELETE FROM settlement_window_positions"))  # cover the tracks...
        conn.execute(text("DELETE FROM settlement_windows"))

    with live.connect() as conn:
        assert verify(conn).ok  # the chain, double entry, windows (gone): all look intact
        report = verify(conn, [anchor])
    assert not report.ok
    assert report.anchor_problems and "rewritten" in report.anchor_problems[0]
    assert not reconcile(live, replayed).ok


def _rechain_from(conn: Any, first_seq: int) -> None:
    rows = conn.execute(
        text(
            "SELECT e.id, e.chain_seq, e.posting_id, p.payment_id, p.kind, p.occurred_at, "
            "p.settlement_window, e.account_number, e.amount_minor, e.currency "
            "FROM ledger_entries e "
            "JOIN postings p ON p.posting_id = e.posting_id ORDER BY e.chain_seq"
        )
    ).all()
    prev = "0" * 64
    for r in rows:
        if r.chain_seq >= first_seq:
            occurred = r.occurred_at if isinstance(r.occurred_at, datetime) else \
                datetime.fromisoformat(r.occurred_at)  # fmt: skip
            digest = entry_hash(
                prev,
                r.chain_seq,
                r.posting_id,
                r.payment_id,
                r.kind,
                occurred,
                r.settlement_window,
                r.account_number,
                r.amount_minor,
                r.currency,
            )
            conn.execute(
                text("UPDATE ledger_entries SET prev_hash = :p, entry_hash = :h WHERE id = :i"),
                {"p": prev, "h": digest, "i": r.id},
            )
            prev = digest
        else:
            prev = conn.execute(
                text("SELECT entry_hash FROM ledger_entries WHERE id = :i"), {"i": r.id}
            ).scalar_one()
    conn.execute(
        text("UPDATE ledger_chain_head SET seq = :s, head_hash = :h"),
        {"s": rows[-1].chain_seq, "h": prev},
    )
