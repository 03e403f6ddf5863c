"""Double entry: legs that do not sum to zero never reach the ledger; each chain is its own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, func, select

from consumers.settlement import build_legs
from engine.audit.chain import verify
from engine.ledger.balances import all_balances
from engine.ledger.database import make_engine, upgrade
from engine.ledger.exceptions import ChainKeyError, UnbalancedPostingError
from engine.ledger.models import Account, AccountKind, LedgerChainHead, LedgerEntry, Posting
from engine.ledger.positions import PositionMoved, move_positions
from engine.ledger.postings import (
    GENESIS_HASH,
    MAX_CHAINS,
    Leg,
    PostingDraft,
    check_balanced,
    entry_hash,
    write_postings,
)
from engine.ledger.reference import load_reference_data, read_file
from engine.money import format_minor
from tests.factories import AMINA, KARIM, RAM, REFERENCE_FILE, YOUSSEF

AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def ledger(url: str) -> Engine:
    """A migrated ledger with the reference accounts (their openings are on chain 0)."""
    upgrade(url)
    engine = make_engine(url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    return engine


def draft(
    chain: int,
    payer: tuple[str, str] = AMINA,
    payee: tuple[str, str] = KARIM,
    amount_minor: int = 100,
    occurred_at: datetime = AT,
) -> PostingDraft:
    """An interbank (or same-bank) payment's posting on ``chain``, without a fee."""
    legs = build_legs(payer[1], payee[1], payer[0], payee[0], amount_minor, 0, "MAD")
    pid = uuid.uuid4().hex
    window = occurred_at.date().isoformat()
    return PostingDraft(f"p-{pid}", pid, "PAYMENT", occurred_at, window, legs, chain=chain)


def write_with_positions(conn: Connection, drafts: list[PostingDraft]) -> int:
    """Write ``drafts`` and move the banks' position rows by their settlement legs, as
    settlement does: planted interbank postings keep the rows ``verify`` checks equal."""
    written = write_postings(conn, drafts)
    moved = []
    for d in drafts:
        for leg in d.legs:
            bank, kind, _ = (leg.account_number.split("-") + ["", ""])[:3]
            if kind == AccountKind.SETTLEMENT.value:
                moved.append(
                    PositionMoved(
                        bank, leg.currency, leg.amount_minor, 0, 0, None, 0, None, d.occurred_at
                    )
                )
    move_positions(conn, moved)
    return written


def chain_rows(conn: Connection, chain: int) -> list[tuple[int, str, str, str]]:
    """(chain_seq, prev_hash, entry_hash, posting_id) of a chain, in order."""
    e = LedgerEntry.__table__
    return [tuple(r) for r in conn.execute(
        select(e.c.chain_seq, e.c.prev_hash, e.c.entry_hash, e.c.posting_id)
        .where(e.c.chain_id == chain).order_by(e.c.chain_seq)
    )]  # type: ignore[misc]  # fmt: skip


def heads(conn: Connection) -> dict[int, tuple[int, str]]:
    h = LedgerChainHead.__table__
    return {r.chain_id: (r.seq, r.head_hash) for r in conn.execute(select(h))}


def test_interbank_legs_move_through_both_settlement_accounts_and_sum_to_zero():
    legs = build_legs(AMINA[1], KARIM[1], "007", "011", 10_000, 500, "MAD")
    check_balanced(legs)
    by_account = {leg.account_number: leg.amount_minor for leg in legs}
    assert by_account == {
        AMINA[1]: -10_500,
        KARIM[1]: 10_000,
        "007-FEE_INCOME-MAD": 500,
        "007-SETTLEMENT-MAD": 10_000,
        "011-SETTLEMENT-MAD": -10_000,
    }


def test_same_bank_legs_skip_settlement_accounts():
    legs = build_legs("a", "b", "007", "007", 10_000, 0, "MAD")
    assert {leg.account_number for leg in legs} == {"a", "b"}


def test_unbalanced_posting_is_refused():
    with pytest.raises(UnbalancedPostingError, match="does not sum to zero"):
        check_balanced([Leg("a", -100, "MAD"), Leg("b", 99, "MAD")])


def test_balanced_in_total_but_not_per_currency_is_refused():
    with pytest.raises(UnbalancedPostingError):
        check_balanced(
            [
                Leg("a", -100, "MAD"),
                Leg("b", 100, "EUR"),
                Leg("c", 100, "MAD"),
                Leg("d", -100, "EUR"),
                Leg("e", 1, "MAD"),
                Leg("f", -1, "EUR"),
            ]
        )


def test_float_amount_is_refused():
    with pytest.raises(UnbalancedPostingError, match="int"):
        check_balanced([Leg("a", -1.5, "MAD"), Leg("b", 1.5, "MAD")])  # type: ignore[arg-type]


