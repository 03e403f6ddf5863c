"""Settlement: the windows and their states, each bank's net in one window, and the
liquidity board (position and holds, net debit cap, liquidity, share of the cap used).

A bank user sees its own line only, in the nets and on the board. Closing a window, and
settling or confirming it (which four eyes guard: proposals), are the operators'; the
page names the commands until the console takes each of them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from engine.audit.window_lifecycle import window_states
from engine.ledger.positions import read_banks
from engine.read.positions import DEFAULT_WINDOW_HOURS, Window, window_report
from sakk.cli.positions import percent, position_line
from sakk.console.api.common import now, reading
from sakk.console.auth import Principal, require_any
from sakk.console.pages.render import page, shown_as_page

router = APIRouter(include_in_schema=False)
MAX_WINDOWS_SHOWN = 60  # the newest windows the page lists


def _window(label: str, current: Window) -> Window:
    if not label:
        return current
    hours = int(label.rpartition("/")[2].rstrip("h")) if "/" in label else DEFAULT_WINDOW_HOURS
    return Window.parse(label, hours)


@router.get("/settlement", response_class=HTMLResponse)
def settlement(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    window: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    audience = who.audience
    current = Window.containing(now(request))
    with shown_as_page(who), reading(request) as conn:
        chosen = _window(window, current)
        states = window_states(conn)
        report = window_report(conn, chosen)
        banks = read_banks(conn)
    own = audience.sees_every_bank()
    windows = sorted(states.values(), key=lambda r: r.window_id, reverse=True)
    board = [position_line(row) for _, row in sorted(banks.items())]
    nets: list[Any] = list(report.lines)
    if not own:
        board = [line for line in board if line["bank_code"] == who.bank_code]
        nets = [line for line in nets if line.bank_code == who.bank_code]
    return page(
        request, who, "settlement.html", "Settlement", windows=windows[:MAX_WINDOWS_SHOWN],
        chosen=chosen, current=current, report=report, nets=nets, board=board,
        percent=percent, state_of=states.get(chosen.label),
    )  # fmt: skip
