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

from engine.audit.chain import parse_anchor, verify
from engine.audit.reconcile import reconcile
from engine.audit.windows import Window, close_window
from engine.config import Settings, load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import LedgerEntry, Payment
from engine.ledger.postings import entry_hash
from engine.ledger.reference import load_reference_data, read_file
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from engine.serialization import AvroCodec, SchemaRegistry
from sakk.app import TOPOLOGY, build_stage
from tests.factories import AMINA, KARIM, RAM, REFERENCE_FILE, YOUSSEF, payment, signed
from tests.unit.test_postings import draft, write_with_positions

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
    assert reconcile(live, replayed, TOPOLOGY).ok


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
    assert (report.first_break.chain_id, report.first_break.chain_seq) == (0, target.chain_seq)
    assert "content altered" in report.first_break.problem
    assert len(report.walk.breaks) == 1  # the link to the next entry still holds: one entry named
    assert any(target.posting_id in v for v in report.ledger.violations)  # no longer sums to zero
    result = reconcile(live, replayed, TOPOLOGY)
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
    result = reconcile(live, replayed, TOPOLOGY)
    assert [(d["side"], d["account_number"]) for d in result.postings] == [
        ("replay only", KARIM[1])
    ]


def test_inserted_entry_is_named_by_verify_and_found_by_reconcile(ledgers):
    live, replayed = ledgers
    with live.begin() as conn:
        target = payee_entry(conn)
        top = conn.execute(
            select(func.max(LedgerEntry.chain_seq)).where(LedgerEntry.chain_id == 0)
        ).scalar_one()
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
    result = reconcile(live, replayed, TOPOLOGY)
    assert {(d["side"], d["account_number"]) for d in result.postings} == {
        ("live only", KARIM[1]),
        ("live only", AMINA[1]),
    }


def test_forged_posting_with_a_correct_chain_is_found_by_reconcile(ledgers):
    """Correctly chained appends are what the engine itself writes: only a replay can tell."""
    live, replayed = ledgers
    with live.begin() as conn:
        seq, prev = conn.execute(
            text("SELECT seq, head_hash FROM ledger_chain_head WHERE chain_id = 0")
        ).one()
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
            text("UPDATE ledger_chain_head SET seq = :s, head_hash = :h WHERE chain_id = 0"),
            {"s": seq, "h": prev},
        )

    with live.connect() as conn:
        assert verify(conn).ok
    result = reconcile(live, replayed, TOPOLOGY)
    assert [o["posting_id"] for o in result.orphan_postings] == ["forged"]
    assert {b["account_number"] for b in result.balances} == {KARIM[1], AMINA[1]}


def test_rewritten_chain_is_caught_by_an_anchor_taken_before(ledgers):
    live, replayed = ledgers
    close_window(live, Window.containing(BASE), datetime.now(UTC), early=True)
    with live.connect() as conn:
        head = verify(conn).walk.chain(0)
    anchor = parse_anchor(f"{head.last_seq}:{head.last_hash}")  # the form without a chain: 0
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
        conn.execute(text("DELETE FROM settlement_window_chain_heads"))
        conn.execute(text("DELETE FROM settlement_windows"))

    with live.connect() as conn:
        assert verify(conn).ok  # the chain, double entry, windows (gone): all look intact
        report = verify(conn, [anchor])
    assert not report.ok
    assert report.anchor_problems and "rewritten" in report.anchor_problems[0]
    assert not reconcile(live, replayed, TOPOLOGY).ok


def _rechain_from(conn: Any, first_seq: int, chain: int = 0) -> None:
    """Recompute every hash of ``chain`` from ``first_seq`` on and move its head: a cover-up."""
    rows = conn.execute(
        text(
            "SELECT e.id, e.chain_seq, e.posting_id, p.payment_id, p.kind, p.occurred_at, "
            "p.settlement_window, e.account_number, e.amount_minor, e.currency "
            "FROM ledger_entries e "
            "JOIN postings p ON p.posting_id = e.posting_id "
            "WHERE e.chain_id = :c ORDER BY e.chain_seq"
        ),
        {"c": chain},
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
        text("UPDATE ledger_chain_head SET seq = :s, head_hash = :h WHERE chain_id = :c"),
        {"s": rows[-1].chain_seq, "h": prev, "c": chain},
    )


# Several chains: what is done to one chain is reported with that chain.


@pytest.fixture
def chains(database_url: str) -> Any:
    """A ledger of the stages (chain 0), then postings on chains 1 and 2, interleaved."""
    engine = build_ledger(database_url, records()[:10])
    at = BASE + timedelta(hours=2)
    with engine.begin() as conn:
        write_with_positions(conn, [draft(c, *pair, 100 + i, at + timedelta(minutes=i))
                              for i, (c, pair) in enumerate(
                                  [(1, (AMINA, KARIM)), (2, (YOUSSEF, RAM))] * 6)])  # fmt: skip
    yield engine
    engine.dispose()


def chain_entry(conn: Any, chain: int, seq: int) -> Any:
    e = LedgerEntry.__table__
    return conn.execute(select(e).where(e.c.chain_id == chain, e.c.chain_seq == seq)).one()


def chain_top(conn: Any, chain: int) -> int:
    e = LedgerEntry.__table__
    return int(
        conn.execute(select(func.max(e.c.chain_seq)).where(e.c.chain_id == chain)).scalar_one()
    )


def test_an_honest_ledger_of_several_chains_verifies(chains):
    with chains.connect() as conn:
        report = verify(conn)
    assert report.ok, report.sections()
    assert {c: w.entries for c, w in report.walk.chains.items() if c} == {1: 6 * 4, 2: 6 * 2}


