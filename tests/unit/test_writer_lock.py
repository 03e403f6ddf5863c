"""SQLite writers queue on the ledger's lock file: one at a time, handed over at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from engine.ledger import database
from engine.ledger.database import is_transient, make_engine, read_only


def test_a_second_writer_waits_for_the_first_and_begins_the_moment_it_commits(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    released_at: list[float] = []
    began_at: list[float] = []

    def second_writer() -> None:
        with engine.begin() as conn:
            began_at.append(time.monotonic())
            conn.execute(text("INSERT INTO t VALUES (2)"))

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        waiter = threading.Thread(target=second_writer)
        waiter.start()
        waiter.join(timeout=0.3)
        assert waiter.is_alive()  # it waits for this transaction
        with read_only(engine).connect() as reader:  # readers never wait
            assert reader.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    released_at.append(time.monotonic())
    waiter.join(timeout=10)

    assert not waiter.is_alive()
    assert began_at[0] - released_at[0] < 0.1  # handed over, not slept through
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 2]


def test_a_writer_that_waits_too_long_gets_a_retryable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 200)
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    errors: list[BaseException] = []

    def late_writer() -> None:
        try:
            with engine.begin():
                pass
        except OperationalError as exc:
            errors.append(exc)

    with engine.begin():
        waiter = threading.Thread(target=late_writer)
        waiter.start()
        waiter.join(timeout=10)

    assert len(errors) == 1 and is_transient(errors[0])
    assert "database is locked" in str(errors[0])
