"""What the API's routes share: the ledger, the clock, a read-only snapshot, paging."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from fastapi import Query, Request
from sqlalchemy import Connection, Engine

from engine.read.paging import DEFAULT_PAGE, MAX_CURSOR_CHARS, MAX_PAGE
from engine.read.snapshot import snapshot

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"rows a page holds, 1..{MAX_PAGE}")]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, description="next_cursor of the page before, unchanged"),
]
DEFAULT_LIMIT = DEFAULT_PAGE


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def now(request: Request) -> datetime:
    moment: datetime = request.app.state.clock()
    return moment


@contextmanager
def reading(request: Request) -> Iterator[Connection]:
    """A read-only snapshot of the ledger with the console's statement timeout."""
    with snapshot(engine_of(request), request.app.state.config.statement_timeout_ms) as conn:
        yield conn
