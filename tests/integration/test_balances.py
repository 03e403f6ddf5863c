"""Balances as the row plus its deltas: exact always, hot accounts never locked by a batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text

from engine.ledger.balances import all_balances, fold
from engine.ledger.checks import check_ledger
from engine.ledger.models import Account, AccountBalanceDelta
from engine.ledger.postings import write_postings
from tests.factories import AMINA, KARIM, RAM, YOUSSEF
from tests.unit.test_postings import draft, ledger

pytestmark = pytest.mark.integration

LOCK_TIMEOUT = "1s"  # far above an unlocked insert, far below a test's patience


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = ledger(database_url)
    yield engine
    engine.dispose()


def rows_and_deltas(engine: Engine) -> tuple[dict[str, int], int]:
    with engine.connect() as conn:
        rows = dict(conn.execute(select(Account.number, Account.balance_minor)).all())
        deltas = conn.execute(select(func.count()).select_from(AccountBalanceDelta)).scalar_one()
    return rows, deltas


def test_a_fold_moves_deltas_into_rows_and_balances_never_change(engine: Engine) -> None:
    with engine.begin() as conn:
        write_postings(conn, [draft(0, AMINA, KARIM), draft(1, YOUSSEF, RAM)])
    with engine.connect() as conn:
        before = all_balances(conn)
        assert check_ledger(conn).ok
    assert rows_and_deltas(engine)[1] > 0

    with engine.begin() as conn:
        folded = fold(conn, max_rows=1_000)

    rows, deltas = rows_and_deltas(engine)
    assert folded > 0 and deltas == 0
    assert rows == before  # every row now holds the whole balance
    with engine.connect() as conn:
        assert check_ledger(conn).ok and all_balances(conn) == before


def test_a_fold_takes_at_most_max_rows_oldest_first(engine: Engine) -> None:
    for chain in range(3):
        with engine.begin() as conn:
            write_postings(conn, [draft(chain, AMINA, KARIM)])
    with engine.connect() as conn:
        before = all_balances(conn)
    _, pending = rows_and_deltas(engine)

    with engine.begin() as conn:
        assert fold(conn, max_rows=2) == 2

    assert rows_and_deltas(engine)[1] == pending - 2
    with engine.connect() as conn:
        assert all_balances(conn) == before


def test_the_balances_view_reads_what_all_balances_computes(engine: Engine) -> None:
    with engine.begin() as conn:
        write_postings(conn, [draft(0, AMINA, KARIM)])
    with engine.connect() as conn:
        view = dict(conn.execute(text("SELECT number, balance_minor FROM account_balances")).all())
        assert view == all_balances(conn)


def test_two_batches_crediting_one_hot_account_do_not_wait_for_each_other(
    postgres_url: str,
) -> None:
    """Two settlement instances paying one payee across the same two banks: no wait."""
    engine = ledger(postgres_url)
    try:
        first = engine.connect()
        first.begin()
        write_postings(first, [draft(1, AMINA, KARIM)])  # open: KARIM and both banks credited
        with engine.connect() as second, second.begin():
            second.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            write_postings(second, [draft(2, YOUSSEF, KARIM)])  # raises if it waited
        first.commit()
        first.close()
        with engine.connect() as conn:
            assert check_ledger(conn).ok
    finally:
        engine.dispose()


def test_two_folds_at_once_never_fold_a_delta_twice(postgres_url: str) -> None:
    engine = ledger(postgres_url)
    try:
        with engine.begin() as conn:
            write_postings(conn, [draft(c, AMINA, KARIM) for c in range(4)])
        with engine.connect() as conn:
            before = all_balances(conn)
        barrier = threading.Barrier(2)
        counts: list[int] = []

        def fold_once() -> None:
            with engine.begin() as conn:
                barrier.wait(timeout=10)
                counts.append(fold(conn, max_rows=1_000))

        threads = [threading.Thread(target=fold_once) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        with engine.connect() as conn:
            assert all_balances(conn) == before
            assert check_ledger(conn).ok
        assert rows_and_deltas(engine)[1] == 0 and sum(counts) > 0
    finally:
        engine.dispose()
