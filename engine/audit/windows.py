"""Closing settlement windows: recording a window's final net positions, and its event.

The positions themselves, and the rule that places a late posting in the next open
window, are the read side's (``engine.read.positions``): a close records what that
rule gives at the moment every chain's head is locked. Its names are re-exported
here for the callers that close and report together.
"""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, insert, select, update

from engine.audit.exceptions import WindowError
from engine.audit.window_lifecycle import LEDGER_ACTOR, Transition, record_transition
from engine.ledger.models import (
    SettlementWindow,
    SettlementWindowChainHead,
    SettlementWindowPosition,
)
from engine.ledger.postings import GENESIS_HEAD, lock_all_chain_heads
from engine.read.positions import (
    DEFAULT_WINDOW_HOURS,
    MAX_WINDOWS_LISTED,
    SETTLED_KINDS,
    SUPPORTED_WINDOW_HOURS,
    Close,
    PositionLine,
    Window,
    WindowReport,
    all_window_reports,
    effective_window,
    read_closes,
    window_report,
)
from engine.risk.windows import WindowEvent

__all__ = [
    "DEFAULT_WINDOW_HOURS", "MAX_WINDOWS_LISTED", "SETTLED_KINDS", "SUPPORTED_WINDOW_HOURS",
    "Close", "CloseResult", "PositionLine", "Window", "WindowReport", "all_window_reports",
    "close_window", "count_closes", "effective_window", "event_id_of", "mark_published",
    "read_closes", "window_report",
]  # fmt: skip

WINDOW_EVENT_NAMESPACE = uuid.UUID("5a4b0c1e-7d1f-4c2e-9a55-5a4b4b000003")


def event_id_of(window: Window) -> str:
    """Deterministic id of the window-closed event: re-publishing repeats the same id."""
    return str(uuid.uuid5(WINDOW_EVENT_NAMESPACE, f"SettlementWindowClosed/{window.label}"))


@dataclass(frozen=True)
class CloseResult:
    report: WindowReport
    already_closed: bool


def close_window(
    engine: Engine | Connection,
    window: Window,
    now: datetime,
    early: bool = False,
    details: Transition | None = None,
) -> CloseResult:
    """Record the close of ``window`` with its final positions; closing twice changes nothing.

    Given a Connection, the close is written in the caller's transaction (``engine.ops``).
    The window's CLOSED lifecycle row (``details``: who, when the close was asked for) is
    written in the same transaction as the positions.
    """
    if window.end > now and not early:
        raise WindowError(
            f"window {window.label} ends at {window.end.isoformat()}, after now "
            f"({now.isoformat()}); closing it early needs --early"
        )
    with engine.begin() if isinstance(engine, Engine) else nullcontext(engine) as conn:
        closes = read_closes(conn, window.hours)
        if window.label in closes:
            return CloseResult(window_report(conn, window), already_closed=True)
        # No posting is appended to any chain until this transaction ends. A chain whose
        # head is created meanwhile is not in the close: its postings count as later ones.
        heads = lock_all_chain_heads(conn)
        closing = Close(window, now.astimezone(UTC), heads, 0, event_id_of(window))
        report = window_report(conn, window, closing)
        close = replace(closing, postings=_posting_count(report),
                        recorded_chain0=heads.get(0, GENESIS_HEAD))  # fmt: skip
        conn.execute(insert(SettlementWindow), [{
            "label": window.label, "window_start": window.start, "window_end": window.end,
            "window_hours": window.hours, "closed_at": close.closed_at,
            "chain_seq": close.chain_seq, "chain_hash": close.chain_hash,
            "postings": close.postings, "event_id": close.event_id, "published_at": None,
        }])  # fmt: skip
        recorded_heads = [{"label": window.label, "chain_id": c, "seq": h.seq,
                           "head_hash": h.head_hash} for c, h in sorted(heads.items())]  # fmt: skip
        if recorded_heads:
            conn.execute(insert(SettlementWindowChainHead), recorded_heads)
        positions = [{"label": window.label, "bank_code": x.bank_code, "currency": x.currency,
                      "gross_debits_minor": x.gross_debits_minor,
                      "gross_credits_minor": x.gross_credits_minor, "net_minor": x.net_minor}
                     for x in report.lines]  # fmt: skip
        if positions:
            conn.execute(insert(SettlementWindowPosition), positions)
        record_transition(conn, window.label, WindowEvent.CLOSE,
                          details or Transition(LEDGER_ACTOR), close.closed_at)  # fmt: skip
        report.close = close
        report.recorded = positions
    return CloseResult(report, already_closed=False)


def _posting_count(report: WindowReport) -> int:
    # Every interbank posting touches exactly two banks' settlement accounts.
    return sum(line.postings for line in report.lines) // 2


def mark_published(engine: Engine, label: str, when: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(SettlementWindow)
            .where(SettlementWindow.label == label)
            .values(published_at=when)
        )


def count_closes(conn: Connection) -> int:
    return int(
        conn.execute(select(func.count()).select_from(SettlementWindow.__table__)).scalar_one()
    )