def test_altered_entry_in_chain_1_is_named_with_its_chain(chains):
    with chains.begin() as conn:
        drop_append_only_guard(conn)
        target = chain_entry(conn, 1, 6)
        conn.execute(
            text("UPDATE ledger_entries SET amount_minor = amount_minor + 1 WHERE id = :i"),
            {"i": target.id},
        )
        shift_balance(conn, target.account_number, 1)
    with chains.connect() as conn:
        report = verify(conn)
    found = [(b.chain_id, b.chain_seq, b.entry_id) for b in report.walk.breaks]
    assert found == [(1, 6, target.id)]
    assert "content altered" in report.walk.breaks[0].problem
    assert report.summary()["first_break"]["chain_id"] == 1
    assert report.summary()["chain_last_seq"] == report.walk.chain(0).last_seq  # chain 0 intact


def test_deleted_entry_in_chain_1_is_named_with_its_chain(chains):
    with chains.begin() as conn:
        drop_append_only_guard(conn)
        target = chain_entry(conn, 1, 6)
        conn.execute(text("DELETE FROM ledger_entries WHERE id = :i"), {"i": target.id})
        shift_balance(conn, target.account_number, -target.amount_minor)
    with chains.connect() as conn:
        first = verify(conn).first_break
    assert first is not None and (first.chain_id, first.chain_seq) == (1, 7)
    assert "#6 of chain 1 are missing" in first.problem


def test_inserted_entry_in_chain_1_is_named_with_its_chain(chains):
    with chains.begin() as conn:
        target = chain_entry(conn, 1, 1)
        top = chain_top(conn, 1)
        for seq, (account, amount) in enumerate(((KARIM[1], 5), (AMINA[1], -5)), top + 1):
            conn.execute(
                text(
                    "INSERT INTO ledger_entries (posting_id, account_number, amount_minor, "
                    "currency, chain_id, chain_seq, prev_hash, entry_hash) "
                    "VALUES (:p, :a, :m, 'MAD', 1, :s, :h, :h)"
                ),
                {"p": target.posting_id, "a": account, "m": amount, "s": seq, "h": "f" * 64},
            )
            shift_balance(conn, account, amount)
    with chains.connect() as conn:
        report = verify(conn)
    assert report.first_break is not None
    assert (report.first_break.chain_id, report.first_break.chain_seq) == (1, top + 1)
    assert all(b.chain_id == 1 for b in report.walk.breaks)
    assert not report.ledger.violations  # double entry alone would not have seen it


def test_the_end_of_chain_2_deleted_is_caught_by_its_head(chains):
    with chains.begin() as conn:
        drop_append_only_guard(conn)
        top = chain_top(conn, 2)
        last = chain_entry(conn, 2, top)
        for entry in conn.execute(
            select(LedgerEntry.__table__).where(LedgerEntry.posting_id == last.posting_id)
        ).all():  # the whole last posting, so double entry still holds
            conn.execute(text("DELETE FROM ledger_entries WHERE id = :i"), {"i": entry.id})
            shift_balance(conn, entry.account_number, -entry.amount_minor)
        conn.execute(text("DELETE FROM postings WHERE posting_id = :p"), {"p": last.posting_id})
    with chains.connect() as conn:
        report = verify(conn)
    assert not report.ledger.violations
    assert [(b.chain_id, b.chain_seq) for b in report.walk.breaks] == [(2, top - 2)]
    assert f"head of chain 2 is at #{top}" in report.walk.breaks[0].problem


def test_a_chain_deleted_with_its_head_is_caught_by_the_close_that_recorded_it(chains):
    close_window(chains, Window.containing(BASE), datetime.now(UTC), early=True)
    with chains.begin() as conn:
        drop_append_only_guard(conn)
        posting_ids = set(
            conn.execute(select(LedgerEntry.posting_id).where(LedgerEntry.chain_id == 2)).scalars()
        )
        for entry in conn.execute(
            select(LedgerEntry.__table__).where(LedgerEntry.chain_id == 2)
        ).all():
            shift_balance(conn, entry.account_number, -entry.amount_minor)
        conn.execute(text("DELETE FROM ledger_entries WHERE chain_id = 2"))
        for pid in posting_ids:
            conn.execute(text("DELETE FROM postings WHERE posting_id = :p"), {"p": pid})
        conn.execute(text("DELETE FROM ledger_chain_head WHERE chain_id = 2"))
    with chains.connect() as conn:
        report = verify(conn)
    assert not report.walk.breaks and not report.ledger.violations  # the walk sees no chain 2
    assert any("entry #12 of chain 2 is missing" in p for p in report.anchor_problems)


def test_rewritten_chain_1_is_caught_by_an_anchor_of_chain_1(chains):
    with chains.connect() as conn:
        head = verify(conn).walk.chain(1)
    anchor = parse_anchor(f"1:{head.last_seq}:{head.last_hash}")
    with chains.begin() as conn:
        drop_append_only_guard(conn)
        target = chain_entry(conn, 1, 2)  # KARIM's leg of chain 1's first posting
        for account, delta in ((target.account_number, 1), (AMINA[1], -1)):
            conn.execute(
                text(
                    "UPDATE ledger_entries SET amount_minor = amount_minor + :d "
                    "WHERE posting_id = :p AND account_number = :a"
                ),
                {"d": delta, "p": target.posting_id, "a": account},
            )
            shift_balance(conn, account, delta)
        _rechain_from(conn, 1, chain=1)
    with chains.connect() as conn:
        assert verify(conn).ok
        report = verify(conn, [anchor])
    assert [p for p in report.anchor_problems if "chain 1" in p and "rewritten" in p]
