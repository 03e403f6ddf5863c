"""Connections to the ledger: SQLite (embedded default) or PostgreSQL, same code.

Migrations are Alembic's; ``upgrade(url)`` brings any database to the head.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, FromClause, create_engine, event
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5_000
READ_ONLY = "sakk_read_only"  # execution option: a transaction that never writes


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, pool_size: int = 4) -> Engine:
    """An Engine tuned for the ledger's write pattern (one transaction per batch)."""
    if is_sqlite(url):
        return _sqlite_engine(url)
    return create_engine(
        url,
        hide_parameters=True,  # errors and logs never quote row values (account numbers)
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_timeout=30,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        hide_parameters=True,  # errors and logs never quote row values (account numbers)
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    engine.dialect.statement_compiler = _IndexedByCompiler

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # a WAL snapshot: never waits for, nor blocks, writers
            return
        # Take the write lock up front: a deferred transaction that later tries to
        # write can fail with SQLITE_BUSY without waiting on the busy timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class _IndexedByCompiler(SQLiteCompiler):
    """Renders a table hint (``select.with_hint(table, "INDEXED BY ix", "sqlite")``).

    SQLite's planner knows no row counts unless ``ANALYZE`` ran, so the read side names
    the index a search walks (``engine.read.payments``); SQLAlchemy's SQLite compiler
    drops table hints, this one writes them after the table's name.
    """

    def get_from_hint_text(self, table: FromClause, text: str | None) -> str | None:
        return text or None


def read_only(engine: Engine) -> Engine:
    """The same engine for reading only: on SQLite its transactions take no write lock."""
    return engine.execution_options(**{READ_ONLY: True})


def is_transient(exc: BaseException) -> bool:
    """True when the database is unavailable or busy, so the same work may succeed later."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    command.upgrade(alembic_config(url), revision)
