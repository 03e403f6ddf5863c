"""What the API's routes share: the ledger, the clock, a read-only snapshot, paging."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine

from engine.ops.action import Actor, Done
from engine.read.paging import DEFAULT_PAGE, MAX_CURSOR_CHARS, MAX_PAGE
from engine.read.snapshot import snapshot
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
