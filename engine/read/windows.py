"""Settlement windows as an audience may see them: span, lifecycle state, each bank's net.

Newest first, a page at a time. Every window with interbank postings or a close is
listed (``engine.read.positions.all_window_reports``, the one position rule), with its
lifecycle state (OPEN, CLOSED, SETTLING, SETTLED, ABORTED; ``engine.audit.window_lifecycle``).
A bank audience reads only its own lines of each window, and no mismatches naming others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from engine.audit.window_lifecycle import window_states
from engine.read.audience import Audience
from engine.read.paging import DEFAULT_PAGE, Page, check_limit, decode_cursor, page_of
from engine.read.positions import DEFAULT_WINDOW_HOURS, WindowReport, all_window_reports
from engine.risk.windows import WindowRecord, WindowState

LIST = "windows"  # the cursor's query name


@dataclass(frozen=True)
class WindowView:
    label: str
    start: datetime
    end: datetime
    hours: int
    state: str
    attempt: int
    closed_at: datetime | None
    lines: tuple[dict[str, Any], ...]  # bank_code, currency, gross debits and credits, net
    net_by_currency: dict[str, int]  # every bank's (zero when balanced); a bank's own for a bank
    mismatches_with_close: tuple[str, ...]


def _view(report: WindowReport, record: WindowRecord | None, audience: Audience) -> WindowView:
    lines = [x for x in report.lines
             if audience.sees_every_bank() or x.bank_code == audience.bank_code]  # fmt: skip
    if record is None:
        record = WindowRecord(report.window.label, WindowState.CLOSED if report.closed else
                              WindowState.OPEN)  # fmt: skip
    net: dict[str, int] = {}
    for line in lines:
        net[line.currency] = net.get(line.currency, 0) + line.net_minor
    mismatches = report.mismatches() if audience.sees_every_bank() else []
    return WindowView(
        report.window.label, report.window.start, report.window.end, report.window.hours,
        record.state.value, record.attempt,
        report.close.closed_at if report.close else None,
        tuple(x.as_dict() for x in lines), net, tuple(mismatches),
    )  # fmt: skip


def list_windows(
    conn: Connection,
    audience: Audience,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
    hours: int = DEFAULT_WINDOW_HOURS,
) -> Page[WindowView]:
    """Windows newest first; a bank sees those where it has a line (or that were closed)."""
    check_limit(limit)
    states = window_states(conn)
    reports = all_window_reports(conn, hours)[::-1]
    if cursor is not None:
        (after,) = decode_cursor(LIST, cursor)
        reports = [r for r in reports if r.window.label < str(after)]
    views = []
    for report in reports[: limit + 1]:
        views.append(_view(report, states.get(report.window.label), audience))
    return page_of(LIST, views, limit, lambda v: (v.label,))
