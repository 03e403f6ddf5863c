"""What the API's routes share: the ledger, the clock, a read-only snapshot, paging."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, field_validator
from sqlalchemy import Connection, Engine

from engine.ops.action import Actor, Done
from engine.read.paging import DEFAULT_PAGE, MAX_CURSOR_CHARS, MAX_PAGE
from engine.read.snapshot import snapshot
from engine.times import as_utc
from sakk.console.auth import Principal

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


ISO_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")


def _iso_only(value: Any) -> Any:
    if isinstance(value, str) and not ISO_TIME.match(value):
        raise ValueError("an ISO 8601 time with its zone, e.g. 2026-11-24T09:30:00Z")
    return value


# A time in a query: ISO 8601 with a zone only (never seconds since 1970, nor a naive time).
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


class Out(BaseModel):
    """An API answer: every time in it aware, UTC (SQLite hands times back naive)."""

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return as_utc(value) if isinstance(value, datetime) else value


REASON_CHARS = 1_000  # engine.ops.audit_log.MAX_REASON_CHARS


class ActionIn(BaseModel):
    """Why, for the audit log (optional)."""

    reason: str | None = Field(default=None, max_length=REASON_CHARS)


class DoneOut(BaseModel):
    """An action taken: its audit record's number (None: nothing needed changing)."""

    action: str
    target: str
    seq: int | None
    old: Any = None
    new: Any = None


def actor(who: Principal, reason: str | None) -> Actor:
    return Actor(who.name, reason)


def done_out(action: Any, done: Done[Any]) -> DoneOut:
    """What the audit record keeps of ``done`` (the values only the writing knew, too)."""
    plan = done.plan
    recorded = getattr(action, "recorded", None)
    old, new = (plan.old, plan.new)
    if recorded is not None and not plan.noop:
        old, new = recorded(plan, done.result)
    return DoneOut(action=action.name, target=plan.target, seq=done.seq, old=old, new=new)
