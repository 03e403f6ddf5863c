"""Reads by a list of keys, in chunks: one helper for every ``WHERE key IN (...)``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select
from sqlalchemy.sql.elements import ColumnElement

MAX_IN_CLAUSE = 500  # keys per IN (...): well inside every database's parameter limit


def chunks(items: Sequence[Any], size: int = MAX_IN_CLAUSE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def select_in(
    conn: Connection,
    query: Select[Any],
    key: ColumnElement[Any],
    values: Iterable[Any],
    size: int = MAX_IN_CLAUSE,
) -> list[Row[Any]]:
    """Rows of ``query`` whose ``key`` is one of ``values`` (distinct), ``size`` keys a query.

    ``key`` may be a ``tuple_(...)`` of columns with tuples as values.
    """
    wanted = sorted(set(values))  # sorted: PostgreSQL row locks are taken in a stable order
    rows: list[Row[Any]] = []
    for chunk in chunks(wanted, size):
        rows.extend(conn.execute(query.where(key.in_(chunk))))
    return rows
