"""Settlement: the liquidity board (position and holds, net debit cap, liquidity, share of
the cap used), the windows and their states with each bank's net, and closing a window.

A bank user sees its own line only, on the board and in the nets (the read side keeps it
so). Closing is one operator's action (the API's, so both close alike); settling and
confirming, which move money, are four-eyes proposals (``sakk settlement settle|confirm``
on the switch's machine, where the settlement bank's files are).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse

from engine.read.liquidity import liquidity_board
from engine.read.windows import list_windows
from sakk.cli.positions import percent
from sakk.console.api.common import REASON_CHARS, reading
from sakk.console.api.settlement import WINDOW_TEXT, CloseIn, close
from sakk.console.auth import Principal, require_any
from sakk.console.pages.render import Operator, page, shown_as_page

router = APIRouter(include_in_schema=False)
WINDOWS_SHOWN = 30  # the newest windows the page lists (older: the API pages on)


def _settlement(
    request: Request, who: Principal, chosen: str = "", notice: str | None = None
) -> HTMLResponse:
    with shown_as_page(who), reading(request) as conn:
        board = liquidity_board(conn, who.audience)
        windows = list(list_windows(conn, who.audience, limit=WINDOWS_SHOWN).items)
    shown = next((w for w in windows if w.label == chosen), windows[0] if windows else None)
    return page(
        request, who, "settlement.html", "Settlement", board=board, windows=windows,
        shown=shown, percent=percent, notice=notice,
    )  # fmt: skip


@router.get("/settlement", response_class=HTMLResponse)
def settlement(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    window: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    return _settlement(request, who, window)


@router.post("/settlement/close", response_class=HTMLResponse)
def close_window(
    request: Request,
    who: Operator,
    window: Annotated[str, Form(pattern=WINDOW_TEXT)],
    early: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=REASON_CHARS)] = "",
) -> HTMLResponse:
    """Close ``window`` (its nets become final), as ``POST /api/v1/settlement/windows/close``."""
    label = window.split("/")[0]
    with shown_as_page(who):
        done = close(request, CloseIn(window=label, early=early, reason=reason or None), who)
    where = f", published to {done.published}" if done.published else ", recorded (no broker)"
    notice = f"window {label} closed{where}" if done.seq else f"window {label} was closed already"
    return _settlement(request, who, label, notice)
