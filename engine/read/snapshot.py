"""Read-only snapshots: every read of the read side happens inside one.

On PostgreSQL the transaction is ``READ ONLY`` (a write in it fails) with a
``statement_timeout`` of :data:`STATEMENT_TIMEOUT_MS`, so a slow query from a
terminal or a screen never holds the ledger's rows for long; it is ``REPEATABLE
READ``, so every query of one view sees the same ledger. On SQLite it is a plain
``BEGIN`` (``engine.ledger.database.read_only``): a WAL snapshot that never waits
for, nor blocks, the stages' writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from engine.ledger.database import read_only

STATEMENT_TIMEOUT_MS = 15_000  # a screen's statement that runs longer is cancelled
REPORT_TIMEOUT_MS = 300_000  # a whole-ledger report's (every settlement window, say)
MAX_STATEMENT_TIMEOUT_MS = REPORT_TIMEOUT_MS


@contextmanager
def snapshot(engine: Engine, timeout_ms: int = STATEMENT_TIMEOUT_MS) -> Iterator[Connection]:
    """A connection in a read-only transaction, rolled back (never committed) at the end."""
    if not 1 <= timeout_ms <= MAX_STATEMENT_TIMEOUT_MS:
        raise ValueError(f"timeout_ms={timeout_ms}: expected 1..{MAX_STATEMENT_TIMEOUT_MS}")
    reading = read_only(engine)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        reading = reading.execution_options(isolation_level="REPEATABLE READ")
    with reading.connect() as conn, conn.begin() as transaction:
        if postgres:  # one round trip for both: a screen opens a snapshot per request
            conn.exec_driver_sql(
                f"SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {int(timeout_ms)}"
            )
        try:
            yield conn
        finally:
            transaction.rollback()
