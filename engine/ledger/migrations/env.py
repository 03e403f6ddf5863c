"""Alembic environment: the URL comes from ``engine.ledger.database.alembic_config``."""

from alembic import context

from engine.ledger.database import make_engine
from engine.ledger.models import Base

config = context.config


def run_migrations_online() -> None:
    connectable = context.config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    sqlite = connection.dialect.name == "sqlite"
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite)
    if not sqlite:
        with context.begin_transaction():
            context.run_migrations()
        return
    # SQLite changes a constraint by rebuilding the table (copy, drop, rename), which a
    # table other tables refer to survives only with foreign keys off: SQLite's own
    # procedure (sqlite.org/lang_altertable.html). The switch is the connection's and
    # takes effect outside a transaction only; the references are checked before commit.
    raw = connection.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        with context.begin_transaction():
            context.run_migrations()
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `sakk db upgrade`")
run_migrations_online()
