"""On PostgreSQL, appends to different chains never wait for each other; to one chain, they do.

Each transaction here touches accounts no other one touches, so the only lock two of
them could share is a chain head's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from engine.audit.chain import verify
from engine.audit.windows import Window, close_window, window_report
from tests.factories import AMINA, KARIM, RAM, YOUSSEF
from tests.unit.test_postings import AT, chain_rows, draft, ledger, write_with_positions

pytestmark = pytest.mark.integration

LOCK_TIMEOUT = "1s"  # far above a lock-free append here, far below a test's patience
WAIT_S = 30.0  # the bound on waiting for the second append to queue on the lock


@pytest.fixture(params=["fresh chains", "existing chains"])
def pg_ledger(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[Engine]:
    """A PostgreSQL ledger; with "existing chains", chains 1 and 2 already have heads."""
    engine = ledger(postgres_url)
    if request.param == "existing chains":
        with engine.begin() as conn:
            write_with_positions(conn, [draft(1, AMINA, KARIM), draft(2, YOUSSEF, RAM)])
    yield engine
    engine.dispose()


def open_append(engine: Engine, chain: int, payer: tuple[str, str], payee: tuple[str, str]):  # type: ignore[no-untyped-def]
    """A connection whose open transaction has appended one posting to ``chain``."""
    conn = engine.connect()
    conn.begin()
    write_with_positions(conn, [draft(chain, payer, payee)])
    return conn


def append_with_lock_timeout(conn: Connection, chain: int) -> None:
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    write_with_positions(conn, [draft(chain, YOUSSEF, RAM)])


def waits_on_a_lock(engine: Engine) -> bool:
    """True once a session of this database waits on a row lock (False after WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            blocked = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            conn.rollback()  # pg_stat_activity is a snapshot per transaction
            if blocked:
                return True
            time.sleep(0.01)
    return False


def test_appends_to_different_chains_do_not_wait_for_each_other(pg_ledger):
    first = open_append(pg_ledger, 1, AMINA, KARIM)
    try:
        with pg_ledger.connect() as second, second.begin():
            append_with_lock_timeout(second, 2)  # would raise if it waited on the first
        first.commit()
    finally:
        first.close()
    with pg_ledger.connect() as conn:
        assert verify(conn).ok


def test_appends_to_the_same_chain_wait_for_each_other(pg_ledger):
    first = open_append(pg_ledger, 1, AMINA, KARIM)
    try:
        with (
            pytest.raises(OperationalError, match="lock timeout"),
            pg_ledger.connect() as second,
            second.begin(),
        ):
            append_with_lock_timeout(second, 1)
    finally:
        first.rollback()
        first.close()


def test_an_append_waiting_on_its_chain_goes_on_from_the_head_the_first_one_left(pg_ledger):
    first = open_append(pg_ledger, 1, AMINA, KARIM)
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with pg_ledger.begin() as conn:
                write_with_positions(conn, [draft(1, YOUSSEF, RAM)])
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    waiting = threading.Thread(target=second)
    try:
        waiting.start()
        assert waits_on_a_lock(pg_ledger), "the second append did not wait for the first"
        assert waiting.is_alive()
        first.commit()
    finally:
        first.close()
    waiting.join(30)
    assert not waiting.is_alive() and not errors, errors
    with pg_ledger.connect() as conn:
        seqs = [r[0] for r in chain_rows(conn, 1)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert verify(conn).ok


@pytest.fixture
def impatient(postgres_url: str) -> Iterator[Engine]:
    """An engine on the same database whose every lock wait ends after LOCK_TIMEOUT."""
    engine = create_engine(
        postgres_url, connect_args={"options": f"-c lock_timeout={LOCK_TIMEOUT}"}
    )
    yield engine
    engine.dispose()


def test_a_window_close_waits_for_an_append_in_flight_to_a_chain_it_knows(postgres_url, impatient):
    """The close locks every head, so the heads it records cannot move under it."""
    engine = ledger(postgres_url)
    window, later = Window.containing(AT), AT + timedelta(days=2)
    try:
        with engine.begin() as conn:
            write_with_positions(conn, [draft(2, YOUSSEF, RAM)])
        first = open_append(engine, 2, AMINA, KARIM)
        try:
            with pytest.raises(OperationalError, match="lock timeout"):
                close_window(impatient, window, later)
            first.commit()
        finally:
            first.close()
        closed = close_window(engine, window, later).report
        assert closed.close is not None and closed.close.heads[2].seq == 2 + 4
        assert closed.carried_out_postings == 0 and closed.lines
        with engine.connect() as conn:
            assert verify(conn).ok
    finally:
        engine.dispose()


def test_a_chain_born_while_a_window_closes_counts_after_the_close(postgres_url, impatient):
    """Its head did not exist for the close to lock: its postings are later ones, and the
    positions the close records already leave them out."""
    engine = ledger(postgres_url)
    window, later = Window.containing(AT), AT + timedelta(days=2)
    try:
        first = open_append(engine, 7, AMINA, KARIM)
        try:
            closed = close_window(impatient, window, later).report  # does not wait for it
            first.commit()
        finally:
            first.close()
        assert closed.close is not None and 7 not in closed.close.heads
        assert not closed.lines
        with engine.connect() as conn:
            assert window_report(conn, window).carried_out_postings == 1
            carried = window_report(conn, window.next()).lines
            assert sum(x.carried_in_postings for x in carried) == 2  # both banks' legs
            report = verify(conn)
            assert report.ok, report.sections()
            assert report.windows_checked == 1
    finally:
        engine.dispose()