def test_entries_and_balances_are_written_together_and_entries_are_append_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    upgrade(url)
    engine = make_engine(url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    legs = build_legs(AMINA[1], KARIM[1], "007", "011", 10_000, 500, "MAD")
    draft = PostingDraft(
        "p1", "pay1", "PAYMENT", datetime(2026, 11, 26, tzinfo=UTC), "2026-11-26", legs
    )
    with engine.begin() as conn:
        assert write_postings(conn, [draft]) == 5
    with engine.connect() as conn:
        balances = all_balances(conn)
        rows = dict(conn.execute(select(Account.number, Account.balance_minor)).all())
    assert balances[AMINA[1]] == 100_000 - 10_500
    assert balances[KARIM[1]] == 20_000 + 10_000
    assert rows[AMINA[1]] == 100_000 - 10_500  # the checked debit: in place
    assert rows[KARIM[1]] == 20_000  # the credit: a delta, until folded
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(LedgerEntry.__table__.update().values(amount_minor=0))
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(LedgerEntry.__table__.delete())


def test_two_chains_interleaved_in_one_batch_each_link_their_own_entries(database_url):
    engine = ledger(database_url)
    try:
        with engine.connect() as conn:
            chain0_before = heads(conn)[0]
        batch = [draft(1), draft(2, YOUSSEF, RAM), draft(1, KARIM, AMINA), draft(2, YOUSSEF, RAM)]
        with engine.begin() as conn:
            assert write_postings(conn, batch) == 4 + 2 + 4 + 2
        with engine.connect() as conn:
            one, two = chain_rows(conn, 1), chain_rows(conn, 2)
            assert [r[0] for r in one] == list(range(1, 9))  # 1..n per chain, no gap
            assert [r[0] for r in two] == list(range(1, 5))
            assert [r[3] for r in one] == [batch[0].posting_id] * 4 + [batch[2].posting_id] * 4
            for rows in (one, two):
                assert rows[0][1] == GENESIS_HASH
                links = zip(rows, rows[1:], strict=False)
                assert all(later[1] == earlier[2] for earlier, later in links)
            assert heads(conn) == {0: chain0_before, 1: (8, one[-1][2]), 2: (4, two[-1][2])}
            report = verify(conn)
            assert report.ok, report.sections()
            assert {c.chain_id: c.entries for c in report.walk.chains.values()} == {
                0: chain0_before[0],
                1: 8,
                2: 4,
            }
    finally:
        engine.dispose()


def test_an_entry_hashes_as_it_always_did_whatever_its_chain(database_url):
    """Chain 0 keeps the hash formula: a ledger written before chain keys still verifies."""
    engine = ledger(database_url)
    try:
        posting = draft(5)
        with engine.begin() as conn:
            write_postings(conn, [posting])
        with engine.connect() as conn:
            first = conn.execute(
                select(LedgerEntry).where(LedgerEntry.chain_id == 5, LedgerEntry.chain_seq == 1)
            ).one()
        leg = posting.legs[0]
        assert first.entry_hash == entry_hash(
            GENESIS_HASH, 1, posting.posting_id, posting.payment_id, "PAYMENT", AT,
            posting.settlement_window, leg.account_number, leg.amount_minor, "MAD",
        )  # fmt: skip
    finally:
        engine.dispose()


def test_a_later_batch_continues_each_chain_from_its_head(database_url):
    engine = ledger(database_url)
    try:
        with engine.begin() as conn:
            write_with_positions(conn, [draft(1), draft(3, YOUSSEF, RAM)])
        with engine.begin() as conn:
            write_with_positions(conn, [draft(3, YOUSSEF, RAM), draft(0)])
        with engine.connect() as conn:
            assert [r[0] for r in chain_rows(conn, 1)] == [1, 2, 3, 4]
            assert [r[0] for r in chain_rows(conn, 3)] == [1, 2, 3, 4]
            assert verify(conn).ok
    finally:
        engine.dispose()


@pytest.mark.parametrize("chain", [-1, MAX_CHAINS, True, "1"])
def test_a_chain_key_out_of_range_is_refused_and_nothing_is_written(tmp_path, chain):
    engine = ledger(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        with pytest.raises(ChainKeyError, match="chain key"), engine.begin() as conn:
            write_postings(conn, [draft(0), draft(chain)])
        with engine.connect() as conn:
            p = Posting.__table__
            payments = select(func.count()).select_from(p).where(p.c.kind == "PAYMENT")
            assert conn.execute(payments).scalar_one() == 0
    finally:
        engine.dispose()


def test_format_minor_uses_integers_only():
    assert format_minor(123456, "MAD") == "1,234.56 MAD"
    assert format_minor(-5, "MAD") == "-0.05 MAD"
    assert format_minor(1000, "XOF") == "1,000 XOF"
