"""Statements compiled once, run with DBAPI ``executemany``: the ledger's fast write path.

SQLAlchemy compiles a statement and binds its parameters on every ``execute``; for a
batch of thousands of rows that is most of the time spent. :class:`Prepared` does it
once per process and leaves each row only the bind processors SQLAlchemy itself would
apply (SQLite's text form of a time, for one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime, LargeBinary, Table, bindparam, insert, null, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine


class Prepared:
    """One statement compiled once for a dialect, run with DBAPI ``executemany``.

    ``binds`` name the statement's parameters in the order rows give them. Parameters
    are positional on every database (PostgreSQL's are compiled as ``%s``), and each
    column goes through its type's bind processor, as SQLAlchemy would, in one ``map``.
    """

    def __init__(self, statement: Any, dialect: Dialect, binds: Sequence[str]) -> None:
        if not dialect.positional:
            dialect = type(dialect)(paramstyle="format")  # type: ignore[call-arg]  # positional
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        position = {name: i for i, name in enumerate(binds)}
        order = [position[name] for name in compiled.positiontup or ()]
        if sorted(order) != list(range(len(binds))):
            raise ValueError(f"binds {binds} do not match the statement's {compiled.positiontup}")
        self._order = tuple(order)
        self._identity = self._order == tuple(range(len(binds)))
        self._processors = tuple(_processor(compiled.binds[name].type, dialect) for name in binds)

    def params(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The rows as the driver takes them: processed column by column, in SQL order."""
        columns: list[Any] = list(zip(*rows, strict=True))
        for i, process in enumerate(self._processors):
            if process is not None:
                columns[i] = map(process, columns[i])  # SQLAlchemy's processors pass None through
        if not self._identity:
            columns = [columns[i] for i in self._order]
        return list(zip(*columns, strict=True))

    def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
        """Execute for every row; returns the rows the database changed, in all."""
        if not rows:
            return 0
        return conn.exec_driver_sql(self.sql, self.params(rows)).rowcount  # type: ignore[arg-type]


class CopyIn(Prepared):
    """An insert into PostgreSQL as one ``COPY ... FROM STDIN``: far less work a row.

    A unique key it breaks raises SQLAlchemy's ``IntegrityError``, as an insert would.
    """

    def __init__(self, table: Table, dialect: Dialect, columns: Sequence[str]) -> None:
        values = {c: bindparam(c, type_=table.c[c].type) for c in columns}
        super().__init__(insert(table).values(values), dialect, columns)
        preparer = dialect.identifier_preparer
        names = ", ".join(preparer.quote(c) for c in columns)
        self.copy_sql = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"

    def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        import psycopg  # only ever on PostgreSQL

        driver: Any = conn.connection.dbapi_connection  # a psycopg connection
        try:
            with driver.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
                for row in self.params(rows):
                    copy.write_row(row)
        except psycopg.IntegrityError as exc:
            raise IntegrityError(self.copy_sql, None, exc) from exc
        return len(rows)


def prepared_insert(table: Table, dialect: Dialect, columns: Sequence[str]) -> Prepared:
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return CopyIn(table, dialect, columns)
    values = {c: bindparam(c, type_=table.c[c].type) for c in columns}
    return Prepared(insert(table).values(values), dialect, columns)


def prepared_update(
    table: Table,
    dialect: Dialect,
    keys: Sequence[str],
    columns: Sequence[str],
    assignments: dict[str, Any] | None = None,
    guard: ColumnElement[bool] | None = None,
) -> Prepared:
    """``UPDATE table SET col = :col ... WHERE key = :key AND ... [AND guard]``.

    Rows give ``(*keys, *columns)``; ``assignments`` are constant ``SET`` values.
    """
    values: dict[str, Any] = {c: bindparam(c, type_=table.c[c].type) for c in columns}
    values.update({c: null() if v is None else v for c, v in (assignments or {}).items()})
    statement = update(table).values(values)
    for key in keys:
        statement = statement.where(
            table.c[key] == bindparam(f"where_{key}", type_=table.c[key].type)
        )
    if guard is not None:
        statement = statement.where(guard)
    return Prepared(statement, dialect, (*(f"where_{k}" for k in keys), *columns))


_COMPILED: dict[tuple[str, str, str], Prepared] = {}


def prepared(conn: Connection, name: str, build: Callable[[Dialect], Prepared]) -> Prepared:
    """The statement ``name`` for ``conn``'s dialect, built on first use and kept."""
    dialect = conn.dialect
    key = (dialect.name, dialect.driver, name)
    statement = _COMPILED.get(key)
    if statement is None:
        statement = _COMPILED[key] = build(dialect)
    return statement


def _sqlite_datetime(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite text of a time, exactly (its wall clock; microseconds always)."""
    if value is None:
        return None
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def _processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The bind processor SQLAlchemy would apply, or a faster one doing the same."""
    if dialect.name == "sqlite":
        if isinstance(type_, LargeBinary):
            return None  # sqlite3 takes bytes as they are
        if isinstance(type_, DateTime):
            return _sqlite_datetime
    return type_.dialect_impl(dialect).bind_processor(dialect)
